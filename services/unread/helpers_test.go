package unread

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// wait bounds what should happen promptly; generous, because tests share two cores.
const wait = 20 * time.Second

func testLog() *slog.Logger {
	if os.Getenv("CHAT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// env is a nats-server with JetStream and the topology, and a connection that writes the log
// directly, as gateways do.
type env struct {
	t      *testing.T
	ns     *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	// names are the display names in the users bucket; users missing from it have none.
	names map[string]string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ns, err := platform.StartNATS(platform.EmbeddedNATS{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1"},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	e := &env{t: t, ns: ns, names: map[string]string{}}
	e.nc = e.connect()
	if e.js, err = jetstream.New(e.nc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := schemas.Ensure(ctx, e.js, schemas.Topology{}); err != nil {
		t.Fatal(err)
	}
	if e.stream, err = e.js.Stream(ctx, schemas.EventsStream); err != nil {
		t.Fatal(err)
	}
	return e
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

// register stores an account in the users bucket, with a display name (possibly empty).
func (e *env) register(user, name string) {
	e.t.Helper()
	kv, err := e.js.KeyValue(context.Background(), schemas.UsersBucket)
	if err != nil {
		e.t.Fatal(err)
	}
	data, _ := json.Marshal(map[string]string{"user": user, "name": name, "hash": "not-a-real-hash"})
	if _, err := kv.Put(context.Background(), schemas.UserKey(user), data); err != nil {
		e.t.Fatal(err)
	}
	e.names[user] = name
}

// append publishes an event to the log, with a Nats-Msg-Id when msgID is set, and returns its
// seq (the first one's, for a duplicate).
func (e *env) append(subject string, data []byte, msgID string) uint64 {
	e.t.Helper()
	msg := nats.NewMsg(subject)
	msg.Data = data
	if msgID != "" {
		msg.Header.Set(nats.MsgIdHdr, msgID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ack, err := e.js.PublishMsg(ctx, msg)
	if err != nil {
		e.t.Fatalf("publish %s: %v", subject, err)
	}
	return ack.Sequence
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

// readLog reads the whole log back.
func (e *env) readLog() []logEntry {
	e.t.Helper()
	var out []logEntry
	for seq := uint64(1); seq <= e.lastSeq(); seq++ {
		m, err := e.stream.GetMsg(context.Background(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, logEntry{seq: seq, subject: m.Subject, data: m.Data})
	}
	return out
}

// instance is a running unread service.
type instance struct {
	t    *testing.T
	svc  *Service
	ops  *platform.Ops
	nc   *nats.Conn
	stop context.CancelFunc
	done chan error
	once sync.Once
	err  error
}

// testConfig is the configuration of test instances: id, snapshots every 100 ms.
func testConfig(id string) Config {
	cfg := Defaults()
	cfg.ID, cfg.SnapshotEvery, cfg.QueryWait = id, 100*time.Millisecond, 5*time.Second
	return cfg
}

// start runs an unread service on the env's NATS, stopped at the end of the test, and waits
// until it is ready.
func (e *env) start(cfg Config) *instance {
	e.t.Helper()
	nc := e.connect()
	ops := platform.NewOps()
	svc, err := New(cfg, Deps{NATS: nc, Log: testLog(), Ops: ops})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{t: e.t, svc: svc, ops: ops, nc: nc, stop: cancel, done: make(chan error, 1)}
	go func() { in.done <- svc.Run(ctx) }()
	select {
	case <-svc.Ready():
	case err := <-in.done:
		e.t.Fatalf("unread stopped before ready: %v", err)
	case <-time.After(wait):
		e.t.Fatal("unread not ready")
	}
	e.t.Cleanup(func() { _ = in.Stop() })
	return in
}

// Stop stops the service as SIGTERM does and waits for it.
func (in *instance) Stop() error {
	in.once.Do(func() {
		in.stop()
		select {
		case in.err = <-in.done:
		case <-time.After(wait):
			in.err = errors.New("unread did not stop")
		}
		in.nc.Close()
	})
	return in.err
}

// waitApplied waits until the instance has applied seq.
func (in *instance) waitApplied(seq uint64) {
	in.t.Helper()
	deadline := time.Now().Add(wait)
	for in.svc.progress.seq() < seq {
		if time.Now().After(deadline) {
			in.t.Fatalf("instance %s at seq %d, want %d", in.svc.cfg.ID, in.svc.progress.seq(), seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metric is the value of a counter or gauge of an instance; labels select the series.
func (in *instance) metric(name string, labels ...string) float64 {
	in.t.Helper()
	v, ok := in.ops.Value(name, labels...)
	if !ok {
		in.t.Fatalf("metric %s %v not found", name, labels)
	}
	return v
}

// ask sends a conversations request and returns the answer and the instance that gave it.
func ask(t *testing.T, nc *nats.Conn, user string, minSeq uint64) (schemas.ConversationsReply, string) {
	t.Helper()
	data, _ := json.Marshal(schemas.ConversationsRequest{User: user, MinSeq: minSeq})
	msg, err := nc.Request(schemas.UnreadConversationsRq, data, wait)
	if err != nil {
		t.Fatalf("conversations of %s: %v", user, err)
	}
	var rp schemas.ConversationsReply
	if err := json.Unmarshal(msg.Data, &rp); err != nil {
		t.Fatalf("conversations answer %s: %v", msg.Data, err)
	}
	return rp, msg.Header.Get(instanceHeader)
}

// mustJSON encodes v.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
