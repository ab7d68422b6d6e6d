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
	t.Setenv("GOGC", "")
	t.Setenv("CHAT_GC_PERCENT", "250")
	if err := ParseFlags("t", nil, func(*Flags) {}); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetGCPercent(100); got != 250 {
		t.Fatalf("GC percent %d after CHAT_GC_PERCENT=250, want 250", got)
	}
	if err := ParseFlags("t", []string{"-gc-percent", "-1"}, func(*Flags) {}); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetGCPercent(100); got != -1 {
		t.Fatalf("GC percent %d after -gc-percent -1, want -1 (off)", got)
	}
	t.Setenv("GOGC", "150")
	if err := ParseFlags("t", nil, func(*Flags) {}); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GC percent changed to %d with GOGC set: GOGC must win", got)
	}
	for _, bad := range []string{"0", "-2"} {
		if err := ParseFlags("t", []string{"-gc-percent", bad}, func(*Flags) {}); err == nil {
			t.Fatalf("-gc-percent %s accepted", bad)
		}
	}
}
