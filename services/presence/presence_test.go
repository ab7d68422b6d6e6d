package presence_test

import (
	"context"
	"flag"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/presence"
)

const (
	online  = schemas.StatusOnline
	away    = schemas.StatusAway
	offline = schemas.StatusOffline
)

func TestConnectGoesOnline(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	before := time.Now().Add(-time.Millisecond)
	e.report("alice", "c1", schemas.ConnConnect, false)
	ev := e.obs.waitN("alice", 1)
	if ev.ev.Status != online || ev.ev.LastSeen == "" {
		t.Fatalf("change %+v, want online with lastSeen", ev.ev)
	}
	if ls := parseTime(t, ev.ev.LastSeen); ls.Before(before.Truncate(time.Millisecond)) || ls.After(time.Now()) {
		t.Fatalf("lastSeen %s not at the connect", ev.ev.LastSeen)
	}
	ps := e.waitAgg("alice", "online, 1 device", isState(online, 1))
	if ps.User != "alice" || ps.LastSeen == "" {
		t.Fatalf("aggregate %+v", ps)
	}
	in.waitMetric(t, 1, "chat_presence_conn_events_total", "state", schemas.ConnConnect)
	in.waitMetric(t, 1, "chat_presence_changes_total", "status", online)
	if in.metric(t, "chat_presence_recompute_seconds") < 1 {
		t.Fatal("no recompute observed")
	}
	// Nobody else changed.
	if evs := e.obs.of("bob"); len(evs) != 0 {
		t.Fatalf("bob: %v", evs)
	}
}

func TestSecondDeviceLeavingChangesNothingLastOneGoesOfflineAfterGrace(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	e.report("alice", "phone", schemas.ConnConnect, false)
	e.report("alice", "laptop", schemas.ConnConnect, false)
	e.waitAgg("alice", "online, 2 devices", isState(online, 2))
	e.obs.waitN("alice", 1)

	e.report("alice", "phone", schemas.ConnDisconnect, false)
	e.waitAgg("alice", "online, 1 device", isState(online, 1))
	// One device is left: no offline, whatever the grace.
	time.Sleep(quiet)
	e.obs.expect("alice", online)
	if ps := e.agg("alice"); !isState(online, 1)(ps) {
		t.Fatalf("aggregate %+v", ps)
	}

	gone := time.Now()
	e.report("alice", "laptop", schemas.ConnDisconnect, false)
	ps := e.waitAgg("alice", "pending offline", pending)
	if ps.Status != online {
		t.Fatalf("during the grace the status stays: %+v", ps)
	}
	in.waitMetric(t, 1, "chat_presence_pending_offline")
	ev := e.obs.waitN("alice", 2)
	if ev.ev.Status != offline {
		t.Fatalf("change %+v, want offline", ev.ev)
	}
	if d := ev.at.Sub(gone); d < grace-50*time.Millisecond {
		t.Fatalf("offline %s after the last disconnect, before the grace (%s)", d, grace)
	}
	ls := parseTime(t, ev.ev.LastSeen)
	if ls.Before(gone.Add(-time.Second)) || ls.After(ev.at) {
		t.Fatalf("lastSeen %s, last connection went at %s", ev.ev.LastSeen, schemas.FormatTime(gone))
	}
	ps = e.waitAgg("alice", "offline", isState(offline, 0))
	if ps.LastSeen != ev.ev.LastSeen {
		t.Fatalf("aggregate lastSeen %s, event %s", ps.LastSeen, ev.ev.LastSeen)
	}
	in.waitMetric(t, 0, "chat_presence_pending_offline")
	// Exactly one offline.
	time.Sleep(quiet)
	e.obs.expect("alice", online, offline)
	in.waitMetric(t, 1, "chat_presence_changes_total", "status", offline)
}

