package archiver

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/archiver/chstore"
)

// Every kind of event (messages, edits, deletes, reactions, member, read, contact and gone
// events, and entries that do not decode), written before and while the archiver runs, ends up in
// ClickHouse exactly once, with the log's payload, without FINAL.
func TestEveryEventArchivedOnce(t *testing.T) {
	e := newEnv(t, schemas.Topology{}, nil)
	w := newWorld(e, 1)
	w.build(600) // before the archiver starts: it reads the log from its first event
	in := e.start(e.config())
	for range 600 {
		w.step()
	}
	last := e.lastSeq()
	e.waitArchived(last)
	e.checkArchive(e.logData())
	if len(w.log) != int(last) {
		t.Fatalf("the world logged %d events, the stream has %d", len(w.log), last)
	}
	if got := in.metric("chat_archiver_rows_inserted_total"); got != float64(last) {
		t.Fatalf("rows inserted %v, want %d", got, last)
	}
	if got := in.metric("chat_archiver_duplicates_skipped_total"); got != 0 {
		t.Fatalf("duplicates skipped %v without redeliveries", got)
	}

	// The columns extracted for queries agree with the payloads.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	rows, err := e.conn.Query(ctx, "SELECT seq, type, conv, from_user, tid, ref, ref_from, user FROM "+e.db+".events")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	kinds := map[string]int{}
	for rows.Next() {
		var (
			seq, ref                            uint64
			typ, conv, from, tid, refFrom, user string
		)
		if err := rows.Scan(&seq, &typ, &conv, &from, &tid, &ref, &refFrom, &user); err != nil {
			t.Fatal(err)
		}
		ev, err := schemas.DecodeEvent(w.log[seq])
		if err != nil {
			if typ != "" || conv != "" {
				t.Fatalf("seq %d does not decode but was archived as %q %q", seq, typ, conv)
			}
			kinds["undecodable"]++
			continue
		}
		wantRef := ev.Ref
		if ev.Type == schemas.TypeRead {
			wantRef = ev.Seq
		}
		if typ != ev.Type || conv != ev.Conv || from != ev.From || tid != ev.Tid || ref != wantRef ||
			refFrom != ev.RefFrom || user != ev.User {
			t.Fatalf("seq %d: columns %q %q %q %q %d %q %q, event %+v", seq, typ, conv, from, tid, ref, refFrom, user, ev)
		}
		kinds[typ+"/"+ev.Kind]++
	}
	for _, k := range []string{"chat.message.v1/", "chat.message.v1/edit", "chat.message.v1/delete",
		"chat.message.v1/react", "chat.member.v1/", "chat.read.v1/", "chat.contact.v1/", "chat.gone.v1/", "undecodable"} {
		if kinds[k] == 0 {
			t.Fatalf("the generated log has no %s event: %v", k, kinds)
		}
	}
}

// An archiver killed after its insert and before its acks leaves the batch unacknowledged; a new
// archiver gets it redelivered, finds it archived and stores nothing twice.
func TestKilledBetweenInsertAndAck(t *testing.T) {
	e := newEnv(t, schemas.Topology{}, nil)
	w := newWorld(e, 2)
	w.build(400)
	last := e.lastSeq()

	cfg := e.config()
	cfg.BatchSize, cfg.BatchWait = 100, 20*time.Millisecond
	cfg.AckWait, cfg.InsertTimeout = 3*time.Second, time.Second
	var (
		once    sync.Once
		crashed = make(chan []uint64, 1)
		a       *instance
		started = make(chan struct{})
	)
	cfg.afterInsert = func(seqs []uint64) {
		once.Do(func() {
			<-started
			// A crash right here: nothing more reaches NATS, the run ends.
			a.nc.Close()
			a.stop()
			crashed <- seqs
		})
	}
	a = e.startNoWait(cfg)
	close(started)
	var lost []uint64
	select {
	case lost = <-crashed:
	case <-time.After(wait):
		t.Fatal("the archiver never inserted a batch")
	}
	_ = a.Stop()
	if e.ackFloor() >= lost[0] {
		t.Fatalf("ack floor %d: the crashed batch from %d was acknowledged", e.ackFloor(), lost[0])
	}
	rows, _ := e.counts()
	if rows < uint64(len(lost)) {
		t.Fatalf("archive has %d rows: the crashed batch of %d was not inserted", rows, len(lost))
	}

	cfg.afterInsert = nil
	b := e.start(cfg)
	e.waitArchived(last)
	e.checkArchive(e.logData())
	if dups := b.metric("chat_archiver_duplicates_skipped_total"); dups < float64(len(lost)) {
		t.Fatalf("the new archiver skipped %v duplicates, want at least the %d of the crashed batch", dups, len(lost))
	}
}

