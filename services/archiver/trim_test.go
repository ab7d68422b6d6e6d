package archiver

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go/jetstream"
)

// streamState is the stream's first and last seq and message count.
func (e *env) streamState() (first, last, msgs uint64) {
	e.t.Helper()
	info, err := e.stream.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.FirstSeq, info.State.LastSeq, info.State.Msgs
}

// trimPoint is the recorded trim point (0: none).
func (e *env) trimPoint() uint64 {
	e.t.Helper()
	kv, err := e.js.KeyValue(context.Background(), schemas.ArchiveBucket)
	if err != nil {
		e.t.Fatal(err)
	}
	en, err := kv.Get(context.Background(), schemas.ArchiveTrimKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0
	}
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := strconv.ParseUint(string(en.Value()), 10, 64)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// isContent reports whether subject is one the archiver trims.
func isContent(subject string) bool {
	for _, f := range schemas.TrimmedSubjects {
		if strings.HasPrefix(subject, strings.TrimSuffix(f, ">")) {
			return true
		}
	}
	return false
}

// checkWindow fails when the stream lost an event it must keep: the trim point never passes the
// ack floor and every event at or above it is there. It returns the trim point, once the purge it
// announces is done (content events below it gone; it is recorded before the purge), else 0, so
// callers poll until it settles.
func (e *env) checkWindow() uint64 {
	e.t.Helper()
	point := e.trimPoint() // before the floor: both only rise
	floor := e.ackFloor()
	if point > floor+1 {
		e.t.Fatalf("trim point %d but only %d is archived", point, floor)
	}
	last := e.lastSeq()
	present := map[uint64]string{}
	for _, en := range e.readLog() {
		present[en.seq] = en.subject
	}
	// A trim may run between reading the point and the log: allow content gone up to a newer point.
	newer := e.trimPoint()
	purged := true
	for seq := uint64(1); seq <= last; seq++ {
		subj, ok := present[seq]
		switch {
		case !ok && seq >= newer:
			e.t.Fatalf("seq %d is gone from the stream, above the trim point %d", seq, newer)
		case ok && seq < point && isContent(subj):
			purged = false // the purge announced by the point is under way
		}
	}
	if !purged {
		return 0
	}
	return point
}

// With CHAT_ARCHIVE_KEEP, archived events older than the window leave the stream; while
// ClickHouse is down nothing beyond the ack floor is purged, however old; once it is back they
// are archived (once) and then trimmed.
func TestTrimKeepsUnarchivedEvents(t *testing.T) {
	ch := startCH(t)
	topo := schemas.Topology{DedupWindow: 500 * time.Millisecond}
	e := newEnv(t, topo, ch)
	cfg := e.config()
	cfg.Keep, cfg.TrimEvery = time.Second, 50*time.Millisecond
	in := e.start(cfg)

	w := newWorld(e, 5)
	w.build(200)
	last := e.lastSeq()
	e.waitArchived(last)
	eventually(t, "archived events older than keep are trimmed", func() bool {
		return e.checkWindow() == last+1
	})
	if in.metric("chat_archiver_trims_total") == 0 {
		t.Fatal("no trim counted")
	}

	if err := ch.Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "readiness false", func() bool { ok, _ := in.ready(); return !ok })
	for range 200 {
		w.step()
	}
	last2 := e.lastSeq()
	floor := e.ackFloor()
	// Let the events grow older than keep, and the trimmer run many times meanwhile.
	written := time.Now()
	runs := in.svc.trimRuns.Load()
	eventually(t, "trim passes after the events are older than keep", func() bool {
		e.checkWindow()
		return time.Since(written) > 2*cfg.Keep && in.svc.trimRuns.Load() > runs+10
	})
	if point := e.checkWindow(); point > floor+1 || point > last+1 {
		t.Fatalf("trimmed below %d while ClickHouse is down, archived up to %d", point, floor)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := ch.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	e.stopMerges()
	e.waitArchived(last2)
	eventually(t, "trimmed after the outage", func() bool {
		return e.checkWindow() == last2+1
	})
	e.checkArchive(w.log)
}

// With CHAT_ARCHIVE_KEEP_BYTES, the stream's content is trimmed towards that size once events are
// archived and out of the dedup window (membership and other events stay, so the stream itself
// may stay above it).
func TestTrimKeepBytes(t *testing.T) {
	topo := schemas.Topology{DedupWindow: 200 * time.Millisecond}
	e := newEnv(t, topo, nil)
	cfg := e.config()
	cfg.KeepBytes, cfg.TrimEvery = 8000, 50*time.Millisecond
	e.start(cfg)
	w := newWorld(e, 6)
	w.build(300)
	last := e.lastSeq()
	e.waitArchived(last)
	// The trim point is recorded before the purge it announces: wait for the purge itself.
	eventually(t, "the stream's content is trimmed", func() bool {
		point := e.checkWindow()
		_, _, msgs := e.streamState()
		return point > 1 && msgs < last
	})
	if _, _, msgs := e.streamState(); msgs == 0 {
		t.Fatal("the whole stream was purged")
	}
	e.checkArchive(w.log)
}

// Keep must cover the stream's dedup window.
func TestKeepShorterThanDedupWindowRejected(t *testing.T) {
	cfg := Defaults()
	cfg.Addrs = []string{"127.0.0.1:9000"}
	cfg.Keep = time.Hour
	if err := cfg.ValidateTopology(schemas.Topology{}); err == nil {
		t.Fatal("a keep of 1h under the default 24h dedup window was accepted")
	}
	if err := cfg.ValidateTopology(schemas.Topology{DedupWindow: 30 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"insert timeout above a third of the ack wait": func(c *Config) { c.InsertTimeout = c.AckWait / 2 },
		"bad database":      func(c *Config) { c.Database = "chat; DROP" },
		"bad address":       func(c *Config) { c.Addrs = []string{"nohostport"} },
		"zero batch":        func(c *Config) { c.BatchSize = 0 },
		"retry max < min":   func(c *Config) { c.RetryMax = c.RetryMin / 2 },
		"negative keep":     func(c *Config) { c.Keep = -time.Second },
		"password twice":    func(c *Config) { c.Password, c.PasswordFile = "x", "/etc/x" },
		"batch above limit": func(c *Config) { c.BatchSize = MaxBatchSize + 1 },
	} {
		c := Defaults()
		c.Addrs = []string{"127.0.0.1:9000"}
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := Defaults()
	if err := c.Validate(); err != nil || c.Enabled() {
		t.Fatalf("defaults: %v, enabled %v", err, c.Enabled())
	}
	if _, err := New(c, Deps{}); err == nil {
		t.Fatal("New accepted a config without ClickHouse")
	}
}

// Events newer than CHAT_ARCHIVE_KEEP stay in the stream although archived; older ones leave it:
// the stream is trimmed to exactly the first event within the window.
func TestTrimKeepsTheWindow(t *testing.T) {
	topo := schemas.Topology{DedupWindow: 500 * time.Millisecond}
	e := newEnv(t, topo, nil)
	cfg := e.config()
	cfg.Keep, cfg.TrimEvery = 3*time.Second, 50*time.Millisecond
	in := e.start(cfg)
	w := newWorld(e, 7)
	w.build(100)
	lastOld := e.lastSeq()
	eventually(t, "the first events are older than keep", func() bool {
		m, err := e.stream.GetMsg(context.Background(), lastOld)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return true // trimmed: it is older than keep
		}
		if err != nil {
			t.Fatal(err)
		}
		return time.Since(m.Time) > cfg.Keep
	})
	tB := time.Now()
	for range 100 {
		w.step()
	}
	firstNew := lastOld + 1
	e.waitArchived(e.lastSeq())
	eventually(t, "trimmed to the window", func() bool {
		point := e.checkWindow()
		if point > firstNew && time.Since(tB) < cfg.Keep {
			t.Fatalf("trimmed below %d: events within keep (from %d) were purged", point, firstNew)
		}
		return point >= firstNew // beyond only once the new events are older than keep too (slow machine)
	})
	if in.metric("chat_archiver_trimmed_seq") < float64(firstNew) {
		t.Fatalf("trimmed seq %v, want %d", in.metric("chat_archiver_trimmed_seq"), firstNew)
	}
	e.checkArchive(w.log)
}