func TestReconnectWithinGraceIsSilent(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.report("alice", "tab1", schemas.ConnConnect, false)
	e.obs.waitN("alice", 1)
	e.waitAgg("alice", "online", isState(online, 1))

	// A reload: the socket closes, a new one opens on another transport soon after.
	e.report("alice", "tab1", schemas.ConnDisconnect, false)
	e.waitAgg("alice", "pending offline", pending)
	time.Sleep(grace / 4)
	e.report("alice", "tab2", schemas.ConnConnect, false)
	e.waitAgg("alice", "online again, 1 device", isState(online, 1))
	// The grace of the first disconnect passes: no offline, no online.
	time.Sleep(quiet)
	e.obs.expect("alice", online)
}

func TestAllIdleIsAwayActiveAgainIsOnline(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.report("alice", "phone", schemas.ConnConnect, false)
	e.report("alice", "laptop", schemas.ConnConnect, false)
	e.waitAgg("alice", "online, 2 devices", isState(online, 2))
	e.obs.waitN("alice", 1)

	e.report("alice", "phone", schemas.ConnIdle, false)
	// One device is still active: online. A heartbeat of the active one changes nothing either.
	e.report("alice", "laptop", schemas.ConnHeartbeat, false)
	e.report("alice", "laptop", schemas.ConnIdle, false)
	ev := e.obs.waitN("alice", 2)
	if ev.ev.Status != away {
		t.Fatalf("change %+v, want away", ev.ev)
	}
	e.waitAgg("alice", "away, 2 devices", isState(away, 2))
	// Heartbeats of idle connections keep it away.
	e.report("alice", "phone", schemas.ConnHeartbeat, true)

	e.report("alice", "phone", schemas.ConnActive, false)
	ev = e.obs.waitN("alice", 3)
	if ev.ev.Status != online {
		t.Fatalf("change %+v, want online", ev.ev)
	}
	e.waitAgg("alice", "online, 2 devices", isState(online, 2))

	// A heartbeat that says the connection went idle (its idle report was lost) counts too.
	e.report("alice", "phone", schemas.ConnHeartbeat, true)
	e.obs.waitN("alice", 4)
	e.waitAgg("alice", "away", isState(away, 2))

	// Away users go offline like others; lastSeen is when the last connection went.
	e.report("alice", "phone", schemas.ConnDisconnect, false)
	e.report("alice", "laptop", schemas.ConnDisconnect, false)
	e.obs.waitN("alice", 5)
	time.Sleep(quiet)
	e.obs.expect("alice", online, away, online, away, offline)
}

func TestKilledGatewayUsersGoOfflineAfterTTLAndGrace(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.report("alice", "c1", schemas.ConnConnect, false)
	e.report("bob", "c1", schemas.ConnConnect, false)
	e.obs.waitN("alice", 1)
	e.obs.waitN("bob", 1)
	// A couple of heartbeats, then the gateway is killed: no disconnect, no more heartbeats.
	time.Sleep(2*heartbeat + heartbeat/2)
	e.kill("alice", "c1")
	e.kill("bob", "c1")
	last := time.Now()
	for _, user := range []string{"alice", "bob"} {
		ev := e.obs.waitN(user, 2)
		if ev.ev.Status != offline {
			t.Fatalf("%s: change %+v, want offline", user, ev.ev)
		}
		d := ev.at.Sub(last)
		// The last heartbeat was at most one period before the kill.
		if d < connTTL+grace-heartbeat-100*time.Millisecond {
			t.Fatalf("%s offline %s after the last heartbeat: before TTL+grace (%s)", user, d, connTTL+grace)
		}
		// Slack: the server expires entries within about a second of their age, then a sweep.
		if d > connTTL+grace+3*time.Second {
			t.Fatalf("%s offline %s after the kill: want about TTL+grace (%s)", user, d, connTTL+grace)
		}
		if ls := parseTime(t, ev.ev.LastSeen); ls.Before(last) {
			t.Fatalf("%s: lastSeen %s before the kill", user, ev.ev.LastSeen)
		}
	}
	time.Sleep(quiet)
	e.obs.expect("alice", online, offline)
	e.obs.expect("bob", online, offline)
}

