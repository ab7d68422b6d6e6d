package platform

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedNATS configures the nats-server the all-in-one embeds.
type EmbeddedNATS struct {
	// StoreDir is where JetStream keeps its files.
	StoreDir string
	// SyncAlways fsyncs every JetStream write before it is acknowledged. On by default: without it an
	// acknowledged event can be lost on power loss. When off, SyncInterval applies.
	SyncAlways bool
	// SyncInterval is the fsync period when SyncAlways is off; 0 means nats-server's default (2 min).
	SyncInterval time.Duration
	// Listen is an optional host:port on which the embedded server also accepts external NATS
	// clients ("127.0.0.1:-1": a free port, for tests); empty means in-process connections only.
	Listen string
	// ServerName names the server; empty means "chatd".
	ServerName string
}

// BindEmbeddedNATS binds the embedded server options.
func (f *Flags) BindEmbeddedNATS(c *EmbeddedNATS) {
	f.Bool(&c.SyncAlways, "nats-sync-always", "CHAT_NATS_SYNC_ALWAYS", true,
		"fsync every JetStream write before acknowledging it (turning it off risks losing acknowledged events on power loss)")
	f.Duration(&c.SyncInterval, "nats-sync-interval", "CHAT_NATS_SYNC_INTERVAL", 0,
		"fsync period when sync-always is off (0: nats-server default, 2m)")
	f.String(&c.Listen, "nats-listen", "CHAT_NATS_LISTEN", "",
		"also accept external NATS clients on this host:port (empty: in-process only)")
}

// StartNATS starts an embedded nats-server with JetStream on disk and waits until it is ready.
func StartNATS(c EmbeddedNATS, log *slog.Logger) (*server.Server, error) {
	if c.StoreDir == "" {
		return nil, errors.New("embedded nats: a store dir is required")
	}
	opts := &server.Options{
		ServerName:   orDefault(c.ServerName, "chatd"),
		JetStream:    true,
		StoreDir:     c.StoreDir,
		SyncAlways:   c.SyncAlways,
		SyncInterval: c.SyncInterval,
		DontListen:   c.Listen == "",
		NoSigs:       true,
		MaxPayload:   1024 * 1024,
	}
	if c.Listen != "" {
		host, port, err := net.SplitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen %q: %w", c.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen port %q: %w", port, err)
		}
		opts.Host, opts.Port = host, p
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	s.SetLoggerV2(&natsLogger{log: log.With("component", "nats-server")}, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded nats: not ready within 30s")
	}
	return s, nil
}

// natsLogger adapts nats-server's logger to slog.
type natsLogger struct{ log *slog.Logger }

// Notices (the start-up banner and the like) are debug: the services log what an operator needs.
func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
