package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// The performance targets of the benchmark issue, checked against a run: the terminal summary and
// the table in docs/benchmarks.md come from here.

// target is one target and what the run measured for it.
type target struct {
	Order    int    `json:"-"`
	Name     string `json:"name"`
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
	// Missing: the run did not measure it (a partial run, or the phase failed).
	Missing bool `json:"missing,omitempty"`
}

// targeter is a scenario result with targets of its own.
type targeter interface {
	targets() []target
}

func missing(order int, name, goal string) target {
	return target{Order: order, Name: name, Goal: goal, Measured: "not measured", Missing: true}
}

// targets lists every target the run measured, in the order.
func (r *report) targets() []target {
	var ts []target
	var on, off *settingResult
	for i := range r.Settings {
		if r.Settings[i].Fsync {
			on = &r.Settings[i]
		} else {
			off = &r.Settings[i]
		}
	}
	// 1. Direct messages at 5k/s.
	const dmName, dmGoal = "1. direct messages at 5,000/s, send to deliver", "p50 ≤ 1 ms, p99 ≤ 5 ms"
	if x := off.gatewayOpen(5000); x != nil {
		ts = append(ts, target{Order: 10, Name: dmName, Goal: dmGoal,
			Measured: fmt.Sprintf("p50 %.2f ms, p99 %.2f ms (1,000/s: %s)", x.SendToDeliver.P50, x.SendToDeliver.P99, off.openSummary(1000)),
			Met:      x.SendToDeliver.P50 <= 1 && x.SendToDeliver.P99 <= 5})
	} else {
		ts = append(ts, missing(10, dmName, dmGoal))
	}
	// 2. Highest sustained rate against raw.
	const susOff, susGoal = "2. highest sustained rate (p99 < 50 ms), fsync off", "≥ 0.5 × raw JetStream async publish, fsync off"
	if off != nil && off.SustainedOverRawAsync > 0 {
		ts = append(ts, target{Order: 20, Name: susOff, Goal: susGoal,
			Measured: fmt.Sprintf("%.0f msgs/s = %.2f × raw (%.0f)%s", off.sustainedRate(), off.SustainedOverRawAsync,
				off.raw("async").MsgsPerSec, off.hubSustained()),
			Met: off.SustainedOverRawAsync >= 0.5})
	} else {
		ts = append(ts, missing(20, susOff, susGoal))
	}
	const susOn, susOnGoal = "2. highest sustained rate (p99 < 50 ms), fsync on", "≥ 0.5 × raw JetStream async publish, fsync off"
	if on != nil && r.SustainedFsyncOnOverRawFsyncOff > 0 {
		ts = append(ts, target{Order: 21, Name: susOn, Goal: susOnGoal,
			Measured: fmt.Sprintf("%.0f msgs/s = %.2f × raw fsync off (%.2f × raw fsync on)", on.sustainedRate(),
				r.SustainedFsyncOnOverRawFsyncOff, on.SustainedOverRawAsync),
			Met: r.SustainedFsyncOnOverRawFsyncOff >= 0.5})
	} else {
		ts = append(ts, missing(21, susOn, susOnGoal))
	}
	for _, s := range r.Scenarios {
		if t, ok := s.Result.(targeter); ok && s.Result != nil {
			ts = append(ts, t.targets()...)
		}
	}
	// 6. The figures of the earlier issues.
	if a := r.Archive; a != nil && a.Error == "" {
		ts = append(ts, target{Order: 60, Name: "6. archiver throughput", Goal: "≥ 0.8 × raw clickhouse-go batch insert",
			Measured: fmt.Sprintf("%.0f rows/s = %.2f × raw (%.0f); CPU per row %.1f µs (ClickHouse %.1f, archiver and NATS %.1f), raw %.1f; "+
				"reading the stream alone %.1f µs a message acked, %.1f without acks",
				a.ArchiverPerSec, a.ArchiverOver, a.RawRowsPerSec,
				a.ArchiverCPU.ClickHouseMicros+a.ArchiverCPU.ClientMicros, a.ArchiverCPU.ClickHouseMicros, a.ArchiverCPU.ClientMicros,
				a.RawCPU.ClickHouseMicros+a.RawCPU.ClientMicros, a.ConsumeAcked.CPUMicros, a.ConsumeNone.CPUMicros),
			Met: a.ArchiverOver >= 0.8})
		ts = append(ts, target{Order: 61, Name: fmt.Sprintf("6. history, newest 50 with %s rows archived", thousands(a.HistoryRows)),
			Goal: "p99 < 50 ms", Measured: fmt.Sprintf("p50 %.1f ms, p99 %.1f ms", a.History.P50, a.History.P99), Met: a.History.P99 < 50})
	}
	if small, big := unreadByName(r.Unread, "room-10"), unreadByName(r.Unread, "room-1000"); small != nil && big != nil {
		// Flat: the 1000-member room folds at least 80 % as fast as the 10-member one.
		ts = append(ts, target{Order: 62, Name: "6. unread cost per message against room size", Goal: "flat (1000 members ≥ 0.8 × 10 members)",
			Measured: fmt.Sprintf("%.0f vs %.0f events/s (%.2f)", big.ServicePerSec, small.ServicePerSec, ratio(big.ServicePerSec, small.ServicePerSec)),
			Met:      ratio(big.ServicePerSec, small.ServicePerSec) >= 0.8})
	}
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].Order < ts[j].Order })
	return ts
}

func unreadByName(rs []unreadResult, name string) *unreadResult {
	for i := range rs {
		if rs[i].Name == name && rs[i].Error == "" {
			return &rs[i]
		}
	}
	return nil
}

func (s *settingResult) gatewayOpen(rate float64) *loadResult {
	if s == nil {
		return nil
	}
	return s.Gateway.open(rate)
}

func (s *settingResult) openSummary(rate float64) string {
	x := s.gatewayOpen(rate)
	if x == nil {
		return "not measured"
	}
	return fmt.Sprintf("p50 %.2f ms, p99 %.2f ms", x.SendToDeliver.P50, x.SendToDeliver.P99)
}

// thousands formats n with commas.
func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// printTargets writes the targets as a Markdown table (it reads well in a terminal too).
func printTargets(w io.Writer, ts []target) {
	fmt.Fprintln(w, "\n| target | goal | measured | met |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, t := range ts {
		met := "yes"
		switch {
		case t.Missing:
			met = "-"
		case !t.Met:
			met = "**no**"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.Name, t.Goal, t.Measured, met)
	}
}
