package main

import (
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func samplePlotSpec() plotSpec {
	p := plotSpec{
		Title:  "Delivery latency against offered rate",
		XLabel: "offered rate (messages/s)",
		YLabel: "latency (ms)",
		LogX:   true,
		Lines: []series{
			{Name: "p50", Points: [][2]float64{{100, 1.2}, {300, 1.4}, {1000, 1.9}, {3000, 2.8}, {10000, 6.5}, {20000, 21}}},
			{Name: "p99", Points: [][2]float64{{100, 4}, {300, 4.6}, {1000, 7.5}, {3000, 14}, {10000, 38}, {20000, 160}}},
		},
	}
	p.HLine = &hline{Y: 100, Label: "target p99 100 ms"}
	return p
}

func TestWritePlot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latency.png")
	if err := writePlot(path, samplePlotSpec()); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != plotWidthPx || b.Dy() != plotHeightPx {
		t.Errorf("size %dx%d, want %dx%d", b.Dx(), b.Dy(), plotWidthPx, plotHeightPx)
	}
	// Background, text, grid, reference line and two series colours: a blank
	// or one-colour image has far fewer.
	colours := map[[3]uint32]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}]++
		}
	}
	if len(colours) < 8 {
		t.Errorf("only %d distinct colours in the plot", len(colours))
	}
	// Each series' colour is present (lines and markers are drawn opaque).
	for i := range 2 {
		r, g, bl, _ := plotColour(i).RGBA()
		if n := colours[[3]uint32{r >> 8, g >> 8, bl >> 8}]; n < 50 {
			t.Errorf("series %d colour: %d pixels", i, n)
		}
	}
	// PLOT_SAMPLE=dir keeps sample plots there, to look at.
	if dir := os.Getenv("PLOT_SAMPLE"); dir != "" {
		if err := writePlot(filepath.Join(dir, "sample-plot.png"), samplePlotSpec()); err != nil {
			t.Fatal(err)
		}
		mem := plotSpec{Title: "Gateway memory against connections", XLabel: "open WebSocket connections",
			YLabel: "resident memory (MiB)", Lines: []series{
				{Name: "RSS", Points: [][2]float64{{0, 18}, {1000, 41}, {2500, 77}, {5000, 139}, {10000, 262}}},
				{Name: "Go heap in use", Points: [][2]float64{{0, 4}, {1000, 22}, {2500, 50}, {5000, 96}, {10000, 190}}},
			}}
		mem.HLine = &hline{Y: 250, Label: "budget 250 MiB"}
		if err := writePlot(filepath.Join(dir, "sample-plot-memory.png"), mem); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWritePlotEdgeCases(t *testing.T) {
	dir := t.TempDir()
	specs := map[string]plotSpec{
		"empty":  {Title: "nothing"},
		"single": {Title: "one point", LogX: true, LogY: true, Lines: []series{{Name: "a", Points: [][2]float64{{5, 5}}}}},
		"ymax": {Title: "clipped", YMax: 50, Lines: []series{
			{Name: "a", Points: [][2]float64{{0, 0}, {1000, 10}, {2000, 400}, {3000, -5}}}}},
		"bad": {Title: "bad points", LogY: true, Lines: []series{
			{Name: "a", Points: [][2]float64{{1, 0}, {2, -1}, {3, math.Inf(1)}, {math.NaN(), 4}}}}},
	}
	for name, p := range specs {
		if err := writePlot(filepath.Join(dir, name+".png"), p); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	pl, err := buildPlot(specs["ymax"])
	if err != nil {
		t.Fatal(err)
	}
	if pl.Y.Min != -10 || pl.Y.Max != 50 || pl.X.Min != 0 || pl.X.Max != 3000 {
		t.Errorf("ymax: axes %v..%v × %v..%v, want 0..3000 × -10..50", pl.X.Min, pl.X.Max, pl.Y.Min, pl.Y.Max)
	}
}

func TestPlotTicks(t *testing.T) {
	lin := map[[2]float64][]string{
		{0, 200}:   {"0", "50", "100", "150", "200"},
		{0, 12000}: {"0", "2k", "4k", "6k", "8k", "10k", "12k"},
		{0, 1.2}:   {"0", "0.2", "0.4", "0.6", "0.8", "1", "1.2"},
		{0, 2500}:  {"0", "500", "1k", "1.5k", "2k", "2.5k"},
	}
	for r, want := range lin {
		var got []string
		for _, tk := range (niceTicks{}).Ticks(r[0], r[1]) {
			if tk.Label != "" {
				got = append(got, tk.Label)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("linear %v: %q, want %q", r, got, want)
		}
	}
	logs := map[[2]float64][]string{
		{1, 100000}:  {"1", "10", "100", "1k", "10k", "100k"},
		{50, 2000}:   {"50", "100", "200", "500", "1k", "2k"},
		{0.01, 1}:    {"0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1"},
		{100, 20000}: {"100", "200", "500", "1k", "2k", "5k", "10k", "20k"},
		{0.5, 5}:     {"0.5", "1", "2", "5"},
	}
	for r, want := range logs {
		var got []string
		for _, tk := range (logTicks{}).Ticks(r[0], r[1]) {
			if tk.Label != "" {
				got = append(got, tk.Label)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("log %v: %q, want %q", r, got, want)
		}
	}
	for _, c := range []struct {
		vs     []float64
		log    bool
		lo, hi float64
	}{
		{[]float64{3, 170}, false, 0, 180},
		{[]float64{120, 19000}, true, 100, 20000},
		{[]float64{0.7, 3}, true, 0.5, 5},
	} {
		if lo, hi := axisRange(c.vs, c.log, 0); lo != c.lo || hi != c.hi {
			t.Errorf("axisRange(%v, log %v) = %v..%v, want %v..%v", c.vs, c.log, lo, hi, c.lo, c.hi)
		}
	}
}
