package archiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/archiver/chstore"
	"github.com/eventchat/chat/services/archiver/localch"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// wait bounds what should happen promptly; generous, because tests share two cores (and run
// under the race detector).
const wait = 60 * time.Second

// sharedCH is the ClickHouse most tests use, each in a database of its own; tests that stop
// ClickHouse start their own.
var sharedCH *localch.Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "archiver-test-ch-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	sharedCH, err = localch.Start(ctx, dir, localch.Options{})
	cancel()
	if err != nil {
		if errors.Is(err, localch.ErrNotInstalled) {
			fmt.Fprintln(os.Stderr, "FAIL: the archiver tests need a real ClickHouse server and none is installed: "+
				"apt-get install clickhouse-server clickhouse-client")
		} else {
			fmt.Fprintln(os.Stderr, "FAIL: starting ClickHouse:", err)
		}
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = sharedCH.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func testLog() *slog.Logger {
	if os.Getenv("CHAT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startCH starts a ClickHouse of the test's own (one it may stop), failing clearly when none is
// installed.
func startCH(t *testing.T) *localch.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := localch.Start(ctx, t.TempDir(), localch.Options{})
	if errors.Is(err, localch.ErrNotInstalled) {
		t.Fatalf("this test needs a real ClickHouse server and none is installed: apt-get install clickhouse-server clickhouse-client")
	}
	if err != nil {
		t.Fatalf("start ClickHouse: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	return srv
}

var dbCounter atomic.Int64

// env is a nats-server with JetStream and the topology, a connection that writes the log
// directly, as gateways do, and a ClickHouse with a database for the test.
type env struct {
	t      *testing.T
	ns     *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	topo   schemas.Topology
	ch     *localch.Server
	conn   driver.Conn
	db     string
}

// newEnv starts NATS with topology topo; ch is the ClickHouse to use (nil: the shared one).
func newEnv(t *testing.T, topo schemas.Topology, ch *localch.Server) *env {
	t.Helper()
	ns, err := platform.StartNATS(platform.EmbeddedNATS{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1"},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if ch == nil {
		ch = sharedCH
	}
	e := &env{t: t, ns: ns, topo: topo, ch: ch, db: "archiver_t" + strconv.FormatInt(dbCounter.Add(1), 10)}
	e.nc = e.connect()
	if e.js, err = jetstream.New(e.nc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := schemas.Ensure(ctx, e.js, topo); err != nil {
		t.Fatal(err)
	}
	if e.stream, err = e.js.Stream(ctx, schemas.EventsStream); err != nil {
		t.Fatal(err)
	}
	if e.conn, err = clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}, DialTimeout: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.conn.Close() })
	if _, err := chstore.Migrate(ctx, e.conn, e.db); err != nil {
		t.Fatal(err)
	}
	e.stopMerges()
	return e
}

// stopMerges stops ClickHouse merging the test's table (again after a restart), so a row stored
// twice stays visible to count() instead of being folded by ReplacingMergeTree: the tests prove
// exactly-once without merges.
func (e *env) stopMerges() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := e.conn.Exec(ctx, "SYSTEM STOP MERGES "+e.db+".events"); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) connect() *nats.Conn {
	e.t.Helper()
	nc, err := nats.Connect(e.ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	return nc
}

// config is the configuration of test instances: short waits, a quick backoff.
func (e *env) config() Config {
	cfg := Defaults()
	cfg.Addrs, cfg.Database = []string{e.ch.Addr()}, e.db
	cfg.BatchSize, cfg.BatchWait = 500, 50*time.Millisecond
	cfg.AckWait, cfg.InsertTimeout = 30*time.Second, 10*time.Second
	cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 500*time.Millisecond
	cfg.ReadyLag = 0
	return cfg
}

// append publishes raw data to the log and returns its seq.
func (e *env) append(subject string, data []byte) uint64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ack, err := e.js.Publish(ctx, subject, data)
	if err != nil {
		e.t.Fatalf("publish %s: %v", subject, err)
	}
	return ack.Sequence
}

// appendEvent publishes an event to the log and returns its seq.
func (e *env) appendEvent(subject string, ev schemas.Event) uint64 {
	e.t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.append(subject, data)
}

// lastSeq is the log's last seq.
func (e *env) lastSeq() uint64 {
	e.t.Helper()
	info, err := e.stream.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.LastSeq
}

// ackFloor is the archiver consumer's ack floor (0 while it does not exist).
func (e *env) ackFloor() uint64 {
	e.t.Helper()
	ci, err := e.js.Consumer(context.Background(), schemas.EventsStream, schemas.ArchiverConsumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0
	}
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := ci.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.AckFloor.Stream
}

// waitArchived waits until every event up to seq is acknowledged by the archivers.
func (e *env) waitArchived(seq uint64) {
	e.t.Helper()
	eventually(e.t, fmt.Sprintf("ack floor reaches %d", seq), func() bool { return e.ackFloor() >= seq })
}

// logEntry is one event of the log as read back from the stream.
type logEntry struct {
	seq     uint64
	subject string
	data    []byte
	stored  time.Time
}

// readLog reads the whole log back.
func (e *env) readLog() []logEntry {
	e.t.Helper()
	info, err := e.stream.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	var out []logEntry
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := e.stream.GetMsg(context.Background(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, logEntry{seq: seq, subject: m.Subject, data: m.Data, stored: m.Time})
	}
	return out
}

// counts are count() and uniqExact(seq) of the test's events table, without FINAL.
func (e *env) counts() (rows, seqs uint64) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := e.conn.QueryRow(ctx, "SELECT count(), uniqExact(seq) FROM "+e.db+".events").Scan(&rows, &seqs); err != nil {
		e.t.Fatal(err)
	}
	return rows, seqs
}

// archivedRows reads every row's seq and data (without FINAL), failing on a seq stored twice.
func (e *env) archivedRows() map[uint64]string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	rows, err := e.conn.Query(ctx, "SELECT seq, data FROM "+e.db+".events")
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[uint64]string{}
	for rows.Next() {
		var (
			seq  uint64
			data string
		)
		if err := rows.Scan(&seq, &data); err != nil {
			e.t.Fatal(err)
		}
		if _, dup := out[seq]; dup {
			e.t.Fatalf("seq %d is stored twice", seq)
		}
		out[seq] = data
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// checkArchive checks that the archive holds exactly the log's events up to last, once each,
// with the log's payloads. log is the log as written (the stream may have been trimmed since).
func (e *env) checkArchive(log map[uint64][]byte) {
	e.t.Helper()
	rows, seqs := e.counts()
	if rows != uint64(len(log)) || seqs != uint64(len(log)) {
		e.t.Fatalf("archive: count() %d, uniqExact(seq) %d; the log has %d events", rows, seqs, len(log))
	}
	got := e.archivedRows()
	for seq, data := range log {
		if got[seq] != string(data) {
			e.t.Fatalf("seq %d: archived %q, logged %q", seq, got[seq], data)
		}
	}
}

// logData is the stream's current content by seq.
func (e *env) logData() map[uint64][]byte {
	out := map[uint64][]byte{}
	for _, en := range e.readLog() {
		out[en.seq] = en.data
	}
	return out
}

// instance is a running archiver.
type instance struct {
	t    *testing.T
	svc  *Service
	ops  *platform.Ops
	http *httptest.Server
	nc   *nats.Conn
	stop context.CancelFunc
	done chan error
	once sync.Once
	err  error
}

// start runs an archiver on the env's NATS, stopped at the end of the test, and waits until it
// is ready.
func (e *env) start(cfg Config) *instance {
	e.t.Helper()
	in := e.startNoWait(cfg)
	select {
	case <-in.svc.Ready():
	case err := <-in.done:
		e.t.Fatalf("archiver stopped before ready: %v", err)
	case <-time.After(wait):
		e.t.Fatal("archiver not ready")
	}
	return in
}

func (e *env) startNoWait(cfg Config) *instance {
	e.t.Helper()
	nc := e.connect()
	ops := platform.NewOps()
	svc, err := New(cfg, Deps{NATS: nc, Log: testLog(), Ops: ops, Topology: e.topo})
	if err != nil {
		e.t.Fatal(err)
	}
	mux := http.NewServeMux()
	ops.Mount(mux)
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{t: e.t, svc: svc, ops: ops, http: httptest.NewServer(mux), nc: nc, stop: cancel,
		done: make(chan error, 1)}
	go func() { in.done <- svc.Run(ctx) }()
	e.t.Cleanup(func() { _ = in.Stop(); in.http.Close() })
	return in
}

// Stop stops the archiver as SIGTERM does and waits for it.
func (in *instance) Stop() error {
	in.once.Do(func() {
		in.stop()
		select {
		case in.err = <-in.done:
		case <-time.After(wait):
			in.err = errors.New("archiver did not stop")
		}
		in.nc.Close()
	})
	return in.err
}

// ready reports what /readyz says.
func (in *instance) ready() (bool, string) {
	in.t.Helper()
	resp, err := http.Get(in.http.URL + "/readyz")
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK, string(body)
}

// metric is the value of a counter or gauge (a histogram's sample count) of an instance.
func (in *instance) metric(name string, labels ...string) float64 {
	in.t.Helper()
	v, ok := in.ops.Value(name, labels...)
	if !ok {
		in.t.Fatalf("metric %s %v not found", name, labels)
	}
	return v
}

// eventually polls cond until it holds, failing the test after wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// traffic publishes messages to a few conversations until stopped; it returns the seqs and
// payloads it appended.
type traffic struct {
	stopCh chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	log    map[uint64][]byte
	err    error
}

func (e *env) startTraffic(perSecond int) *traffic {
	tr := &traffic{stopCh: make(chan struct{}), done: make(chan struct{}), log: map[uint64][]byte{}}
	nc := e.connect()
	js, err := jetstream.New(nc)
	if err != nil {
		e.t.Fatal(err)
	}
	go func() {
		defer close(tr.done)
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-tr.stopCh:
				return
			case <-tick.C:
			}
			g := "load" + strconv.Itoa(i%3)
			data, _ := json.Marshal(schemas.Event{Type: schemas.TypeMessage, Conv: "g:" + g, Ts: schemas.FormatTime(time.Now()),
				From: "ann", Mid: "t" + strconv.Itoa(i), MsgType: "text", Msg: "message " + strconv.Itoa(i)})
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			ack, err := js.Publish(ctx, "chat.msg.g."+g, data)
			cancel()
			tr.mu.Lock()
			if err != nil && tr.err == nil {
				tr.err = err
			}
			if err == nil {
				tr.log[ack.Sequence] = data
			}
			tr.mu.Unlock()
		}
	}()
	return tr
}

