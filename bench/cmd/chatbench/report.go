package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

func logf(format string, args ...any) { log.Printf(format, args...) }

// Latencies are recorded in microseconds, from 1 µs to a minute, to three significant digits.
func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) }

func record(h *hdrhistogram.Histogram, d time.Duration) {
	// Values beyond the range are clamped rather than lost: a sample is a sample.
	_ = h.RecordValue(min(max(d.Microseconds(), 1), h.HighestTrackableValue()))
}

func merge(hs []*hdrhistogram.Histogram) *hdrhistogram.Histogram {
	all := newHist()
	for _, h := range hs {
		all.Merge(h)
	}
	return all
}

// latency is a latency distribution's summary, in milliseconds.
type latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

func summarize(h *hdrhistogram.Histogram) latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return latency{Count: h.TotalCount(), Mean: h.Mean() / 1000, P50: ms(h.ValueAtQuantile(50)),
		P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)), P999: ms(h.ValueAtQuantile(99.9)),
		Max: ms(h.Max())}
}

// settingResult is every phase of one durability setting.
type settingResult struct {
	Fsync   bool           `json:"fsync"`
	Raw     []rawResult    `json:"raw"`
	Gateway *gatewayResult `json:"gateway,omitempty"`
	// Rawhub is the raw WebSocket relay's ladder at the same rates (fsync off only: it stores nothing).
	Rawhub *hubLadder `json:"rawhub,omitempty"`
	// GatewayOverRawAsync is the gateway's closed-loop throughput over the raw async publish rate.
	GatewayOverRawAsync float64 `json:"gatewayOverRawAsync,omitempty"`
	// SustainedOverRawAsync is the highest sustained open-loop rate (p99 under the bound) over the
	// raw async publish rate: the measure.
	SustainedOverRawAsync float64  `json:"sustainedOverRawAsync,omitempty"`
	Errors                []string `json:"errors,omitempty"`
}

// hubSustained describes rawhub's highest sustained rate on the same ladder, against raw async:
// the ceiling of the WebSocket path on this machine, with nothing stored.
func (s *settingResult) hubSustained() string {
	a := s.raw("async")
	if s.Rawhub == nil || s.Rawhub.MaxSustained == nil || a == nil || a.MsgsPerSec == 0 {
		return ""
	}
	r := s.Rawhub.MaxSustained.DeliveredPerSec
	return fmt.Sprintf("; rawhub, which stores nothing, sustains %.0f = %.2f × raw", r, r/a.MsgsPerSec)
}

func (s *settingResult) sustainedRate() float64 {
	if s.Gateway == nil || s.Gateway.MaxSustained == nil {
		return 0
	}
	return s.Gateway.MaxSustained.AckedPerSec
}

func (s *settingResult) raw(name string) *rawResult {
	for i := range s.Raw {
		if s.Raw[i].Name == name {
			return &s.Raw[i]
		}
	}
	return nil
}

func (s *settingResult) gatewayRate() float64 {
	if s.Gateway == nil || s.Gateway.Closed == nil {
		return 0
	}
	return s.Gateway.Closed.AckedPerSec
}