func TestHeartbeatsKeepAConnectionPastTheTTL(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	e.report("alice", "c1", schemas.ConnConnect, false)
	e.obs.waitN("alice", 1)
	// The simulated gateway heartbeats every TTL/4: 2.5 TTLs later the connection is still there.
	time.Sleep(connTTL * 5 / 2)
	e.obs.expect("alice", online)
	if ps := e.agg("alice"); !isState(online, 1)(ps) {
		t.Fatalf("aggregate %+v", ps)
	}
	conns := e.bucket(schemas.PresenceConnsBucket)
	if _, err := conns.Get(context.Background(), schemas.ConnKey("alice", "c1")); err != nil {
		t.Fatalf("connection entry: %v", err)
	}
	if n := in.metric(t, "chat_presence_conn_events_total", "state", schemas.ConnHeartbeat); n < 8 {
		t.Fatalf("%v heartbeats handled", n)
	}
	// Heartbeats of a connection whose aggregate is consistent recompute nothing.
	if n := in.metric(t, "chat_presence_recompute_seconds"); n != 1 {
		t.Fatalf("%v recomputes, want the connect's only", n)
	}
	// Then silence: it expires.
	e.kill("alice", "c1")
	e.obs.waitN("alice", 2)
	e.obs.expect("alice", online, offline)
	if _, err := conns.Get(context.Background(), schemas.ConnKey("alice", "c1")); err == nil {
		t.Fatal("connection entry still there")
	}
}

func TestTwoInstancesPublishEachChangeOnce(t *testing.T) {
	e := newEnv(t)
	a, b := e.start(), e.start()
	users := []string{"u1", "u2", "u3", "u4", "u5", "u6"}
	// Each user: online, away, online, (a second device comes and goes), offline. Reports of one
	// connection go to either instance.
	for _, u := range users {
		e.report(u, "c1", schemas.ConnConnect, false)
	}
	for _, u := range users {
		e.obs.waitN(u, 1)
		e.report(u, "c1", schemas.ConnIdle, false)
	}
	for _, u := range users {
		e.obs.waitN(u, 2)
		e.report(u, "c1", schemas.ConnActive, false)
	}
	for _, u := range users {
		e.obs.waitN(u, 3)
		e.report(u, "c2", schemas.ConnConnect, false)
		e.report(u, "c2", schemas.ConnHeartbeat, false)
	}
	for _, u := range users {
		e.waitAgg(u, "online, 2 devices", isState(online, 2))
		e.report(u, "c2", schemas.ConnDisconnect, false)
		e.report(u, "c1", schemas.ConnDisconnect, false)
	}
	for _, u := range users {
		e.obs.waitN(u, 4)
	}
	// A duplicate would come within milliseconds of the first; the quiet period covers another
	// grace, in case one instance went offline later than the other.
	time.Sleep(quiet)
	for _, u := range users {
		e.obs.expect(u, online, away, online, offline)
		e.waitAgg(u, "offline", isState(offline, 0))
	}
	// An expiry is seen by both instances' watchers: still one offline.
	e.report("k1", "c1", schemas.ConnConnect, false)
	e.kill("k1", "c1")
	e.obs.waitN("k1", 2)
	time.Sleep(quiet)
	e.obs.expect("k1", online, offline)

	// Both instances did part of the work.
	total := func(in *instance) float64 {
		var n float64
		for _, s := range []string{online, away, offline} {
			n += in.metric(t, "chat_presence_changes_total", "status", s)
		}
		return n
	}
	if ta, tb := total(a), total(b); ta+tb != float64(4*len(users)+2) {
		t.Fatalf("changes published: %v + %v, want %d", ta, tb, 4*len(users)+2)
	} else {
		t.Logf("changes published by instance a: %v, b: %v", ta, tb)
	}
	events := func(in *instance) float64 {
		var n float64
		for _, s := range []string{schemas.ConnConnect, schemas.ConnIdle, schemas.ConnActive, schemas.ConnDisconnect} {
			n += in.metric(t, "chat_presence_conn_events_total", "state", s)
		}
		return n
	}
	if ea, eb := events(a), events(b); ea == 0 || eb == 0 || ea+eb != float64(6*len(users)+1) {
		t.Fatalf("reports handled: %v + %v, want both > 0 and %d in all", ea, eb, 6*len(users)+1)
	}
}

