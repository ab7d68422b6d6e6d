package gateway

import (
	"testing"
	"time"
)

// A window reports its threshold once, when the count of a one-second window reaches it, and
// starts over in the next window.
func TestRateWindowReachesOncePerWindow(t *testing.T) {
	var w rateWindow
	t0 := time.Unix(1_000_000, 0)
	hits := 0
	for i := range 250 {
		if w.reaches(t0.Add(time.Duration(i)*time.Millisecond), 100) {
			hits++
			if i != 99 {
				t.Fatalf("reached at the %dth of the window, want the 100th", i+1)
			}
		}
	}
	if hits != 1 {
		t.Fatalf("reached %d times in one window, want once", hits)
	}
	// A new window: 99 more do not reach it, the 100th does.
	t1 := t0.Add(time.Second)
	for i := range 100 {
		if got := w.reaches(t1.Add(time.Duration(i)*time.Millisecond), 100); got != (i == 99) {
			t.Fatalf("second window, count %d: reaches %v", i+1, got)
		}
	}
	// A slow trickle never does.
	var slow rateWindow
	for i := range 500 {
		if slow.reaches(t0.Add(time.Duration(i)*20*time.Millisecond), 100) {
			t.Fatalf("50 a second reached a threshold of 100 (at %d)", i)
		}
	}
}
