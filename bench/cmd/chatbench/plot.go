package main

// PNG line plots for docs/benchmarks.md ("latency against offered rate",
// "memory against connections"), drawn with gonum.org/v1/plot. Axis ranges
// and ticks are chosen here rather than by gonum's defaults so that labelled
// ticks always fall on 1, 2, 5 × 10^k (decades on a logarithmic axis).

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// series is one line of a plot.
type series struct {
	Name   string
	Points [][2]float64 // x, y
}

// plotSpec describes one plot.
type plotSpec struct {
	Title, XLabel, YLabel string
	LogX, LogY            bool    // logarithmic axes (optional)
	YMax                  float64 // 0: auto
	Lines                 []series
	// HLine is an optional horizontal reference line (a target), drawn dashed
	// with its label.
	HLine *hline
}

// hline is a horizontal reference line: a target.
type hline struct {
	Y     float64
	Label string
}

const (
	plotWidthPx  = 800
	plotHeightPx = 480
	plotDPI      = 96
)

// writePlot renders p as a PNG of plotWidthPx × plotHeightPx at path.
// Points that cannot be shown (not finite, or not positive on a logarithmic
// axis) are left out.
func writePlot(path string, p plotSpec) error {
	pl, err := buildPlot(p)
	if err != nil {
		return err
	}
	c := vgimg.NewWith(
		vgimg.UseWH(vg.Length(plotWidthPx)*vg.Inch/plotDPI, vg.Length(plotHeightPx)*vg.Inch/plotDPI),
		vgimg.UseDPI(plotDPI))
	// Margins on the right and top keep end points and their markers off
	// the image's edge.
	pl.Draw(draw.Crop(draw.New(c), 0, -vg.Points(14), 0, -vg.Points(6)))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("plot %q: %w", p.Title, err)
	}
	return f.Close()
}

// buildPlot sets up the gonum plot for p.
func buildPlot(p plotSpec) (*plot.Plot, error) {
	pl := plot.New()
	pl.Title.Text = p.Title
	pl.Title.TextStyle.Font.Size = vg.Points(14)
	pl.X.Label.Text = p.XLabel
	pl.Y.Label.Text = p.YLabel
	pl.Legend.Top, pl.Legend.Left = true, true
	pl.Legend.XOffs, pl.Legend.YOffs = vg.Points(8), vg.Points(-6)
	for _, ts := range []*text.Style{&pl.Title.TextStyle, &pl.X.Label.TextStyle, &pl.Y.Label.TextStyle,
		&pl.X.Tick.Label, &pl.Y.Tick.Label, &pl.Legend.TextStyle} {
		ts.Font.Variant = "Sans"
	}

	grid := plotter.NewGrid()
	grid.Vertical.Color = color.Gray{Y: 225}
	grid.Horizontal.Color = color.Gray{Y: 225}
	pl.Add(grid)

	ok := func(v float64, log bool) bool {
		return !math.IsNaN(v) && !math.IsInf(v, 0) && (!log || v > 0)
	}
	var xs, ys []float64
	lines := make([]plotter.XYs, len(p.Lines))
	for i, s := range p.Lines {
		for _, pt := range s.Points {
			if ok(pt[0], p.LogX) && ok(pt[1], p.LogY) {
				lines[i] = append(lines[i], plotter.XY{X: pt[0], Y: pt[1]})
				xs = append(xs, pt[0])
				ys = append(ys, pt[1])
			}
		}
	}
	if p.HLine != nil && p.YMax <= 0 && ok(p.HLine.Y, p.LogY) {
		ys = append(ys, p.HLine.Y)
	}
	xlo, xhi := axisRange(xs, p.LogX, 0)
	ylo, yhi := axisRange(ys, p.LogY, p.YMax)
	for _, a := range []*plot.Axis{&pl.X, &pl.Y} {
		a.Tick.Marker = niceTicks{}
		if a == &pl.X && p.LogX || a == &pl.Y && p.LogY {
			a.Scale = plot.LogScale{}
			a.Tick.Marker = logTicks{}
		}
	}

	for i, s := range p.Lines {
		c := plotColour(i)
		var shown plotter.XYs // glyphs are not clipped: keep them inside
		for _, xy := range lines[i] {
			if xy.Y >= ylo && xy.Y <= yhi {
				shown = append(shown, xy)
			}
		}
		line, err := plotter.NewLine(lines[i])
		if err != nil {
			return nil, fmt.Errorf("plot %q: series %q: %w", p.Title, s.Name, err)
		}
		line.Color, line.Width = c, vg.Points(1.5)
		marks, err := plotter.NewScatter(shown)
		if err != nil {
			return nil, fmt.Errorf("plot %q: series %q: %w", p.Title, s.Name, err)
		}
		marks.Color, marks.Shape, marks.Radius = c, plotutil.Shape(i), vg.Points(3)
		pl.Add(line, marks)
		pl.Legend.Add(s.Name, line, marks)
	}
	if h := p.HLine; h != nil && ok(h.Y, p.LogY) {
		pl.Add(refLine{y: h.Y, label: h.Label})
	}
	// After Add, which widens the axes to the data (beyond YMax too).
	pl.X.Min, pl.X.Max = xlo, xhi
	pl.Y.Min, pl.Y.Max = ylo, yhi
	return pl, nil
}