type machine struct {
	NumCPU     int    `json:"numCPU"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"goVersion"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Hostname   string `json:"hostname,omitempty"`
	// The 1, 5 and 15 minute load averages before and after the run (Linux): other work on the
	// machine during the run shows here, and makes the figures worth less.
	LoadAvgBefore string `json:"loadAvgBefore,omitempty"`
	LoadAvgAfter  string `json:"loadAvgAfter,omitempty"`
}

// revision names the code measured: the git commit of the working tree, marked when the tree has
// changes; "" outside a git checkout.
func revision() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		rev += " (modified)"
	}
	return rev
}

// loadAvg reads the load averages, or "" where /proc/loadavg does not exist.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// report is the whole run, as written to -out.
type report struct {
	Date     string          `json:"date"`
	Revision string          `json:"revision,omitempty"`
	Machine  machine         `json:"machine"`
	Params   params          `json:"params"`
	Settings []settingResult `json:"settings"`
	// GatewayFsyncOnOverRawFsyncOff: what durability plus the gateway cost against the fastest
	// undurable baseline.
	GatewayFsyncOnOverRawFsyncOff float64 `json:"gatewayFsyncOnOverRawFsyncOff,omitempty"`
	// SustainedFsyncOnOverRawFsyncOff likewise for the highest sustained open-loop rate.
	SustainedFsyncOnOverRawFsyncOff float64 `json:"sustainedFsyncOnOverRawFsyncOff,omitempty"`
	// Presence is the presence phase, on its own nats-server with fsync on.
	Presence *presenceResult `json:"presence,omitempty"`
	// Unread is the unread phase: one fresh nats-server per scenario, fsync off.
	Unread []unreadResult `json:"unread,omitempty"`
	// Archive is the archive phase: a local ClickHouse and a fresh nats-server, fsync off.
	Archive *archiveResult `json:"archive,omitempty"`
	// Scenarios are the scenarios on child-process servers (scenario.go), by name.
	Scenarios map[string]*scenarioRun `json:"scenarios,omitempty"`
	// Targets are the benchmark issue's targets against this run's figures.
	Targets []target `json:"targets,omitempty"`
	Seconds float64  `json:"seconds"`
	started time.Time
}

func newReport(p params) *report {
	host, _ := os.Hostname()
	return &report{Date: time.Now().UTC().Format(time.RFC3339), Revision: revision(), Params: p, started: time.Now(),
		Scenarios: map[string]*scenarioRun{},
		Machine: machine{NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(),
			OS: runtime.GOOS, Arch: runtime.GOARCH, Hostname: host, LoadAvgBefore: loadAvg()}}
}

func ratio(a, b float64) float64 {
	if a == 0 || b == 0 {
		return 0
	}
	return a / b
}

// finish computes the ratios between settings.
func (r *report) finish() {
	defer func() { r.Targets = r.targets() }()
	r.Seconds = time.Since(r.started).Seconds()
	r.Machine.LoadAvgAfter = loadAvg()
	var on, off *settingResult
	for i := range r.Settings {
		s := &r.Settings[i]
		if a := s.raw("async"); a != nil {
			s.GatewayOverRawAsync = ratio(s.gatewayRate(), a.MsgsPerSec)
			s.SustainedOverRawAsync = ratio(s.sustainedRate(), a.MsgsPerSec)
		}
		if s.Fsync {
			on = s
		} else {
			off = s
		}
	}
	if on != nil && off != nil {
		if a := off.raw("async"); a != nil {
			r.GatewayFsyncOnOverRawFsyncOff = ratio(on.gatewayRate(), a.MsgsPerSec)
			r.SustainedFsyncOnOverRawFsyncOff = ratio(on.sustainedRate(), a.MsgsPerSec)
		}
	}
}

func (r *report) failed() bool {
	for _, s := range r.Settings {
		if len(s.Errors) > 0 {
			return true
		}
	}
	for _, u := range r.Unread {
		if u.Error != "" {
			return true
		}
	}
	if r.Archive != nil && r.Archive.Error != "" {
		return true
	}
	for _, s := range r.Scenarios {
		if s.Error != "" || (s.Result != nil && s.Result.failed()) {
			return true
		}
	}
	return r.Presence != nil && len(r.Presence.Errors) > 0
}

func (r *report) write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// print writes the tables: the raw and gateway phases, then the presence phase.
func (r *report) print(w io.Writer) {
	p := r.Params
	fmt.Fprintf(w, "\nchatbench %s  rev %s  %s %s/%s  %d CPUs  event %d B  %.0fs%s\n", r.Date, r.Revision, r.Machine.GoVersion,
		r.Machine.OS, r.Machine.Arch, r.Machine.NumCPU, p.PayloadBytes, r.Seconds, map[bool]string{true: "  (quick)"}[p.Quick])
	if r.Machine.LoadAvgBefore != "" {
		fmt.Fprintf(w, "load average before %s, after %s (server, gateway and clients share this process)\n", r.Machine.LoadAvgBefore, r.Machine.LoadAvgAfter)
	}
	if len(r.Settings) > 0 {
		r.printSettings(w)
	}
	if r.Presence != nil {
		r.Presence.print(w, p)
	}
	if len(r.Unread) > 0 {
		printUnread(w, r.Unread)
	}
	if r.Archive != nil {
		r.Archive.print(w)
	}
	defer printTargets(w, r.Targets)
	for _, name := range scenarioNames() {
		if s := r.Scenarios[name]; s != nil {
			fmt.Fprintf(w, "\n%s (%.0f s)\n", name, s.Seconds)
			if s.Error != "" {
				fmt.Fprintf(w, "  error: %s\n", s.Error)
			}
			if s.Result != nil {
				s.Result.print(w)
			}
		}
	}
}

// print writes the archive phase, one figure a line.
func (a *archiveResult) print(w io.Writer) {
	fmt.Fprintf(w, "\narchive: ClickHouse %s, batches of %d rows\n", a.ClickHouse, a.BatchSize)
	if a.Error != "" {
		fmt.Fprintf(w, "archive error: %s\n", a.Error)
	}
	fmt.Fprintf(w, "  raw clickhouse-go batch insert   %10.0f rows/s (%d rows)\n", a.RawRowsPerSec, a.Rows)
	fmt.Fprintf(w, "  archiver, stream to ClickHouse   %10.0f rows/s  = %.2f of raw\n", a.ArchiverPerSec, a.ArchiverOver)
	fmt.Fprintf(w, "  raw JetStream consume, no acks   %10.0f msgs/s, %.1f µs CPU a message\n", a.ConsumeNone.PerSec, a.ConsumeNone.CPUMicros)
	fmt.Fprintf(w, "  raw JetStream consume, acked     %10.0f msgs/s, %.1f µs CPU a message\n", a.ConsumeAcked.PerSec, a.ConsumeAcked.CPUMicros)
	if a.RawRowsPerSec > 0 {
		fmt.Fprintf(w, "  archiver, into %d archived rows %8.0f rows/s  = %.2f of raw\n", a.HistoryRows, a.ArchiverLargePerSec,
			a.ArchiverLargePerSec/a.RawRowsPerSec)
	}
	fmt.Fprintf(w, "  lag at %d events/s (publish to acknowledged): p50 %.1f ms  p99 %.1f ms  max %.1f ms\n",
		a.LagRate, a.Lag.P50, a.Lag.P99, a.Lag.Max)
	fmt.Fprintf(w, "  history, newest 50 of a random conversation, %d rows in %d conversations: p50 %.1f ms  p99 %.1f ms  max %.1f ms (%d requests)\n",
		a.HistoryRows, a.HistoryConvs, a.History.P50, a.History.P99, a.History.Max, a.History.Count)
}

// printUnread writes the unread phase, one scenario a line.
func printUnread(w io.Writer, rs []unreadResult) {
	fmt.Fprintf(w, "\nunread: rebuilding the projection from the log, against a raw ordered consumer of the same stream\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tevents\traw events/s\tservice events/s\tservice/raw\tprojection ns/event\tprojection MB\t")
	for _, r := range rs {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\terror: %s\t\t\t\t\t\t\n", r.Name, r.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.2f\t%.0f\t%.1f\t\n", r.Name, r.Events, r.RawPerSec, r.ServicePerSec,
			r.ServiceOverRaw, r.ProjectionNsPer, float64(r.ProjectionBytes)/1e6)
	}
	tw.Flush()
}

// printSettings writes the raw and gateway phases: one column per durability setting.
func (r *report) printSettings(w io.Writer) {
	p := r.Params
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, cell func(s *settingResult) string) {
		fmt.Fprintf(tw, "%s\t", label)
		for i := range r.Settings {
			fmt.Fprintf(tw, "%s\t", cell(&r.Settings[i]))
		}
		fmt.Fprintln(tw)
	}
	row("", func(s *settingResult) string { return "fsync=" + onOff(s.Fsync) })
	for _, name := range rawNames(r.Settings) {
		row("raw "+rawLabel(r.Settings, name)+" msgs/s (server CPU/msg)", func(s *settingResult) string {
			if a := s.raw(name); a != nil && a.Error == "" {
				return fmt.Sprintf("%.0f (%.1f µs)", a.MsgsPerSec, a.ServerCPUPerMsgUs)
			}
			return "failed"
		})
	}
	load := func(title string, get func(*gatewayResult) *loadResult) {
		l := func(s *settingResult) *loadResult {
			if s.Gateway == nil {
				return nil
			}
			return get(s.Gateway)
		}
		cell := func(f func(*loadResult) string) func(*settingResult) string {
			return func(s *settingResult) string {
				if x := l(s); x != nil {
					return f(x)
				}
				return "-"
			}
		}
		row(title+" acked msgs/s", cell(func(x *loadResult) string { return fmt.Sprintf("%.0f", x.AckedPerSec) }))
		row("  delivered msgs/s", cell(func(x *loadResult) string { return fmt.Sprintf("%.0f", x.DeliveredPerSec) }))
		row("  send->ack p50 / p99 ms", cell(func(x *loadResult) string { return pair(x.SendToAck) }))
		row("  send->deliver p50 / p99 ms", cell(func(x *loadResult) string { return pair(x.SendToDeliver) }))
		row("  mean batch (events)", cell(func(x *loadResult) string { return fmt.Sprintf("%.1f", x.MeanBatch) }))
		row("  delivery catch-up after run s", cell(func(x *loadResult) string { return fmt.Sprintf("%.1f", x.CatchUpSeconds) }))
		row("  live feed lag mean ms", cell(func(x *loadResult) string { return fmt.Sprintf("%.1f", x.LiveLagMeanMs) }))
		row("  CPU cores: server / harness", cell(func(x *loadResult) string {
			return fmt.Sprintf("%.2f / %.2f", x.ServerCPUCores, x.HarnessCPUCores)
		}))
		row("  server CPU µs per message", cell(func(x *loadResult) string { return fmt.Sprintf("%.1f", x.ServerCPUPerMsgUs) }))
		row("  errors / undelivered", cell(func(x *loadResult) string {
			n := int64(0)
			for _, v := range x.Errors {
				n += v
			}
			return fmt.Sprintf("%d / %d", n, x.Undelivered)
		}))
	}
	load(fmt.Sprintf("gateway closed loop %dx%d", p.Senders, p.Window), func(g *gatewayResult) *loadResult { return g.Closed })
	row("gateway closed loop / raw async", func(s *settingResult) string { return fmt.Sprintf("%.2f", s.GatewayOverRawAsync) })
	for _, rate := range p.OpenRates {
		row(fmt.Sprintf("open loop %d/s: acked/s, deliver p50/p99/p99.9/max ms, server µs/msg", rate), func(s *settingResult) string {
			x := s.Gateway.open(float64(rate))
			if x == nil {
				return "-"
			}
			return fmt.Sprintf("%.0f  %.2f/%.2f/%.2f/%.1f  %.1f", x.AckedPerSec, x.SendToDeliver.P50, x.SendToDeliver.P99,
				x.SendToDeliver.P999, x.SendToDeliver.Max, x.ServerCPUPerMsgUs)
		})
		row("  rawhub, same rate", func(s *settingResult) string {
			x := s.Rawhub.step(float64(rate))
			if x == nil {
				return "-"
			}
			return fmt.Sprintf("%.0f  %.2f/%.2f/%.2f/%.1f  %.1f", x.DeliveredPerSec, x.SendToDeliver.P50, x.SendToDeliver.P99,
				x.SendToDeliver.P999, x.SendToDeliver.Max, x.ServerCPUPerMsgUs)
		})
	}
	row(fmt.Sprintf("highest sustained rate (p99 < %.0f ms) msgs/s", p.SustainedP99Ms), func(s *settingResult) string {
		return fmt.Sprintf("%.0f", s.sustainedRate())
	})
	row("  / raw async", func(s *settingResult) string { return fmt.Sprintf("%.2f", s.SustainedOverRawAsync) })
	tw.Flush()
	if r.GatewayFsyncOnOverRawFsyncOff > 0 {
		fmt.Fprintf(w, "\ngateway fsync=on / raw async fsync=off: closed loop %.2f, highest sustained %.2f\n",
			r.GatewayFsyncOnOverRawFsyncOff, r.SustainedFsyncOnOverRawFsyncOff)
	}
	for _, s := range r.Settings {
		for _, e := range s.Errors {
			fmt.Fprintf(w, "fsync=%s error: %s\n", onOff(s.Fsync), e)
		}
	}
}

func pair(l latency) string { return fmt.Sprintf("%.2f / %.2f", l.P50, l.P99) }

// rawNames lists the raw phases in the order they ran.
func rawNames(settings []settingResult) []string {
	seen := map[string]bool{}
	var names []string
	for _, s := range settings {
		for _, r := range s.Raw {
			if !seen[r.Name] {
				seen[r.Name] = true
				names = append(names, r.Name)
			}
		}
	}
	return names
}

func rawLabel(settings []settingResult, name string) string {
	for _, s := range settings {
		if r := s.raw(name); r != nil {
			if r.Mode == "async" {
				return fmt.Sprintf("async (window %d)", r.Window)
			}
			return fmt.Sprintf("batch %d (%d in flight)", r.BatchSize, r.Inflight)
		}
	}
	return name
}

// print writes the presence phase, one figure a line.
func (pr *presenceResult) print(w io.Writer, p params) {
	fmt.Fprintf(w, "\npresence: %d connections (%d users x %d), fresh nats-server fsync=%s, %s connections\n",
		pr.Conns, pr.Users, pr.ConnsPerUser, onOff(pr.Fsync), pr.Transport)
	fmt.Fprintf(w, "(%s)\n\n", pr.Note)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t"+format+"\t\n", append([]any{label}, args...)...)
	}
	if r := pr.RawKV; r != nil {
		v := "failed"
		if r.Error == "" {
			v = fmt.Sprintf("%.0f", r.MsgsPerSec)
		}
		row(fmt.Sprintf("raw KV put async (window %d) puts/s", r.Window), "%s", v)
	}
	if r := pr.RawKVSync; r != nil {
		v := "failed"
		if r.Error == "" {
			v = fmt.Sprintf("%.0f", r.MsgsPerSec)
		}
		row(fmt.Sprintf("raw KV put sync (%d at a time) puts/s", r.Inflight), "%s", v)
	}
	if c := pr.Connect; c != nil {
		row("connect: all connections recorded s", "%.1f", c.Seconds)
		row("  connects/s", "%.0f", c.ConnectsPerSec)
		row("  recompute mean ms", "%.2f", c.RecomputeMeanMs)
	}
	if a := pr.Absorb; a != nil {
		row(fmt.Sprintf("heartbeats absorbed/s (closed loop, backlog %d)", a.Backlog), "%.0f", a.EventsPerSec)
		row("  stored/s (connections bucket writes)", "%.0f", a.StoredPerSec)
		row("  / raw KV put async, sync", "%.2f, %.2f", pr.HeartbeatsOverRawKV, pr.HeartbeatsOverRawKVSync)
		row("  recomputes in window", "%d", a.Recomputes)
		row("  CPU cores used", "%.2f", a.CPUCores)
		row("  drain after run s", "%.2f", a.DrainSeconds)
	}
	if c := pr.CPU; c != nil {
		row(fmt.Sprintf("idle connections, heartbeat every %s: heartbeats/s", p.PresenceHeartbeat), "%.0f", c.HeartbeatsPerSec)
		row(fmt.Sprintf("  CPU cores idle / with heartbeats (%d x %s windows each)", c.Rounds, p.PresenceHeartbeat), "%.3f / %.3f", c.IdleCores, c.HeartbeatCores)
		row("  CPU ms per second per 1k connections", "%.2f", c.CPUMsPerSecPer1k)
		row("  % of one core per 1k connections", "%.3f", c.CorePctPer1k)
	}
	if c := pr.Checks; c != nil {
		row("live connections at end / status changes / invalid", "%d / %d / %d", c.LiveConns, c.StatusChanges, c.InvalidReports)
	}
	if s := pr.Service; s != nil {
		row("service warnings", "%d", s.Warnings)
	}
	tw.Flush()
	for _, e := range pr.Errors {
		fmt.Fprintf(w, "presence error: %s\n", e)
	}
}