// ClickHouse killed for a while under traffic: the archiver retries, readiness goes false, and
// once ClickHouse is back everything is archived once, readiness returns, the lag recovers.
// Events requests meanwhile answer unavailable.
func TestClickHouseOutage(t *testing.T) {
	ch := startCH(t)
	e := newEnv(t, schemas.Topology{}, ch)
	cfg := e.config()
	cfg.ReadyLag = 20 * time.Second
	in := e.start(cfg)
	tr := e.startTraffic(200)
	eventually(t, "some events archived", func() bool { return in.metric("chat_archiver_rows_inserted_total") >= 100 })

	if err := ch.Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "readiness false", func() bool { ok, _ := in.ready(); return !ok })
	floorDown := e.ackFloor()
	eventually(t, "retries while ClickHouse is down", func() bool { return in.metric("chat_archiver_retries_total") >= 3 })
	eventually(t, "traffic while ClickHouse is down", func() bool { return uint64(tr.count()) > floorDown+200 })
	eventually(t, "lag while ClickHouse is down", func() bool { return in.metric("chat_archiver_lag_seconds") >= 1 })
	rp := askEvents(t, e, schemas.ArchiveEventsRequest{User: "ann", Convs: []schemas.ArchiveConv{{Conv: "g:load0"}}, Limit: 10})
	if rp.ErrCode != schemas.CodeUnavailable {
		t.Fatalf("events request while ClickHouse is down: %+v", rp)
	}
	if f := e.ackFloor(); f > floorDown+uint64(2*cfg.BatchSize) {
		t.Fatalf("ack floor moved from %d to %d while ClickHouse was down", floorDown, f)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := ch.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	e.stopMerges()
	eventually(t, "readiness true again", func() bool { ok, _ := in.ready(); return ok })
	time.Sleep(200 * time.Millisecond) // a little more traffic after the outage
	log := tr.stop(t)
	e.waitArchived(e.lastSeq())
	e.checkArchive(log)
	eventually(t, "lag recovers", func() bool { return in.metric("chat_archiver_lag_seconds") < 1 })
	if ok, body := in.ready(); !ok {
		t.Fatalf("not ready after recovery: %s", body)
	}
}

// Two archivers share the consumer under traffic: every seq is archived once, each by one of them.
func TestTwoArchivers(t *testing.T) {
	e := newEnv(t, schemas.Topology{}, nil)
	cfg := e.config()
	cfg.BatchSize = 50
	cfg.ID = "a"
	a := e.start(cfg)
	cfg.ID = "b"
	b := e.start(cfg)
	var trs []*traffic
	for range 3 {
		trs = append(trs, e.startTraffic(300))
	}
	eventually(t, "traffic", func() bool { return trs[0].count() >= 600 })
	log := map[uint64][]byte{}
	for _, tr := range trs {
		for seq, data := range tr.stop(t) {
			log[seq] = data
		}
	}
	e.waitArchived(e.lastSeq())
	e.checkArchive(log)
	ra, rb := a.metric("chat_archiver_rows_inserted_total"), b.metric("chat_archiver_rows_inserted_total")
	t.Logf("archiver a inserted %v rows, b %v", ra, rb)
	if ra+rb != float64(len(log)) {
		t.Fatalf("the two archivers inserted %v + %v rows for %d events", ra, rb, len(log))
	}
	if ra == 0 || rb == 0 {
		t.Fatalf("one archiver did all the work: a %v, b %v", ra, rb)
	}
}

// A graceful stop finishes the batch in hand and hands queued events back: a second instance
// archives the rest, and nothing is stored twice.
func TestGracefulStopHandsOver(t *testing.T) {
	e := newEnv(t, schemas.Topology{}, nil)
	cfg := e.config()
	cfg.BatchSize, cfg.BatchWait = 20, 200*time.Millisecond
	a := e.start(cfg)
	tr := e.startTraffic(400)
	eventually(t, "some events archived", func() bool { return a.metric("chat_archiver_rows_inserted_total") >= 100 })
	if err := a.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	b := e.start(cfg)
	log := tr.stop(t)
	e.waitArchived(e.lastSeq())
	e.checkArchive(log)
	if got := b.metric("chat_archiver_duplicates_skipped_total"); got != 0 {
		t.Fatalf("the second archiver skipped %v duplicates after a graceful stop", got)
	}
}

// The row mapping keeps an event's own time, and uses the stored time when it has none.
func TestRowTimes(t *testing.T) {
	stored := time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.UTC)
	data, _ := json.Marshal(schemas.Event{Type: schemas.TypeMessage, Conv: "g:x", Ts: "2026-01-02T03:04:05.678Z",
		From: "ann", Mid: "m", MsgType: "text", Msg: "x"})
	if r := chstore.RowOf(1, "chat.msg.g.x", data, stored); !r.Ts.Equal(time.Date(2026, 1, 2, 3, 4, 5, 678_000_000, time.UTC)) {
		t.Fatalf("ts %v", r.Ts)
	}
	if r := chstore.RowOf(2, "chat.msg.g.x", []byte("junk"), stored); !r.Ts.Equal(stored) || r.Type != "" {
		t.Fatalf("undecodable row %+v", r)
	}
	data, _ = json.Marshal(map[string]any{"type": schemas.TypeContact, "ts": "x", "from": "ann", "user": "ben",
		"action": "add", "conv": "'; DROP TABLE x"})
	if r := chstore.RowOf(3, "chat.contact.ann", data, stored); r.Conv != "" || r.Type != schemas.TypeContact {
		t.Fatalf("contact row with a stray conv: %+v", r)
	}
}

