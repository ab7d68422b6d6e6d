package unread

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go/jetstream"
)

// Check finds no difference on a healthy instance, and reports one whose live state was changed
// behind the log's back. It leaves nothing behind in the object store.
func TestCheck(t *testing.T) {
	seed := testSeed(t)
	t.Logf("seed %d (UNREAD_SEED=%d repeats it)", seed, seed)
	e := newEnv(t)
	in := e.start(testConfig("x"))
	newGen(seed, e.append, testUsers, testGroups).steps(200)
	last := e.lastSeq()
	in.waitApplied(last)

	diffs, seq, err := Check(context.Background(), e.nc, testLog())
	if err != nil || len(diffs) != 0 || seq != last {
		t.Fatalf("check at seq %d (last %d): %v\n%s", seq, last, err, strings.Join(diffs, "\n"))
	}

	// Move a listed user's marker in the live projection, as a bug would.
	p := in.svc.proj
	p.mu.Lock()
	var tampered string
	for id, c := range p.convs {
		for u, uc := range c.Users {
			if tampered == "" && c.lists(u) {
				uc.Read = seq + 1
				tampered = u + " " + id + " read: " + itoa(seq+1) + " != "
			}
		}
	}
	p.mu.Unlock()
	if tampered == "" {
		t.Fatal("nobody lists a conversation")
	}
	diffs, _, err = Check(context.Background(), e.nc, testLog())
	if err != nil || !slices.ContainsFunc(diffs, func(d string) bool { return strings.HasPrefix(d, tampered) }) {
		t.Fatalf("check after tampering (%q): %v\n%s", tampered, err, strings.Join(diffs, "\n"))
	}

	store, err := e.js.ObjectStore(context.Background(), schemas.UnreadSnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := store.List(context.Background())
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.Name != schemas.UnreadSnapshotObject {
			t.Errorf("object %s left behind", o.Name)
		}
	}
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }
