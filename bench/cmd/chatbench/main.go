// Command chatbench measures what the chat system's durable write path costs: raw JetStream
// publishing (the ceiling) against the gateway's acknowledged messages (the product), each with
// fsync on every write (the single-node default) and without it, in one run on one machine.
//
//	cd bench && go run ./cmd/chatbench -out results/$(date +%F).json   # full run, a few minutes
//	cd bench && go run ./cmd/chatbench -quick -out /tmp/bench.json     # about a minute
//
// Everything runs in this process on loopback: an embedded nats-server per durability setting
// (fresh store in a temporary directory), the gateway, and the WebSocket clients. The figures are
// therefore those of one machine shared by server and load, which is what a laptop install is.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/eventchat/chat/services/gateway/gatewaytest"
)

// params are the knobs of one run; -quick shortens every phase, nothing else.
type params struct {
	Quick bool `json:"quick"`

	// Raw phases: each publishes for RawDuration or RawMax messages, whichever comes first.
	RawDuration      time.Duration `json:"rawDurationNs"`
	RawMax           int           `json:"rawMax"`
	AsyncWindow      int           `json:"asyncWindow"`
	RawBatchSizes    []int         `json:"rawBatchSizes"`
	RawBatchInflight []int         `json:"rawBatchInflight"`

	// Gateway phases.
	Senders      int           `json:"senders"`
	Window       int           `json:"window"`
	Warmup       time.Duration `json:"warmupNs"`
	Measure      time.Duration `json:"measureNs"`
	OpenRate     int           `json:"openRate"`
	OpenDuration time.Duration `json:"openDurationNs"`
	DrainTimeout time.Duration `json:"drainTimeoutNs"`

	// Recorded for the reader of the results, not set by flags.
	PayloadBytes         int `json:"payloadBytes"`
	GatewayBatchMax      int `json:"gatewayBatchMax"`
	GatewayBatchInflight int `json:"gatewayBatchInflight"`
}

func defaultParams(quick bool) params {
	p := params{
		Quick: quick, RawDuration: 8 * time.Second, RawMax: 2_000_000, AsyncWindow: 256,
		RawBatchSizes: []int{100, 1000}, RawBatchInflight: []int{1, 2},
		Senders: 50, Window: 32, Warmup: 3 * time.Second, Measure: 20 * time.Second,
		OpenRate: 1000, OpenDuration: 15 * time.Second, DrainTimeout: 20 * time.Second,
	}
	if quick {
		p.RawDuration, p.Warmup, p.Measure, p.OpenDuration = 2500*time.Millisecond, time.Second, 6*time.Second, 5*time.Second
	}
	return p
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("chatbench: ")
	quick := flag.Bool("quick", false, "short phases (about a minute in all)")
	out := flag.String("out", "", "write the results as JSON to this file (its directory is created)")
	fsyncs := flag.String("fsync", "on,off", "durability settings to run: on, off or both (on,off)")
	senders := flag.Int("senders", 0, "sender WebSocket clients (0: default 50)")
	window := flag.Int("window", 0, "unacknowledged messages per sender in the closed loop (0: default 32)")
	openRate := flag.Int("open-rate", 0, "total messages/s of the open-loop run (0: default 1000)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of each closed-loop gateway run to <file>-fsync-<on|off>")
	flag.Parse()

	p := defaultParams(*quick)
	setIf(&p.Senders, *senders)
	setIf(&p.Window, *window)
	setIf(&p.OpenRate, *openRate)
	settings, err := parseFsync(*fsyncs)
	if err != nil {
		log.Fatal(err)
	}
	p.PayloadBytes = len(eventPayload(0, "x0", msgText(0, time.Now())))
	cfg := gatewaytest.TestConfig()
	p.GatewayBatchMax, p.GatewayBatchInflight = cfg.BatchMax, cfg.BatchInflight

	rep := newReport(p)
	for _, fsync := range settings {
		log.Printf("fsync=%s: starting", onOff(fsync))
		rep.Settings = append(rep.Settings, runSetting(p, fsync, profilePath(*cpuProfile, fsync)))
	}
	rep.finish()
	rep.print(os.Stdout)
	if *out != "" {
		if err := rep.write(*out); err != nil {
			log.Fatal(err)
		}
		log.Printf("wrote %s", *out)
	}
	if rep.failed() {
		os.Exit(1)
	}
}

func setIf(dst *int, v int) {
	if v > 0 {
		*dst = v
	}
}

func parseFsync(s string) ([]bool, error) {
	var out []bool
	for _, f := range strings.Split(s, ",") {
		switch strings.TrimSpace(f) {
		case "on":
			out = append(out, true)
		case "off":
			out = append(out, false)
		default:
			return nil, fmt.Errorf("-fsync: %q is neither on nor off", f)
		}
	}
	return out, nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func profilePath(base string, fsync bool) string {
	if base == "" {
		return ""
	}
	return base + "-fsync-" + onOff(fsync)
}

// runSetting runs every phase against a fresh nats-server with the given durability. A phase that
// fails is recorded with its error and the remaining phases still run.
func runSetting(p params, fsync bool, profile string) settingResult {
	res := settingResult{Fsync: fsync}
	dir, err := os.MkdirTemp("", "chatbench-")
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
		return res
	}
	defer os.RemoveAll(dir)
	ns, err := gatewaytest.StartNATS(filepath.Join(dir, "js"), fsync)
	if err != nil {
		res.Errors = append(res.Errors, "start nats-server: "+err.Error())
		return res
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()

	raw, err := runRaw(ns.ClientURL(), p)
	res.Raw = raw
	if err != nil {
		res.Errors = append(res.Errors, "raw: "+err.Error())
	}
	gw, err := runGateway(ns.ClientURL(), p, profiler(profile))
	res.Gateway = gw
	if err != nil {
		res.Errors = append(res.Errors, "gateway: "+err.Error())
	}
	for _, e := range res.Errors {
		log.Printf("fsync=%s: %s", onOff(fsync), e)
	}
	return res
}

// profiler returns start/stop hooks that CPU-profile one phase into path, or no-ops.
func profiler(path string) func() func() {
	if path == "" {
		return func() func() { return func() {} }
	}
	return func() func() {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			log.Printf("cpu profile: %v", errors.Join(err, closeNil(f)))
			return func() {}
		}
		return func() { pprof.StopCPUProfile(); _ = f.Close(); log.Printf("wrote CPU profile %s", path) }
	}
}

func closeNil(f *os.File) error {
	if f == nil {
		return nil
	}
	return f.Close()
}
