package platform

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATSConfig says how a service reaches NATS when it runs on its own.
type NATSConfig struct {
	// URL of the NATS cluster (comma-separated seeds).
	URL string
	// CredsFile is an optional NATS credentials file.
	CredsFile string
}

// BindNATS binds the NATS client options.
func (f *Flags) BindNATS(c *NATSConfig) {
	f.String(&c.URL, "nats-url", "CHAT_NATS_URL", nats.DefaultURL, "NATS server URL(s), comma-separated")
	f.String(&c.CredsFile, "nats-creds", "CHAT_NATS_CREDS", "", "NATS credentials file (optional)")
}

func connOptions(name string, log *slog.Logger) []nats.Option {
	return []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(16 * 1024 * 1024),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: a deliberate close
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrl()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("nats async error", "subject", subj, "err", err)
		}),
	}
}

// Connect dials an external NATS.
func Connect(c NATSConfig, name string, log *slog.Logger) (*nats.Conn, error) {
	opts := connOptions(name, log)
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	opts = append(opts, nats.RetryOnFailedConnect(false))
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", c.URL, err)
	}
	return nc, nil
}

// ConnectInProcess connects to an embedded server without a socket.
func ConnectInProcess(s *server.Server, name string, log *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect("", append(connOptions(name, log), nats.InProcessServer(s))...)
	if err != nil {
		return nil, fmt.Errorf("nats connect in-process: %w", err)
	}
	return nc, nil
}

// DrainNATS drains a connection (in-flight publishes and subscriptions finish) and waits, at most
// timeout, for it to close.
func DrainNATS(nc *nats.Conn, timeout time.Duration) {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(timeout):
		nc.Close()
	}
}

// DrainSub drains a subscription (the messages it already received are handled, no new ones
// come), waiting at most timeout before unsubscribing outright.
func DrainSub(sub *nats.Subscription, timeout time.Duration) {
	closed := sub.StatusChanged(nats.SubscriptionClosed)
	if err := sub.Drain(); err != nil {
		_ = sub.Unsubscribe()
		return
	}
	select {
	case <-closed:
	case <-time.After(timeout):
		_ = sub.Unsubscribe()
	}
}