// A full batch of events in as many conversations with the longest ids makes statements far
// above ClickHouse's default max_query_size (256 KiB); they must still run, or the sink would
// retry such a batch for ever.
func TestLargeBatchStatements(t *testing.T) {
	e := newEnv(t, schemas.Topology{}, nil)
	cfg := e.config()
	svc, err := New(cfg, Deps{NATS: e.nc, Log: testLog(), Ops: platform.NewOps()})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.ch.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := chstore.Migrate(ctx, svc.ch, e.db); err != nil {
		t.Fatal(err)
	}
	var rows []chstore.Row
	for i := range existingChunk + 10 {
		conv := fmt.Sprintf("dm:%s%04d:%s", strings.Repeat("a", 59), i, strings.Repeat("z", 64))
		data, _ := json.Marshal(schemas.Event{Type: schemas.TypeMessage, Conv: conv, Ts: schemas.FormatTime(time.Now()),
			From: "ann", Mid: "m", MsgType: "text", Msg: "x"})
		rows = append(rows, chstore.RowOf(uint64(i+1), "chat.msg.dm.x.y", data, time.Now()))
	}
	if n, err := svc.insertMissing(ctx, rows[:existingChunk/2], false); err != nil || n != existingChunk/2 {
		t.Fatalf("first half: %d, %v", n, err)
	}
	// The seq index loses the first half (as after an INSERT that failed between the table and
	// its view): the exact check, a retry's, still finds them in the table.
	if err := svc.ch.Exec(ctx, "TRUNCATE TABLE "+e.db+"."+chstore.SeqIndexTable); err != nil {
		t.Fatal(err)
	}
	if n, err := svc.insertMissing(ctx, rows, true); err != nil || n != len(rows)-existingChunk/2 {
		t.Fatalf("all: %d, %v", n, err)
	}
	if got, uniq := e.counts(); got != uint64(len(rows)) || uniq != got {
		t.Fatalf("count %d, uniq %d, want %d", got, uniq, len(rows))
	}
}

// A deleted consumer is created again; the new one delivers the log from its start, and what
// was archived already is skipped, not stored twice.
func TestConsumerDeletedIsRecreated(t *testing.T) {
	e := newEnv(t, schemas.Topology{}, nil)
	in := e.start(e.config())
	w := newWorld(e, 8)
	w.build(200)
	first := e.lastSeq()
	e.waitArchived(first)
	if err := e.js.DeleteConsumer(context.Background(), schemas.EventsStream, schemas.ArchiverConsumer); err != nil {
		t.Fatal(err)
	}
	for range 200 {
		w.step()
	}
	e.waitArchived(e.lastSeq())
	e.checkArchive(w.log)
	if dups := in.metric("chat_archiver_duplicates_skipped_total"); dups < float64(first) {
		t.Fatalf("%v duplicates skipped, want the %d events archived before the consumer was deleted", dups, first)
	}
}

// Stopped while ClickHouse is down, an archiver gives up its batch within the shutdown bound,
// acknowledging nothing; once ClickHouse is back another archiver archives every event once.
func TestShutdownWhileClickHouseDown(t *testing.T) {
	ch := startCH(t)
	e := newEnv(t, schemas.Topology{}, ch)
	cfg := e.config()
	cfg.AckWait, cfg.InsertTimeout, cfg.ShutdownTimeout = 3*time.Second, time.Second, 500*time.Millisecond
	a := e.start(cfg)
	tr := e.startTraffic(200)
	eventually(t, "some events archived", func() bool { return a.metric("chat_archiver_rows_inserted_total") >= 50 })
	if err := ch.Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "retries while ClickHouse is down", func() bool { return a.metric("chat_archiver_retries_total") >= 2 })
	floor := e.ackFloor()
	start := time.Now()
	if err := a.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("stopping took %s with a shutdown bound of %s", took, cfg.ShutdownTimeout)
	}
	if f := e.ackFloor(); f > floor+uint64(cfg.BatchSize) {
		t.Fatalf("ack floor moved from %d to %d while ClickHouse was down", floor, f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := ch.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	e.stopMerges()
	e.start(cfg)
	log := tr.stop(t)
	e.waitArchived(e.lastSeq())
	e.checkArchive(log)
}