// count is how many events the traffic appended so far.
func (tr *traffic) count() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.log)
}

// stop stops the traffic and returns what it appended.
func (tr *traffic) stop(t *testing.T) map[uint64][]byte {
	t.Helper()
	close(tr.stopCh)
	<-tr.done
	if tr.err != nil {
		t.Fatalf("traffic: %v", tr.err)
	}
	return tr.log
}

// world generates a realistic log: groups created with initial members, joins, invites and
// leaves, messages in groups and direct conversations, private (tid) messages, edits, deletes
// (with their gone markers) and reactions of both, reads, contact changes, and a few entries that
// do not decode. It publishes as it goes (edits refer to real seqs).
type world struct {
	e       *env
	r       *rand.Rand
	users   []string
	members map[string][]string // group -> current members
	msgs    []sent              // ordinary messages sent
	log     map[uint64][]byte
	n       int
}

type sent struct {
	seq  uint64
	conv string
	from string
	tid  string
}

func newWorld(e *env, seed uint64) *world {
	return &world{e: e, r: rand.New(rand.NewPCG(seed, seed^0x5eed)),
		users:   []string{"ann", "ben", "cat", "dan", "eve", "fay"},
		members: map[string][]string{}, log: map[uint64][]byte{}}
}

func (w *world) ts() string { return schemas.FormatTime(time.Now()) }

