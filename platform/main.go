package platform

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
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

// DefaultGCPercent is the garbage collector's target of every command (GOGC 100 is Go's): a
// collection starts once the heap has grown by this percentage of what the last one kept. A
// message allocates about 10 KB across the gateway, the projections and nats-server; at the
// default target, collections ran several times a second under load, and each mark phase took one
// of two cores away for milliseconds, which is what the latency tail of direct messages was made
// of (p99 at 5,000 msgs/s: 11-15 ms at 100, 3-6 ms at 400, docs/benchmarks.md). The price is
// memory: the heap peaks at up to five times what it keeps live, where 100 gives twice. GOGC, when
// set, wins; GOMEMLIMIT (a soft limit the runtime collects harder near) is the way to bound it.
const DefaultGCPercent = 400

// ParseFlags parses a command's flags; -help prints every option with its variable and default.
// Every command also takes -gc-percent (CHAT_GC_PERCENT), applied here.
func ParseFlags(name string, args []string, bind func(*Flags)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	f := NewFlags(fs)
	bind(f)
	var gcPercent int
	f.Int(&gcPercent, "gc-percent", "CHAT_GC_PERCENT", DefaultGCPercent,
		"the garbage collector's target, as GOGC (which wins when set): a larger one collects less often and takes more memory; -1: off")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(ExitOK)
		}
		return err
	}
	if err := f.Err(); err != nil {
		return err
	}
	return setGCPercent(gcPercent, os.Getenv("GOGC"))
}

// setGCPercent applies the collector's target unless GOGC (the runtime's own setting) is set.
func setGCPercent(percent int, gogc string) error {
	if percent < -1 || percent == 0 {
		return fmt.Errorf("gc-percent %d: -1 (off) or a positive percentage", percent)
	}
	if gogc == "" {
		debug.SetGCPercent(percent)
	}
	return nil
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
