// Command chatd is the all-in-one: it embeds nats-server with JetStream on disk under the data dir
// and runs every service in one process, serving clients on CHAT_ADDR. `chatd -help` lists every
// option with its CHAT_* variable and default.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/archiver"
	"github.com/eventchat/chat/services/archiver/localch"
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
	Archiver archiver.Config
	// LocalClickHouse: "auto" starts a ClickHouse server from the installed binary, with its data
	// in <data dir>/clickhouse, when no CHAT_CLICKHOUSE_ADDR is given; "off" never does. Tests
	// leave it empty, which is off.
	LocalClickHouse string
	// DebugAddr serves the profiler when set (platform.ServeDebug).
	DebugAddr string
}

func (c *config) bind(f *platform.Flags) {
	f.String(&c.DataDir, "data-dir", "CHAT_DATA_DIR", "./data", "where JetStream keeps the event log and buckets")
	f.BindEmbeddedNATS(&c.NATS)
	f.BindLog(&c.Log)
	f.BindDebug(&c.DebugAddr)
	f.BindTopology(&c.Topology)
	c.Gateway.Bind(f)
	c.Presence.Bind(f)
	c.Unread.Bind(f)
	c.Archiver.Bind(f)
	f.String(&c.LocalClickHouse, "local-clickhouse", "CHAT_LOCAL_CLICKHOUSE", "auto",
		"auto: run the installed ClickHouse server in <data-dir>/clickhouse for the archive when CHAT_CLICKHOUSE_ADDR is empty; off: never")
}

func main() {
	cfg := config{Gateway: gateway.Defaults(), Presence: presence.Defaults(), Unread: unread.Defaults(), Archiver: archiver.Defaults()}
	if err := platform.ParseFlags("chatd", os.Args[1:], cfg.bind); err != nil {
		platform.Fatal(platform.ExitConfig, err)
	}
	log, err := platform.NewLogger(os.Stderr, cfg.Log)
	if err != nil {
		platform.Fatal(platform.ExitConfig, err)
	}
	ctx, stop := platform.SignalContext()
	defer stop()
	if err := run(ctx, cfg, log, func(addr, archive string) {
		fmt.Printf("\n  chat is running: open http://%s/\n  data: %s   stop: Ctrl-C\n", addr, cfg.DataDir)
		if archive != "" {
			fmt.Printf("  archive: %s\n\n", archive)
		} else {
			fmt.Printf("  archive: off. To keep every event in ClickHouse for long-term history and analytics,\n" +
				"  install it (apt-get install clickhouse-server clickhouse-client) and run again, or set\n" +
				"  CHAT_CLICKHOUSE_ADDR=host:9000 to use a running server.\n\n")
		}
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
// ready gets the address clients connect to and a description of the archive ("" when off).
func run(ctx context.Context, cfg config, log *slog.Logger, ready func(addr, archive string)) error {
	cfg.NATS.StoreDir = cfg.DataDir // nats-server keeps its files in <dir>/jetstream
	if err := platform.ServeDebug(ctx, cfg.DebugAddr, log); err != nil {
		return configError{fmt.Errorf("debug listener: %w", err)}
	}
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

	localCH := "" // the local ClickHouse's directory, when one runs
	if cfg.localClickHouse() {
		// The archive is optional: a local ClickHouse that does not start leaves the chat running
		// without it, and says so.
		ch, err := startLocalClickHouse(ctx, cfg.DataDir, log)
		if err != nil {
			log.Error("archive off: the local ClickHouse did not start", "err", err)
			cfg.LocalClickHouse = "off"
		} else {
			defer ch.Stop()
			cfg.Archiver.Addrs = []string{ch.Addr()}
			localCH = ch.Dir
		}
	} else if !cfg.Archiver.Enabled() {
		log.Info("archive off: CHAT_CLICKHOUSE_ADDR not set and no local ClickHouse (CHAT_LOCAL_CLICKHOUSE, or none installed)")
	}
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
	var ar *archiver.Service
	if cfg.Archiver.Enabled() {
		arNC, err := platform.ConnectInProcess(ns, "chatd-archiver", log)
		if err != nil {
			return err
		}
		defer platform.DrainNATS(arNC, 10*time.Second)
		// A ClickHouse outage must not make the chat server unready: the archiver catches up.
		if ar, err = archiver.New(cfg.Archiver, archiver.Deps{NATS: arNC, Log: log, Ops: ops, Topology: cfg.Topology,
			SkipReadiness: true}); err != nil {
			return configError{err}
		}
	}
	// The services run as one group: the first to fail stops the others; all drain on ctx.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return pr.Run(gctx) })
	g.Go(func() error { return un.Run(gctx) })
	if ar != nil {
		g.Go(func() error { return ar.Run(gctx) })
	}
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
	archive := ""
	if cfg.Archiver.Enabled() {
		archive = fmt.Sprintf("ClickHouse at %s, database %s", strings.Join(cfg.Archiver.Addrs, ","), cfg.Archiver.Database)
		if localCH != "" {
			archive = fmt.Sprintf("local ClickHouse in %s, database %s", localCH, cfg.Archiver.Database)
		}
	}
	ready(gw.Addr(), archive)
	return <-done
}

// localClickHouse reports whether the all-in-one runs a local ClickHouse for the archive: no
// address given, CHAT_LOCAL_CLICKHOUSE=auto, and a server installed.
func (c *config) localClickHouse() bool {
	if c.Archiver.Enabled() || c.LocalClickHouse != "auto" {
		return false
	}
	_, _, err := localch.Binary()
	return err == nil
}

// startLocalClickHouse runs the installed ClickHouse server with its data in <dataDir>/clickhouse,
// on free loopback ports.
func startLocalClickHouse(ctx context.Context, dataDir string, log *slog.Logger) (*localch.Server, error) {
	dir := filepath.Join(dataDir, "clickhouse")
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	ch, err := localch.Start(sctx, dir, localch.Options{})
	if err != nil {
		return nil, fmt.Errorf("local ClickHouse: %w", err)
	}
	log.Info("local ClickHouse started for the archive", "addr", ch.Addr(), "dir", dir)
	return ch, nil
}
