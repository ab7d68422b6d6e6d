package platform

import (
	"flag"
	"runtime/debug"
	"testing"
	"time"
)

func TestFlagsTakeEnvDefaultsAndFlagsWin(t *testing.T) {
	t.Setenv("CHAT_T_ADDR", "0.0.0.0:9")
	t.Setenv("CHAT_T_N", "7")
	t.Setenv("CHAT_T_D", "3s")
	t.Setenv("CHAT_T_LIST", "a, b,,c")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f := NewFlags(fs)
	var addr string
	var n int
	var d time.Duration
	var list []string
	var b bool
	f.String(&addr, "addr", "CHAT_T_ADDR", "127.0.0.1:1", "")
	f.Int(&n, "n", "CHAT_T_N", 1, "")
	f.Duration(&d, "d", "CHAT_T_D", time.Second, "")
	f.List(&list, "list", "CHAT_T_LIST", "", "")
	f.Bool(&b, "b", "CHAT_T_B_UNSET", true, "")
	if err := fs.Parse([]string{"-n", "9"}); err != nil {
		t.Fatal(err)
	}
	if f.Err() != nil || addr != "0.0.0.0:9" || n != 9 || d != 3*time.Second || len(list) != 3 || list[2] != "c" || !b {
		t.Fatalf("got %q %d %s %q %v (err %v)", addr, n, d, list, b, f.Err())
	}
}

func TestFlagsReportUnparsableEnv(t *testing.T) {
	t.Setenv("CHAT_T_BAD", "soon")
	f := NewFlags(flag.NewFlagSet("t", flag.ContinueOnError))
	var d time.Duration
	f.Duration(&d, "d", "CHAT_T_BAD", time.Second, "")
	if f.Err() == nil || d != time.Second {
		t.Fatalf("err %v, d %s", f.Err(), d)
	}
}

// The collector's target: CHAT_GC_PERCENT (or its flag) applies unless GOGC is set; a bad value is
// a configuration error.
func TestGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	// inForce reads the runtime's target, excluding the tuner meanwhile.
	inForce := func() int {
		gcMode.mu.Lock()
		defer gcMode.mu.Unlock()
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p
	}
	resetPeriods := func() {
		gcMode.mu.Lock()
		defer gcMode.mu.Unlock()
		gcMode.busyEnd, gcMode.denseEnd = time.Time{}, time.Time{}
	}
	resetPeriods()
	defer resetPeriods()
	t.Setenv("GOGC", "")
	t.Setenv("CHAT_GC_PERCENT", "250")
	if err := ParseFlags("t", nil, func(*Flags) {}); err != nil {
		t.Fatal(err)
	}
	if got := inForce(); got != QuietGCPercent {
		t.Fatalf("GC percent %d after CHAT_GC_PERCENT=250 with no traffic, want %d", got, QuietGCPercent)
	}
	BusyGC(time.Hour)
	if got := inForce(); got != 250 {
		t.Fatalf("GC percent %d with traffic after CHAT_GC_PERCENT=250, want 250", got)
	}
	if err := ParseFlags("t", []string{"-gc-percent", "-1"}, func(*Flags) {}); err != nil {
		t.Fatal(err)
	}
	if got := inForce(); got != -1 {
		t.Fatalf("GC percent %d after -gc-percent -1, want -1 (off)", got)
	}
	t.Setenv("GOGC", "150")
	if err := ParseFlags("t", []string{"-gc-percent", "300"}, func(*Flags) {}); err != nil {
		t.Fatal(err)
	}
	if got := inForce(); got != -1 {
		t.Fatalf("GC percent changed to %d with GOGC set: GOGC must win", got)
	}
	for _, bad := range []string{"0", "-2"} {
		if err := ParseFlags("t", []string{"-gc-percent", bad}, func(*Flags) {}); err == nil {
			t.Fatalf("-gc-percent %s accepted", bad)
		}
	}
}

// The target in force: the quiet one unless a BusyGC period runs, and the quiet one during a
// DenseGC period even then; nothing changes when the target is not above the quiet one.
func TestGCPeriods(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	inForce := func(m *gcState) int {
		m.mu.Lock()
		defer m.mu.Unlock()
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p
	}
	m := &gcState{target: 400}
	now := time.Now()
	m.mu.Lock()
	m.applyLocked(now)
	m.mu.Unlock()
	if got := inForce(m); got != QuietGCPercent {
		t.Fatalf("at start: %d, want %d", got, QuietGCPercent)
	}
	m.extend(&m.busyEnd, time.Hour)
	if got := inForce(m); got != 400 {
		t.Fatalf("busy: %d, want 400", got)
	}
	m.extend(&m.denseEnd, 50*time.Millisecond)
	if got := inForce(m); got != QuietGCPercent {
		t.Fatalf("busy in a dense period: %d, want %d", got, QuietGCPercent)
	}
	// The dense period ends by itself, and the busy one goes on.
	deadline := time.Now().Add(10 * time.Second)
	for inForce(m) != 400 {
		if time.Now().After(deadline) {
			t.Fatal("the end of the dense period did not restore the busy target")
		}
		time.Sleep(5 * time.Millisecond)
	}
	m.mu.Lock()
	m.busyEnd = time.Now().Add(30 * time.Millisecond)
	m.applyLocked(time.Now())
	m.mu.Unlock()
	for inForce(m) != QuietGCPercent {
		if time.Now().After(deadline) {
			t.Fatal("the end of the busy period did not restore the quiet target")
		}
		time.Sleep(5 * time.Millisecond)
	}
	m.recheck.Stop()
	low := &gcState{target: 100}
	debug.SetGCPercent(300)
	low.extend(&low.busyEnd, time.Hour)
	if got := inForce(low); got != 300 {
		t.Fatalf("a target of 100 was tuned: %d", got)
	}
}
