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
