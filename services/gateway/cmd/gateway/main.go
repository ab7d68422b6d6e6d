// Command gateway runs the chat gateway on its own against an external NATS (CHAT_NATS_URL), as it
// runs in Kubernetes. `gateway -help` lists every option.
package main

import (
	"os"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/gateway"
)

func main() {
	var (
		cfg       = gateway.Defaults()
		nc        platform.NATSConfig
		lc        platform.LogConfig
		topo      schemas.Topology
		debugAddr string
	)
	if err := platform.ParseFlags("gateway", os.Args[1:], func(f *platform.Flags) {
		cfg.Bind(f)
		f.BindNATS(&nc)
		f.BindLog(&lc)
		f.BindDebug(&debugAddr)
		f.BindTopology(&topo)
	}); err != nil {
		platform.Fatal(platform.ExitConfig, err)
	}
	log, err := platform.NewLogger(os.Stderr, lc)
	if err != nil {
		platform.Fatal(platform.ExitConfig, err)
	}
	conn, err := platform.Connect(nc, "chat-gateway", log)
	if err != nil {
		platform.Fatal(platform.ExitFailure, err)
	}
	ops := platform.NewOps()
	gw, err := gateway.New(cfg, gateway.Deps{NATS: conn, Log: log, Ops: ops, Topology: topo})
	if err != nil {
		platform.Fatal(platform.ExitConfig, err)
	}
	ctx, stop := platform.SignalContext()
	defer stop()
	if err := platform.ServeDebug(ctx, debugAddr, log); err != nil {
		platform.Fatal(platform.ExitConfig, err)
	}
	runErr := gw.Run(ctx)
	platform.DrainNATS(conn, 10*time.Second)
	if runErr != nil {
		platform.Fatal(platform.ExitFailure, runErr)
	}
}