// plotColour is the colour of the i-th series.
func plotColour(i int) color.Color {
	return plotutil.DarkColors[i%len(plotutil.DarkColors)]
}

// refLine is a dashed horizontal line across the data area with a label
// above its left end.
type refLine struct {
	y     float64
	label string
}

func (r refLine) Plot(c draw.Canvas, pl *plot.Plot) {
	if r.y < pl.Y.Min || r.y > pl.Y.Max {
		return
	}
	_, trY := pl.Transforms(&c)
	y := trY(r.y)
	style := draw.LineStyle{Color: color.Gray{Y: 60}, Width: vg.Points(1.2),
		Dashes: []vg.Length{vg.Points(6), vg.Points(4)}}
	c.StrokeLine2(style, c.Min.X, y, c.Max.X, y)
	if r.label == "" {
		return
	}
	f := font.From(plot.DefaultFont, vg.Points(10))
	f.Variant = "Sans"
	ts := text.Style{Color: color.Gray{Y: 40}, Font: f, Handler: plot.DefaultTextHandler,
		XAlign: text.XLeft, YAlign: text.YBottom}
	at := vg.Point{X: c.Min.X + vg.Points(6), Y: y + vg.Points(2)}
	box := ts.Rectangle(r.label).Add(at)
	c.SetColor(color.NRGBA{R: 255, G: 255, B: 255, A: 200})
	c.Fill(box.Path())
	c.FillText(ts, at, r.label)
}

// axisRange returns the range of an axis showing vs: on a linear axis from 0
// (or a round value below the smallest negative value) to a round value at
// least the largest; on a log axis between 1, 2, 5 × 10^k values. max > 0
// fixes the upper end.
func axisRange(vs []float64, log bool, max float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vs {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if len(vs) == 0 {
		lo, hi = 1, 1
	}
	if max > 0 {
		hi = max
		lo = math.Min(lo, hi)
	}
	if log {
		if lo >= hi {
			lo, hi = lo/2, lo*2
		}
		lo = roundLog(lo, false)
		if max <= 0 {
			hi = roundLog(hi, true)
		}
		return lo, hi
	}
	lo = math.Min(lo, 0)
	if lo >= hi {
		hi = lo + 1
	}
	step := niceStep(hi - lo)
	lo = math.Floor(lo/step) * step
	if max <= 0 {
		hi = math.Ceil(hi/step-1e-9) * step
	}
	return lo, hi
}

// roundLog rounds v > 0 down (or up) to a 1, 2, 5 × 10^k value.
func roundLog(v float64, up bool) float64 {
	d := math.Pow10(int(math.Floor(math.Log10(v))))
	ms := []float64{1, 2, 5, 10}
	if up {
		for _, m := range ms {
			if m*d >= v*(1-1e-9) {
				return m * d
			}
		}
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i]*d <= v*(1+1e-9) {
			return ms[i] * d
		}
	}
	return d
}

// niceStep is the largest 1, 2, 5 × 10^k step giving at least four
// intervals over span (so four to ten).
func niceStep(span float64) float64 {
	return roundLog(span/4, false)
}

// niceTicks labels a linear axis at multiples of a 1, 2, 5 × 10^k step.
type niceTicks struct{}

func (niceTicks) Ticks(min, max float64) []plot.Tick {
	step := niceStep(max - min)
	minor := step / 5
	if m := step / math.Pow10(int(math.Floor(math.Log10(step)+1e-9))); math.Abs(m-2) < 1e-6 {
		minor = step / 4
	}
	var ts []plot.Tick
	for k := math.Ceil(min/minor - 1e-9); k*minor <= max*(1+1e-9)+1e-12; k++ {
		v := k * minor
		t := plot.Tick{Value: v}
		if r := math.Round(v / step); math.Abs(v/step-r) < 1e-6 {
			t.Value = r * step
			t.Label = fmtTick(t.Value, step)
		}
		ts = append(ts, t)
	}
	return ts
}

// logTicks labels a log axis at the decades (also at 2 and 5 × 10^k when
// at most three decades are in range), with minor ticks at 2..9 × 10^k.
type logTicks struct{}

func (logTicks) Ticks(min, max float64) []plot.Tick {
	first := int(math.Floor(math.Log10(min) + 1e-9))
	last := int(math.Floor(math.Log10(max) + 1e-9))
	decades := last - first
	if math.Pow10(first) >= min*(1-1e-9) {
		decades++ // the lowest decade itself is in range
	}
	few := decades <= 3
	var ts []plot.Tick
	for e := first; e <= last; e++ {
		d := math.Pow10(e)
		for m := 1; m <= 9; m++ {
			v := float64(m) * d
			if v < min*(1-1e-9) || v > max*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || few && (m == 2 || m == 5) {
				t.Label = fmtTick(v, d)
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// fmtTick formats a tick value with as many decimals as step needs, using
// k and M for thousands and millions.
func fmtTick(v, step float64) string {
	suffix := ""
	switch a := math.Abs(v); {
	case a >= 1e6:
		v, step, suffix = v/1e6, step/1e6, "M"
	case a >= 1e3:
		v, step, suffix = v/1e3, step/1e3, "k"
	}
	dec := 0
	if step < 1 {
		dec = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	s := strconv.FormatFloat(v, 'f', dec, 64)
	if dec > 0 {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s + suffix
}
