package platform

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/eventchat/chat/schemas"
)

// Exit codes shared by every command.
const (
	ExitOK      = 0
	ExitFailure = 1 // the service failed while running
	ExitConfig  = 2 // bad flags, environment or configuration
)

// ParseFlags parses a command's flags; -help prints every option with its variable and default.
func ParseFlags(name string, args []string, bind func(*Flags)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	f := NewFlags(fs)
	bind(f)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(ExitOK)
		}
		return err
	}
	return f.Err()
}

// SignalContext is cancelled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// BindTopology binds the settings of the event log and buckets.
func (f *Flags) BindTopology(t *schemas.Topology) {
	f.Int(&t.Replicas, "replicas", "CHAT_REPLICAS", 1, "JetStream replicas of the stream and buckets (3 on a cluster)")
	f.Duration(&t.MaxAge, "retention", "CHAT_RETENTION", 0, "how long the log keeps events (0: forever)")
	f.Int64(&t.MaxBytes, "retention-bytes", "CHAT_RETENTION_BYTES", 0, "most bytes the log keeps (0: unlimited)")
	f.Duration(&t.DedupWindow, "dedup-window", "CHAT_DEDUP_WINDOW", 24*time.Hour, "how long a retried mid is recognised")
	f.Duration(&t.PresenceConnTTL, "presence-conn-ttl", "CHAT_PRESENCE_CONN_TTL", schemas.PresenceConnTTL,
		"how long a connection counts as live without a heartbeat (a killed gateway's users go offline after it plus the grace)")
}

// Fatal prints err and exits with code.
func Fatal(code int, err error) {
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(code)
}

// Sleep waits d, or less if ctx ends first; it reports whether the whole wait passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
