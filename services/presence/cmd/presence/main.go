// Command presence runs the presence service on its own against an external NATS (CHAT_NATS_URL),
// as it runs in Kubernetes; any number of replicas may run. `presence -help` lists every option.
package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/presence"
)

func main() {
	var (
		cfg  = presence.Defaults()
		addr string
		nc   platform.NATSConfig
		lc   platform.LogConfig
		topo schemas.Topology
	)
	if err := platform.ParseFlags("presence", os.Args[1:], func(f *platform.Flags) {
		cfg.Bind(f)
		f.String(&addr, "addr", "CHAT_PRESENCE_ADDR", "127.0.0.1:8081", "listen address of /healthz, /readyz and /metrics")
		f.BindNATS(&nc)
		f.BindLog(&lc)
		f.BindTopology(&topo)
	}); err != nil {
		platform.Fatal(platform.ExitConfig, err)
	}
	log, err := platform.NewLogger(os.Stderr, lc)
	if err != nil {
		platform.Fatal(platform.ExitConfig, err)
	}
	ops := platform.NewOps()
	conn, err := platform.Connect(nc, "chat-presence", log)
	if err != nil {
		platform.Fatal(platform.ExitFailure, err)
	}
	svc, err := presence.New(cfg, presence.Deps{NATS: conn, Log: log, Ops: ops, Topology: topo})
	if err != nil {
		conn.Close()
		platform.Fatal(platform.ExitConfig, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		conn.Close()
		platform.Fatal(platform.ExitConfig, err)
	}
	mux := http.NewServeMux()
	ops.Mount(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("ops server", "err", err)
		}
	}()
	log.Info("presence ops listening", "addr", ln.Addr().String())

	ctx, stop := platform.SignalContext()
	defer stop()
	go func() {
		<-ctx.Done()
		ops.SetDraining()
	}()
	runErr := svc.Run(ctx)
	ops.SetDraining()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(shutdown)
	cancel()
	platform.DrainNATS(conn, 10*time.Second)
	if runErr != nil {
		platform.Fatal(platform.ExitFailure, runErr)
	}
}
