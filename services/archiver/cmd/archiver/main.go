// Command archiver runs the archiver on its own against an external NATS (CHAT_NATS_URL) and
// ClickHouse (CHAT_CLICKHOUSE_ADDR), as it runs in Kubernetes; any number of replicas may run
// (they share one durable consumer). `archiver -help` lists every option.
//
// Exit codes: 0 clean stop, 1 a failure while running, 2 bad configuration (including no
// ClickHouse address).
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
	"github.com/eventchat/chat/services/archiver"
)

func main() {
	var (
		cfg  = archiver.Defaults()
		addr string
		nc   platform.NATSConfig
		lc   platform.LogConfig
		topo schemas.Topology
	)
	if err := platform.ParseFlags("archiver", os.Args[1:], func(f *platform.Flags) {
		cfg.Bind(f)
		f.String(&addr, "addr", "CHAT_ARCHIVER_ADDR", "127.0.0.1:8083", "listen address of /healthz, /readyz and /metrics")
		f.BindNATS(&nc)
		f.BindLog(&lc)
		f.BindTopology(&topo)
	}); err != nil {
		platform.Fatal(platform.ExitConfig, err)
	}
	if !cfg.Enabled() {
		platform.Fatal(platform.ExitConfig, errors.New("archiver: set CHAT_CLICKHOUSE_ADDR (host:port of ClickHouse's native protocol)"))
	}
	log, err := platform.NewLogger(os.Stderr, lc)
	if err != nil {
		platform.Fatal(platform.ExitConfig, err)
	}
	ops := platform.NewOps()
	conn, err := platform.Connect(nc, "chat-archiver", log)
	if err != nil {
		platform.Fatal(platform.ExitFailure, err)
	}
	svc, err := archiver.New(cfg, archiver.Deps{NATS: conn, Log: log, Ops: ops, Topology: topo})
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
	log.Info("archiver ops listening", "addr", ln.Addr().String())

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