func TestRestartIsSilentAndKeepsState(t *testing.T) {
	e := newEnv(t)
	first := e.start()
	e.report("alice", "phone", schemas.ConnConnect, false)
	e.report("alice", "laptop", schemas.ConnConnect, false)
	e.report("bob", "c1", schemas.ConnConnect, false)
	e.report("bob", "c1", schemas.ConnIdle, false)
	e.report("carol", "c1", schemas.ConnConnect, false)
	e.waitAgg("alice", "online, 2 devices", isState(online, 2))
	e.waitAgg("bob", "away", isState(away, 1))
	e.waitAgg("carol", "online", isState(online, 1))
	e.obs.waitN("bob", 2)
	// carol's last connection goes just before the restart: her grace runs across it.
	e.report("carol", "c1", schemas.ConnDisconnect, false)
	e.waitAgg("carol", "pending", pending)
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}

	second := e.start()
	// The heartbeats go on, now to the new instance.
	e.obs.waitN("carol", 2)
	time.Sleep(quiet)
	e.obs.expect("alice", online)
	e.obs.expect("bob", online, away)
	e.obs.expect("carol", online, offline)
	e.waitAgg("alice", "online, 2 devices", isState(online, 2))
	e.waitAgg("bob", "away", isState(away, 1))
	e.waitAgg("carol", "offline", isState(offline, 0))
	if second.metric(t, "chat_presence_changes_total", "status", online) != 0 {
		t.Fatal("the restarted instance published an online")
	}
	// And it works on.
	e.report("alice", "phone", schemas.ConnDisconnect, false)
	e.waitAgg("alice", "online, 1 device", isState(online, 1))
	e.report("bob", "c1", schemas.ConnActive, false)
	e.obs.waitN("bob", 3)
	e.obs.expect("bob", online, away, online)
}

func TestStartWithoutConnectionsSchedulesOffline(t *testing.T) {
	// NATS restarted and lost the memory bucket while no presence instance ran: the aggregates
	// say online, no connection is left. The purge here stands for the lost bucket.
	e := newEnv(t)
	first := e.start()
	e.report("alice", "c1", schemas.ConnConnect, false)
	e.report("bob", "c1", schemas.ConnConnect, false)
	e.waitAgg("alice", "online", isState(online, 1))
	e.waitAgg("bob", "online", isState(online, 1))
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	conns := e.bucket(schemas.PresenceConnsBucket)
	if err := conns.Purge(context.Background(), schemas.ConnKey("alice", "c1")); err != nil {
		t.Fatal(err)
	}
	e.kill("alice", "c1")
	e.start()
	ev := e.obs.waitN("alice", 2)
	if ev.ev.Status != offline || ev.ev.LastSeen == "" {
		t.Fatalf("change %+v", ev.ev)
	}
	time.Sleep(quiet)
	e.obs.expect("alice", online, offline)
	e.obs.expect("bob", online)
	e.waitAgg("bob", "online", isState(online, 1))
}

func TestNATSRestartLosingConnectionsWhileRunning(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.report("alice", "c1", schemas.ConnConnect, false)
	e.report("bob", "c1", schemas.ConnConnect, false)
	e.waitAgg("alice", "online", isState(online, 1))
	e.waitAgg("bob", "online", isState(online, 1))

	// NATS restarts on the same port and store: the memory bucket comes back empty. alice's
	// gateway heartbeats as soon as it is back; bob's gateway died meanwhile.
	e.kill("bob", "c1")
	port := e.ns.Addr().(*net.TCPAddr).Port
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
	ns, err := startNATS(e.dir, port)
	if err != nil {
		t.Fatal(err)
	}
	e.ns = ns
	deadline := time.Now().Add(wait)
	for !e.gw.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("gateway did not reconnect")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ev := e.obs.waitN("bob", 2)
	if ev.ev.Status != offline {
		t.Fatalf("bob: %+v", ev.ev)
	}
	time.Sleep(quiet)
	e.obs.expect("alice", online)
	e.waitAgg("alice", "online", isState(online, 1))
}

