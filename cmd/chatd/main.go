// Command chatd is the all-in-one: it embeds nats-server with JetStream on disk under the data dir
// and runs every service in one process, serving clients on CHAT_ADDR. `chatd -help` lists every
// option with its CHAT_* variable and default.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/gateway"
	"github.com/eventchat/chat/services/presence"
	"github.com/eventchat/chat/services/unread"
	"golang.org/x/sync/errgroup"
)

// config of the all-in-one: the embedded server's and every service's.
type config struct {
	DataDir  string
	NATS     platform.EmbeddedNATS
	Log      platform.LogConfig
	Topology schemas.Topology
	Gateway  gateway.Config
	Presence presence.Config
	Unread   unread.Config
}

func (c *config) bind(f *platform.Flags) {
	f.String(&c.DataDir, "data-dir", "CHAT_DATA_DIR", "./data", "where JetStream keeps the event log and buckets")
	f.BindEmbeddedNATS(&c.NATS)
	f.BindLog(&c.Log)
	f.BindTopology(&c.Topology)
	c.Gateway.Bind(f)
	c.Presence.Bind(f)
	c.Unread.Bind(f)
}

func main() {
	cfg := config{Gateway: gateway.Defaults(), Presence: presence.Defaults(), Unread: unread.Defaults()}
	if err := platform.ParseFlags("chatd", os.Args[1:], cfg.bind); err != nil {
		platform.Fatal(platform.ExitConfig, err)
	}
	log, err := platform.NewLogger(os.Stderr, cfg.Log)
	if err != nil {
		platform.Fatal(platform.ExitConfig, err)
	}
	ctx, stop := platform.SignalContext()
	defer stop()
	if err := run(ctx, cfg, log, func(addr string) {
		fmt.Printf("\n  chat is running: open http://%s/\n  data: %s   stop: Ctrl-C\n\n", addr, cfg.DataDir)
	}); err != nil {
		code := platform.ExitFailure
		if _, ok := err.(configError); ok {
			code = platform.ExitConfig
		}
		platform.Fatal(code, err)
	}
}

type configError struct{ error }

// run starts the embedded NATS and the services, and stops them in order once ctx is done:
// services drain first, then NATS connections, then the server (which syncs its files).
func run(ctx context.Context, cfg config, log *slog.Logger, ready func(addr string)) error {
	cfg.NATS.StoreDir = cfg.DataDir // nats-server keeps its files in <dir>/jetstream
	if err := os.MkdirAll(cfg.NATS.StoreDir, 0o700); err != nil {
		return configError{fmt.Errorf("data dir: %w", err)}
	}
	ns, err := platform.StartNATS(cfg.NATS, log)
	if err != nil {
		return err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	log.Info("embedded nats started", "store", cfg.NATS.StoreDir, "sync_always", cfg.NATS.SyncAlways)

	if !cfg.NATS.SyncAlways && cfg.Gateway.BatchAtomicMin != 0 {
		// Atomic batches only pay for themselves by sharing an fsync.
		log.Info("fsync per write is off: group commit uses pipelined appends, not atomic batches")
		cfg.Gateway.BatchAtomicMin = 0
	}
	// Each service gets its own in-process connection, as it would its own process.
	ops := platform.NewOps()
	gwNC, err := platform.ConnectInProcess(ns, "chatd-gateway", log)
	if err != nil {
		return err
	}
	defer platform.DrainNATS(gwNC, 10*time.Second)
	prNC, err := platform.ConnectInProcess(ns, "chatd-presence", log)
	if err != nil {
		return err
	}
	defer platform.DrainNATS(prNC, 10*time.Second)
	unNC, err := platform.ConnectInProcess(ns, "chatd-unread", log)
	if err != nil {
		return err
	}
	defer platform.DrainNATS(unNC, 10*time.Second)
	gw, err := gateway.New(cfg.Gateway, gateway.Deps{NATS: gwNC, Log: log, Ops: ops, Topology: cfg.Topology})
	if err != nil {
		return configError{err}
	}
	pr, err := presence.New(cfg.Presence, presence.Deps{NATS: prNC, Log: log, Ops: ops, Topology: cfg.Topology})
	if err != nil {
		return configError{err}
	}
	un, err := unread.New(cfg.Unread, unread.Deps{NATS: unNC, Log: log, Ops: ops, Topology: cfg.Topology})
	if err != nil {
		return configError{err}
	}
	// The services run as one group: the first to fail stops the others; all drain on ctx.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return pr.Run(gctx) })
	g.Go(func() error { return un.Run(gctx) })
	g.Go(func() error { return gw.Run(gctx) })
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	for _, r := range []<-chan struct{}{pr.Ready(), un.Ready(), gw.Ready()} {
		select {
		case <-r:
		case err := <-done:
			if err == nil {
				err = ctx.Err()
			}
			return err
		}
	}
	ready(gw.Addr())
	return <-done
}
