package gateway_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/eventchat/chat/schemas"
	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A gateway that dies between appending a membership event and projecting it leaves the groups
// bucket behind the log. The log is the authority: the next gateway to read the group folds the
// missing event in, and the change takes effect everywhere.
func TestMembershipProjectionCatchesUpWithTheLog(t *testing.T) {
	e := newEnv(t, 1, nil)
	ann, dan := e.user("ann", 0), e.user("dan", 0)
	ann.ok(map[string]any{"cmd": "create", "conv": "g:crew", "members": []string{}})

	// Append "dan invited" straight to the log, as the dead gateway did, without projecting it.
	nc, err := nats.Connect(e.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	kv, err := js.KeyValue(ctx, schemas.GroupsBucket)
	if err != nil {
		t.Fatal(err)
	}
	before, err := kv.Get(ctx, schemas.GroupKey("crew"))
	if err != nil {
		t.Fatal(err)
	}
	g, _ := schemas.UnmarshalGroup(before.Value())
	ev, _ := json.Marshal(schemas.Event{Type: schemas.TypeMember, Conv: "g:crew", Ts: schemas.FormatTime(time.Now()),
		User: "dan", Action: schemas.ActionInvited, By: "ann"})
	// Index first, as the gateway does, then the compare-and-swap append.
	idx, _ := js.KeyValue(ctx, schemas.IndexBucket)
	if _, err := idx.Put(ctx, "dan.g.crew", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, schemas.MemberSubject("crew"), ev, jetstream.WithExpectLastSequencePerSubject(g.Seq))
	if err != nil {
		t.Fatal(err)
	}

	// dan may now post: the running gateway saw the event in its live feed; a gateway started
	// afterwards finds the bucket behind the log and folds the event in.
	dan.msg(conv("g:crew"), "made it", "d1")
	event(t, ann.c, hasText("made it"))
	e.gws = append(e.gws, gt.StartGW(t, e.ns, nil))
	dan2 := e.dial(dan.token, 1)
	if r := doOn(t, dan2, &dan.ids, map[string]any{"cmd": "history", "conv": "g:crew"}); r.Cmd() != "history" {
		t.Fatalf("new gateway refused dan's history: %v", r)
	}
	// A membership change folds the missing event into the bucket and builds on it.
	dan.ok(map[string]any{"cmd": "leave", "conv": "g:crew"})
	after, err := kv.Get(ctx, schemas.GroupKey("crew"))
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := schemas.UnmarshalGroup(after.Value())
	if m := g2.Members["dan"]; g2.Seq <= ack.Sequence || m == nil || m.Since != ack.Sequence || m.Left == 0 {
		t.Fatalf("projection: seq %d (invite at %d), dan %+v", g2.Seq, ack.Sequence, m)
	}
	dan.fails("forbidden", map[string]any{"cmd": "history", "conv": "g:crew"})
}
