package platform

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
)

// Deps are what a service runs on, made by its command (RunStandalone) or by the all-in-one.
type Deps struct {
	NATS *nats.Conn
	Log  *slog.Logger
	// Ops carries the metrics registry and readiness checks.
	Ops *Ops
	// Topology shapes the streams and buckets created on first start.
	Topology schemas.Topology
}

// Service is a unit that runs until its context ends (a presence, unread or archiver instance).
type Service interface {
	Run(ctx context.Context) error
}

// Standalone describes a service's own command: what `<name> -help` lists and how to build it.
type Standalone struct {
	// Name names the command, its NATS connection ("chat-<name>") and its logs.
	Name string
	// AddrEnv and AddrDefault are the ops listen address's variable and default.
	AddrEnv, AddrDefault string
	// Bind binds the service's own options.
	Bind func(*Flags)
	// Check validates the options before anything connects (nil: none); an error exits 2.
	Check func() error
	// New builds the service on its dependencies; an error exits 2 (a bad configuration).
	New func(Deps) (Service, error)
}

// RunStandalone runs a service on its own against an external NATS, as it runs in Kubernetes:
// options from args and CHAT_* variables, /healthz /readyz /metrics on the ops address, and a
// graceful stop on SIGTERM or Ctrl-C (readiness fails, the service stops, NATS drains). It exits
// the process with the codes of Fatal: 1 a failure while running, 2 a bad configuration.
func RunStandalone(args []string, s Standalone) {
	var (
		addr, debugAddr string
		nc              NATSConfig
		lc              LogConfig
		topo            schemas.Topology
	)
	if err := ParseFlags(s.Name, args, func(f *Flags) {
		s.Bind(f)
		f.String(&addr, "addr", s.AddrEnv, s.AddrDefault, "listen address of /healthz, /readyz and /metrics")
		f.BindDebug(&debugAddr)
		f.BindNATS(&nc)
		f.BindLog(&lc)
		f.BindTopology(&topo)
	}); err != nil {
		Fatal(ExitConfig, err)
	}
	if s.Check != nil {
		if err := s.Check(); err != nil {
			Fatal(ExitConfig, err)
		}
	}
	log, err := NewLogger(os.Stderr, lc)
	if err != nil {
		Fatal(ExitConfig, err)
	}
	ops := NewOps()
	conn, err := Connect(nc, "chat-"+s.Name, log)
	if err != nil {
		Fatal(ExitFailure, err)
	}
	svc, err := s.New(Deps{NATS: conn, Log: log, Ops: ops, Topology: topo})
	if err != nil {
		conn.Close()
		Fatal(ExitConfig, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		conn.Close()
		Fatal(ExitConfig, err)
	}
	mux := http.NewServeMux()
	ops.Mount(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("ops server", "err", err)
		}
	}()
	log.Info(s.Name+" ops listening", "addr", ln.Addr().String())

	ctx, stop := SignalContext()
	defer stop()
	if err := ServeDebug(ctx, debugAddr, log); err != nil {
		Fatal(ExitConfig, err)
	}
	go func() {
		<-ctx.Done()
		ops.SetDraining()
	}()
	runErr := svc.Run(ctx)
	ops.SetDraining()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(shutdown)
	cancel()
	DrainNATS(conn, 10*time.Second)
	if runErr != nil {
		Fatal(ExitFailure, runErr)
	}
}