func (w *world) put(subject string, ev schemas.Event) uint64 {
	data, err := json.Marshal(ev)
	if err != nil {
		w.e.t.Fatal(err)
	}
	seq := w.e.append(subject, data)
	w.log[seq] = data
	return seq
}

func (w *world) pick(xs []string) string { return xs[w.r.IntN(len(xs))] }

func (w *world) createGroup(g string, members []string) {
	conv := "g:" + g
	for i, u := range members {
		ev := schemas.Event{Type: schemas.TypeMember, Conv: conv, Ts: w.ts(), User: u, Action: schemas.ActionJoined, By: members[0]}
		if i == 0 {
			ev.Name, ev.Members = "group "+g, members
		}
		w.put(schemas.MemberSubject(g), ev)
	}
	w.members[g] = slices.Clone(members)
}

// step appends one random event (sometimes two: a delete and its marker).
func (w *world) step() {
	w.n++
	groups := make([]string, 0, len(w.members))
	for g := range w.members {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	switch k := w.r.IntN(100); {
	case k < 35: // a group message, sometimes private
		g := w.pick(groups)
		if len(w.members[g]) == 0 {
			return
		}
		from := w.pick(w.members[g])
		ev := schemas.Event{Type: schemas.TypeMessage, Conv: "g:" + g, Ts: w.ts(), From: from, Mid: "m" + strconv.Itoa(w.n),
			MsgType: "text", Msg: "hello " + strconv.Itoa(w.n)}
		if w.r.IntN(4) == 0 && len(w.members[g]) > 1 {
			for ev.Tid == "" || ev.Tid == from {
				ev.Tid = w.pick(w.members[g])
			}
		}
		seq := w.put(schemas.ContentSubject(mustConv(ev.Conv)), ev)
		w.msgs = append(w.msgs, sent{seq, ev.Conv, from, ev.Tid})
	case k < 55: // a direct message
		a, b := w.pick(w.users), w.pick(w.users)
		if a == b {
			return
		}
		c, _ := schemas.DirectConv(a, b)
		ev := schemas.Event{Type: schemas.TypeMessage, Conv: c.String(), Ts: w.ts(), From: a, Mid: "m" + strconv.Itoa(w.n),
			MsgType: w.pick([]string{"text", "image", "audio", "file"}), Msg: "hi " + strconv.Itoa(w.n)}
		seq := w.put(schemas.ContentSubject(c), ev)
		w.msgs = append(w.msgs, sent{seq, ev.Conv, a, ""})
	case k < 70: // an edit, delete or reaction of an earlier message
		if len(w.msgs) == 0 {
			return
		}
		m := w.msgs[w.r.IntN(len(w.msgs))]
		c := mustConv(m.conv)
		ev := schemas.Event{Type: schemas.TypeMessage, Conv: m.conv, Ts: w.ts(), From: m.from, Ref: m.seq, RefFrom: m.from,
			Tid: m.tid, Mid: "c" + strconv.Itoa(w.n)}
		switch w.r.IntN(3) {
		case 0:
			ev.Kind, ev.Msg = schemas.KindEdit, "edited "+strconv.Itoa(w.n)
		case 1:
			ev.Kind = schemas.KindDelete
			w.put(schemas.GoneSubject(c, m.seq), schemas.Event{Type: schemas.TypeGone, Conv: m.conv, Ts: w.ts(), Ref: m.seq})
		default:
			ev.Kind, ev.Emoji = schemas.KindReact, "👍"
			if m.tid != "" && w.r.IntN(2) == 0 {
				ev.From = m.tid
			}
		}
		w.put(schemas.ContentSubject(c), ev)
	case k < 80: // membership: leave, invite or join
		g := w.pick(groups)
		u := w.pick(w.users)
		ev := schemas.Event{Type: schemas.TypeMember, Conv: "g:" + g, Ts: w.ts(), User: u, By: u}
		if slices.Contains(w.members[g], u) {
			ev.Action = schemas.ActionLeft
			w.members[g] = slices.DeleteFunc(w.members[g], func(x string) bool { return x == u })
		} else {
			ev.Action = w.pick([]string{schemas.ActionJoined, schemas.ActionInvited})
			if ev.Action == schemas.ActionInvited && len(w.members[g]) > 0 {
				ev.By = w.pick(w.members[g])
			}
			w.members[g] = append(w.members[g], u)
		}
		w.put(schemas.MemberSubject(g), ev)
	case k < 90: // a read marker
		if len(w.msgs) == 0 {
			return
		}
		m := w.msgs[w.r.IntN(len(w.msgs))]
		u := m.from
		w.put(schemas.ReadSubject(u), schemas.Event{Type: schemas.TypeRead, Conv: m.conv, Ts: w.ts(), From: u, Seq: m.seq})
	case k < 97: // a contact change
		a, b := w.pick(w.users), w.pick(w.users)
		if a == b {
			return
		}
		w.put(schemas.ContactSubject(a), schemas.Event{Type: schemas.TypeContact, Ts: w.ts(), From: a, User: b,
			Action: w.pick([]string{schemas.ContactAdd, schemas.ContactRemove})})
	default: // an entry that does not decode
		data := []byte("not json " + strconv.Itoa(w.n))
		w.log[w.e.append("chat.msg.g.junk", data)] = data
	}
}

func mustConv(s string) schemas.Conv {
	c, err := schemas.ParseConv(s)
	if err != nil {
		panic(err)
	}
	return c
}

// build creates three groups and appends n random events.
func (w *world) build(n int) {
	w.createGroup("alpha", []string{"ann", "ben", "cat"})
	w.createGroup("beta", []string{"ben", "dan", "eve", "fay"})
	w.createGroup("gamma", []string{"ann"})
	for range n {
		w.step()
	}
}
