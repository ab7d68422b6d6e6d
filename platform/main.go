package platform

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
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

// DefaultGCPercent is the garbage collector's target while a process carries message traffic
// (GOGC 100 is Go's; see QuietGCPercent for the rest of the time): a collection starts once the
// heap has grown by this percentage of what the last one kept. A message allocates about 10 KB
// across the gateway, the projections and nats-server; at 100, collections ran every few seconds
// under load, and each mark phase took one of two cores away for up to ~200 ms, which is what the
// latency tail of direct messages was made of. The price is memory: the heap peaks at up to five
// times what it keeps live, where 100 gives twice. GOGC, when set, wins (and turns the tuning
// off); GOMEMLIMIT (a soft limit the runtime collects harder near) is the way to bound it.
const DefaultGCPercent = 400

// ParseFlags parses a command's flags; -help prints every option with its variable and default.
// Every command also takes -gc-percent (CHAT_GC_PERCENT), applied here.
func ParseFlags(name string, args []string, bind func(*Flags)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	f := NewFlags(fs)
	bind(f)
	var gcPercent int
	f.Int(&gcPercent, "gc-percent", "CHAT_GC_PERCENT", DefaultGCPercent,
		"the garbage collector's target while a gateway in the process carries message traffic (100 otherwise and during connect bursts), as GOGC (which wins when set and turns this off): a larger one collects less often and takes more memory; -1: off")
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
		gcMode.mu.Lock()
		gcMode.target = percent
		if percent > QuietGCPercent {
			gcMode.applyLocked(time.Now()) // quiet until traffic says otherwise
		} else {
			gcMode.setLocked(percent)
		}
		gcMode.mu.Unlock()
	}
	return nil
}

// QuietGCPercent is the collector's target while the process carries no message traffic, or
// makes long-lived objects in bulk: Go's default.
const QuietGCPercent = 100

// gcState makes the collector's target follow what the process does. Message traffic makes objects that
// nearly all die young, and wants rare collections: each mark phase takes a core away for up to
// ~200 ms, which was the latency tail of direct messages. Connections and their records
// (presence, the per-connection state, heartbeats replacing them) make objects that live long;
// between two collections they are spread over the memory that the garbage made alongside them
// took, and Go's collector does not move objects: the rarer the collections while they are made,
// the more sparsely they end up stored, for as long as they live. So the configured target
// (CHAT_GC_PERCENT, 400) is in force while the process carries message traffic (BusyGC, which a
// gateway's live feed calls), and QuietGCPercent otherwise and during connect bursts (DenseGC).
// Measured with 19,000 idle connections: 13.7 KB of resident memory each at 100, 18.1 KB at 400;
// direct messages at 5,000/s: p99 3-15 ms at 100, 2-3 ms at 400 (docs/benchmarks.md).
//
// gcState holds the configured target (0: untouched, GOGC rules), the one in force, and the ends
// of the last BusyGC and DenseGC periods.
type gcState struct {
	mu                sync.Mutex
	target            int
	current           int
	busyEnd, denseEnd time.Time
	recheck           *time.Timer
}

var gcMode gcState

// BusyGC puts the configured target in force for the next d (extended by later calls), unless
// a DenseGC period runs.
func BusyGC(d time.Duration) { gcMode.extend(&gcMode.busyEnd, d) }

// DenseGC puts QuietGCPercent in force for the next d (extended by later calls), busy or not. A
// gateway calls it while connections arrive in bulk (a burst of logins, the reconnects after a
// restart), which allocates fast but makes long-lived sessions.
func DenseGC(d time.Duration) { gcMode.extend(&gcMode.denseEnd, d) }

func (m *gcState) extend(end *time.Time, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.target <= QuietGCPercent { // GOGC set (0), off (-1) or low already: nothing to tune
		return
	}
	now := time.Now()
	if e := now.Add(d); e.After(*end) {
		*end = e
	}
	m.applyLocked(now)
}

// applyLocked puts in force the target the periods call for at now, and schedules the next
// change.
func (m *gcState) applyLocked(now time.Time) {
	busy, dense := now.Before(m.busyEnd), now.Before(m.denseEnd)
	if busy && !dense {
		m.setLocked(m.target)
	} else {
		m.setLocked(QuietGCPercent)
	}
	var next time.Time
	for _, e := range []time.Time{m.busyEnd, m.denseEnd} {
		if e.After(now) && (next.IsZero() || e.Before(next)) {
			next = e
		}
	}
	if next.IsZero() {
		return
	}
	if m.recheck == nil {
		m.recheck = time.AfterFunc(next.Sub(now), func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.applyLocked(time.Now())
		})
		return
	}
	m.recheck.Reset(next.Sub(now))
}

// setLocked puts percent in force (under mu).
func (m *gcState) setLocked(percent int) {
	if m.current != percent {
		m.current = percent
		debug.SetGCPercent(percent)
	}
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