func TestInvalidReportsAreDroppedAndCounted(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	bad := []struct {
		subject string
		data    string
	}{
		{"chat.presence.conn.alice", `{"type":"chat.presence.conn.v1","user":"Alice","conn":"c1","state":"connect"}`},
		{"chat.presence.conn.alice", `{"type":"chat.presence.conn.v1","user":"alice","conn":"c.1","state":"connect"}`},
		{"chat.presence.conn.alice", `{"type":"chat.presence.conn.v1","user":"alice","conn":"c1","state":"sleeping"}`},
		{"chat.presence.conn.alice", `{"type":"chat.presence.conn.v1","user":"alice","conn":"c1","state":"connect"`},
		{"chat.presence.conn.alice", `not json at all`},
		{"chat.presence.conn.alice", `{"type":"chat.typing.v1","user":"alice","conn":"c1","state":"connect"}`},
		{"chat.presence.conn.bob", `{"type":"chat.presence.conn.v1","user":"alice","conn":"c1","state":"connect"}`},
		{"chat.presence.conn.alice", `{"type":"chat.presence.conn.v1","user":"alice","conn":"","state":"connect"}`},
	}
	for _, b := range bad {
		e.publishRaw(b.subject, []byte(b.data))
	}
	in.waitMetric(t, float64(len(bad)), "chat_presence_invalid_total")
	if n := in.metric(t, "chat_presence_conn_events_total", "state", schemas.ConnConnect); n != 0 {
		t.Fatalf("invalid reports counted as connects: %v", n)
	}
	// The service works on.
	e.report("alice", "c1", schemas.ConnConnect, false)
	e.obs.waitN("alice", 1)
	e.waitAgg("alice", "online", isState(online, 1))
	e.obs.expect("alice", online)
	if e.agg("bob") != nil {
		t.Fatal("bob has an aggregate")
	}
}

func TestReportAfterDisconnectDoesNotReviveTheConnection(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.report("alice", "c1", schemas.ConnConnect, false)
	e.waitAgg("alice", "online", isState(online, 1))
	e.report("alice", "c1", schemas.ConnDisconnect, false)
	// A heartbeat overtaken by the disconnect (another instance could have handled it late).
	e.report("alice", "c1", schemas.ConnHeartbeat, false)
	e.obs.waitN("alice", 2)
	e.obs.expect("alice", online, offline)
	e.waitAgg("alice", "offline", isState(offline, 0))
}

func TestConfig(t *testing.T) {
	d := presence.Defaults()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.Grace != schemas.PresenceGrace || d.Sweep != presence.DefaultSweep {
		t.Fatalf("defaults %+v", d)
	}
	for _, c := range []presence.Config{{Grace: -1, Sweep: time.Second}, {Grace: time.Second}, {Grace: time.Second, Sweep: time.Hour}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v validated", c)
		}
	}
	t.Setenv("CHAT_PRESENCE_GRACE", "3s")
	t.Setenv("CHAT_PRESENCE_SWEEP", "250ms")
	t.Setenv("CHAT_PRESENCE_ID", "p1")
	var c presence.Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f := platform.NewFlags(fs)
	c.Bind(f)
	if err := fs.Parse([]string{"-presence-sweep", "200ms"}); err != nil || f.Err() != nil {
		t.Fatal(err, f.Err())
	}
	if c.Grace != 3*time.Second || c.Sweep != 200*time.Millisecond || c.ID != "p1" {
		t.Fatalf("bound %+v", c)
	}
	if _, err := presence.New(d, presence.Deps{}); err == nil {
		t.Fatal("New without deps")
	}
}

func TestReadiness(t *testing.T) {
	e := newEnv(t)
	in := e.start()
	mux := http.NewServeMux()
	in.ops.Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path string) int {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := get("/readyz"); st != http.StatusOK {
		t.Fatalf("/readyz %d", st)
	}
	if st := get("/metrics"); st != http.StatusOK {
		t.Fatalf("/metrics %d", st)
	}
	if err := in.Stop(); err != nil { // closes its NATS connection
		t.Fatal(err)
	}
	if st := get("/readyz"); st != http.StatusServiceUnavailable {
		t.Fatalf("/readyz without NATS: %d", st)
	}
}
