package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// figurer is a scenario result that contributes plots to docs/benchmarks.md, by file name.
type figurer interface {
	figures() map[string]plotSpec
}

// writeFigures draws the run's plots into dir (flag -plots): the direct-message ladder (latency
// against offered rate, chatd with and without fsync and the rawhub relay) and every scenario's.
func writeFigures(r *report, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	figs := map[string]plotSpec{}
	if spec, ok := ladderFigure(r); ok {
		figs["dm-latency.png"] = spec
	}
	for _, s := range r.Scenarios {
		if f, ok := s.Result.(figurer); ok && s.Result != nil {
			for name, spec := range f.figures() {
				figs[name] = spec
			}
		}
	}
	names := make([]string, 0, len(figs))
	for n := range figs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		path := filepath.Join(dir, n)
		if err := writePlot(path, figs[n]); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		logf("wrote %s", path)
	}
	return nil
}

// ladderFigure is send-to-deliver latency against offered rate for direct messages.
func ladderFigure(r *report) (plotSpec, bool) {
	spec := plotSpec{Title: "Direct messages: send-to-deliver latency against offered rate",
		XLabel: "offered rate (messages/s)", YLabel: "latency (ms)", LogX: true, LogY: true}
	spec.HLine = &hline{Y: r.Params.SustainedP99Ms, Label: fmt.Sprintf("sustained bound: p99 %.0f ms", r.Params.SustainedP99Ms)}
	for _, s := range r.Settings {
		if s.Gateway == nil {
			continue
		}
		var p50, p99 series
		p50.Name, p99.Name = "chatd fsync "+onOff(s.Fsync)+" p50", "chatd fsync "+onOff(s.Fsync)+" p99"
		for _, x := range s.Gateway.Ladder {
			if x.SendToDeliver.Count == 0 {
				continue
			}
			p50.Points = append(p50.Points, [2]float64{x.TargetRate, x.SendToDeliver.P50})
			p99.Points = append(p99.Points, [2]float64{x.TargetRate, x.SendToDeliver.P99})
		}
		spec.Lines = append(spec.Lines, p50, p99)
		if s.Rawhub != nil {
			var h50, h99 series
			h50.Name, h99.Name = "rawhub relay p50", "rawhub relay p99"
			for _, x := range s.Rawhub.Steps {
				if x.SendToDeliver.Count == 0 {
					continue
				}
				h50.Points = append(h50.Points, [2]float64{x.TargetRate, x.SendToDeliver.P50})
				h99.Points = append(h99.Points, [2]float64{x.TargetRate, x.SendToDeliver.P99})
			}
			spec.Lines = append(spec.Lines, h50, h99)
		}
	}
	return spec, len(spec.Lines) > 0
}

// figures of the idle scenario: resident memory against connections, chatd and rawhub.
func (r *idleResult) figures() map[string]plotSpec {
	spec := plotSpec{Title: "Idle connections: resident memory against connections (after GC)",
		XLabel: "connections", YLabel: "resident memory (MB)"}
	for _, s := range []*idleServer{r.Chat, r.Raw} {
		if s == nil {
			continue
		}
		line := series{Name: s.Server}
		for _, st := range s.Steps {
			if st.AfterIdle {
				continue // the reading after the idle window, at the last step's count
			}
			line.Points = append(line.Points, [2]float64{float64(st.Conns), float64(st.RSS) / (1 << 20)})
		}
		spec.Lines = append(spec.Lines, line)
	}
	if len(spec.Lines) == 0 {
		return nil
	}
	return map[string]plotSpec{"idle-memory.png": spec}
}

// figures of the fanout scenario: delivery p99 against offered deliveries, each ladder's steps.
func (r *fanoutResult) figures() map[string]plotSpec {
	spec := plotSpec{Title: fmt.Sprintf("Group of %d, all online: delivery p99 against offered deliveries", r.Members),
		XLabel: "offered deliveries/s", YLabel: "send-to-deliver p99 (ms)", LogX: true, LogY: true,
		HLine: &hline{Y: r.P99LimitMs, Label: fmt.Sprintf("bound: p99 %.0f ms", r.P99LimitMs)}}
	for _, l := range []*fanoutLadder{r.Chat, r.Raw} {
		if l == nil {
			continue
		}
		steps := append([]*fanoutStep(nil), l.Steps...)
		sort.Slice(steps, func(i, j int) bool { return steps[i].OfferedDeliveries < steps[j].OfferedDeliveries })
		line := series{Name: l.Server}
		for _, st := range steps {
			if st.SendToDeliver.Count > 0 {
				line.Points = append(line.Points, [2]float64{st.OfferedDeliveries, st.SendToDeliver.P99})
			}
		}
		spec.Lines = append(spec.Lines, line)
	}
	if len(spec.Lines) == 0 {
		return nil
	}
	return map[string]plotSpec{"fanout-latency.png": spec}
}

// targets of the fanout scenario.
func (r *fanoutResult) targets() []target {
	const name, goal = "3. group of 1,000, all online: highest deliveries/s with p99 < 100 ms", "≥ 1.2 × rawhub"
	if r.Chat == nil || r.Raw == nil || r.Raw.Max == nil {
		return []target{missing(30, name, goal)}
	}
	chat := 0.0
	if r.Chat.Max != nil {
		chat = r.Chat.Max.DeliveriesPerSec
	}
	m := fmt.Sprintf("%.0f vs %.0f deliveries/s = %.2f × raw", chat, r.Raw.Max.DeliveriesPerSec, r.ChatOverRaw)
	if e := r.EqualRate; e != nil {
		m += fmt.Sprintf("; server CPU per delivery at %.0f msgs/s: %.1f vs %.1f µs", e.OfferedMsgsPerSec, e.ChatCPUPerDelivU, e.RawCPUPerDelivU)
	}
	return []target{{Order: 30, Name: name, Goal: goal, Measured: m, Met: r.ChatOverRaw >= 1.2}}
}
