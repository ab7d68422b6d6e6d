// Command chatbench measures what the chat system's durable write path costs: raw JetStream
// publishing (the ceiling) against the gateway's acknowledged messages (the product), each with
// fsync on every write (the single-node default) and without it, in one run on one machine; and
// what the presence service costs: the heartbeats it absorbs against raw KV puts, and the CPU of
// idle connections (on its own fresh nats-server, fsync on).
//
//	cd bench && go run ./cmd/chatbench -out results/$(date +%F).json   # full run, about 5 minutes
//	cd bench && go run ./cmd/chatbench -quick -out /tmp/bench.json     # about a minute and a half
//	cd bench && go run ./cmd/chatbench -only-presence -quick            # the presence phase alone
//
// Everything runs in this process on loopback: an embedded nats-server per durability setting
// (fresh store in a temporary directory), the gateway, and the WebSocket clients. The figures are
// therefore those of one machine shared by server and load, which is what a laptop install is.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eventchat/chat/schemas"
)

// params are the knobs of one run; -quick shortens every phase, nothing else.
type params struct {
	Quick bool `json:"quick"`
	// Which parts run (flags -raw, -gateway, -presence, -only-presence): a partial run is for
	// experiments, not for results.
	Raw      bool `json:"raw"`
	Gateway  bool `json:"gateway"`
	Presence bool `json:"presence"`

	// Raw phases: each publishes for RawDuration or RawMax messages, whichever comes first.
	RawDuration      time.Duration `json:"-"`
	RawMax           int           `json:"rawMax"`
	AsyncWindow      int           `json:"asyncWindow"`
	RawBatchSizes    []int         `json:"rawBatchSizes"`
	RawBatchInflight []int         `json:"rawBatchInflight"`

	// Gateway phases.
	Senders int           `json:"senders"`
	Window  int           `json:"window"`
	Warmup  time.Duration `json:"-"`
	Measure time.Duration `json:"-"`
	// The open-loop ladder: total messages/s offered, step by step, each OpenWarmup then
	// OpenDuration measured; a step holds when its send-to-deliver p99 is under SustainedP99Ms.
	OpenRates    []int         `json:"openRates"`
	OpenWindow   int           `json:"openWindow"`
	OpenWarmup   time.Duration `json:"-"`
	OpenDuration time.Duration `json:"-"`
	// DMDuration is the measured time of the steps at target 1's rates (up to DMMaxRate): a
	// p99 over 5 s moves with one or two 20 ms stalls of this shared machine, so those steps
	// measure longer.
	DMDuration     time.Duration `json:"-"`
	DMMaxRate      int           `json:"dmMaxRate"`
	SustainedP99Ms float64       `json:"sustainedP99Ms"`
	DrainTimeout   time.Duration `json:"-"`
	// The gateway's group commit: events per batch and batches in flight (0: its defaults).
	GatewayBatchMax      int `json:"gatewayBatchMax"`
	GatewayBatchInflight int `json:"gatewayBatchInflight"`
	// ChatdEnv is more environment for the chatd of the gateway phases (KEY=VALUE), for
	// experiments with its settings; recorded in the results.
	ChatdEnv []string `json:"chatdEnv,omitempty"`

	// PayloadBytes is the size of one stored event, recorded for the reader of the results.
	PayloadBytes int `json:"payloadBytes"`

	// Presence phase: PresenceUsers x PresenceConnsPerUser sessions. The raw KV baseline runs for
	// PresenceRawDuration (RawMax and AsyncWindow as the raw phases). The closed loop of heartbeats keeps at most
	// PresenceBacklog unread by the service and is measured for PresenceMeasure after
	// PresenceWarmup; the CPU of idle connections is measured over about PresenceCPUWindow of idle
	// windows and as much of heartbeat windows (every connection heartbeated once per
	// PresenceHeartbeat), alternating, each one PresenceHeartbeat long.
	PresenceUsers        int           `json:"presenceUsers"`
	PresenceConnsPerUser int           `json:"presenceConnsPerUser"`
	PresenceBacklog      int           `json:"presenceBacklog"`
	PresenceRawDuration  time.Duration `json:"-"`
	PresenceWarmup       time.Duration `json:"-"`
	PresenceMeasure      time.Duration `json:"-"`
	PresenceCPUWindow    time.Duration `json:"-"`
	PresenceHeartbeat    time.Duration `json:"-"`

	// Unread phase (flag -unread): messages of each scenario's generated log.
	Unread         bool `json:"unread"`
	UnreadMessages int  `json:"unreadMessages"`

	// Archive phase (flag -archive): rows drained, the lag run's rate and length, the rows and
	// conversations of the history archive and the requests timed.
	Archive            bool          `json:"archive"`
	ArchiveRows        int           `json:"archiveRows"`
	ArchiveLagRate     int           `json:"archiveLagRate"`
	ArchiveLagDuration time.Duration `json:"-"`
	HistoryRows        int           `json:"historyRows"`
	HistoryConvs       int           `json:"historyConvs"`
	HistoryRequests    int           `json:"historyRequests"`
}

// MarshalJSON writes the durations as Go duration strings ("20s"), for people to read.
func (p params) MarshalJSON() ([]byte, error) {
	type plain params
	return json.Marshal(struct {
		plain
		RawDuration  string `json:"rawDuration"`
		Warmup       string `json:"warmup"`
		Measure      string `json:"measure"`
		OpenDuration string `json:"openDuration"`
		DMDuration   string `json:"dmDuration"`
		DrainTimeout string `json:"drainTimeout"`
		PRaw         string `json:"presenceRawDuration"`
		PWarmup      string `json:"presenceWarmup"`
		PMeasure     string `json:"presenceMeasure"`
		PCPUWindow   string `json:"presenceCPUWindow"`
		PHeartbeat   string `json:"presenceHeartbeat"`
	}{plain(p), p.RawDuration.String(), p.Warmup.String(), p.Measure.String(), p.OpenDuration.String(),
		p.DMDuration.String(), p.DrainTimeout.String(), p.PresenceRawDuration.String(), p.PresenceWarmup.String(), p.PresenceMeasure.String(),
		p.PresenceCPUWindow.String(), p.PresenceHeartbeat.String()})
}

// stepDuration is the measured time of an open-loop step at rate messages/s.
func (p params) stepDuration(rate float64) time.Duration {
	if rate <= float64(p.DMMaxRate) {
		return max(p.DMDuration, p.OpenDuration)
	}
	return p.OpenDuration
}

func defaultParams(quick bool) params {
	p := params{
		Quick: quick, Raw: true, Gateway: true, Presence: true, RawDuration: 6 * time.Second, RawMax: 2_000_000, AsyncWindow: 256,
		RawBatchSizes: []int{1000}, RawBatchInflight: []int{2},
		Senders: 50, Window: 128, Warmup: 2 * time.Second, Measure: 10 * time.Second,
		OpenRates: []int{1000, 2000, 5000, 10_000, 15_000, 20_000, 30_000, 40_000, 50_000, 60_000, 80_000}, OpenWindow: 4096,
		OpenWarmup: time.Second, OpenDuration: 5 * time.Second, SustainedP99Ms: 50,
		DMDuration: 15 * time.Second, DMMaxRate: 5000, DrainTimeout: 60 * time.Second,
		PresenceUsers: 10_000, PresenceConnsPerUser: 2, PresenceBacklog: 8192, PresenceRawDuration: 3 * time.Second,
		PresenceWarmup: 2 * time.Second, PresenceMeasure: 8 * time.Second, PresenceCPUWindow: 18 * time.Second,
		PresenceHeartbeat: schemas.PresenceHeartbeat,
		Unread:            true, UnreadMessages: 100_000,
		Archive: true, ArchiveRows: 500_000, ArchiveLagRate: 5000, ArchiveLagDuration: 10 * time.Second,
		HistoryRows: 10_000_000, HistoryConvs: 10_000, HistoryRequests: 2000,
	}
	if quick {
		p.RawDuration, p.Warmup, p.Measure, p.OpenDuration = 2500*time.Millisecond, time.Second, 4*time.Second, 2*time.Second
		p.DMDuration = p.OpenDuration
		p.RawBatchSizes = nil // the async baseline only
		p.OpenRates = []int{1000, 5000, 20_000}
		p.DrainTimeout = 30 * time.Second
		// Fewer sessions: connecting 20,000 takes 30-70 s on 2 CPUs (each connect's recompute lists
		// the user's connections with a consumer whose cost grows with the bucket).
		p.PresenceUsers, p.PresenceRawDuration = 2500, 1500*time.Millisecond
		p.PresenceWarmup, p.PresenceMeasure, p.PresenceCPUWindow = time.Second, 4*time.Second, 8*time.Second
		p.UnreadMessages = 30_000
		p.ArchiveRows, p.ArchiveLagDuration, p.HistoryRows, p.HistoryConvs, p.HistoryRequests = 100_000, 3*time.Second, 500_000, 1000, 300
	}
	return p
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("chatbench: ")
	quick := flag.Bool("quick", false, "short phases (about a minute in all)")
	out := flag.String("out", "", "write the results as JSON to this file (its directory is created)")
	plots := flag.String("plots", "", "draw the plots (PNG) into this directory")
	fsyncs := flag.String("fsync", "on,off", "durability settings to run: on, off or both (on,off)")
	senders := flag.Int("senders", 0, "sender WebSocket clients (0: default 50)")
	window := flag.Int("window", 0, "unacknowledged messages per sender in the closed loop (0: default 128)")
	openRates := flag.String("open-rates", "", "the open-loop ladder: total messages/s, comma-separated (default 1000,2000,5000,...,80000)")
	batchMax := flag.Int("gateway-batch-max", 0, "the gateway's group-commit batch size (0: its default)")
	chatdEnv := flag.String("chatd-env", "", "more environment for the chatd of the gateway phases: KEY=VALUE pairs, comma-separated (e.g. GOGC=200)")
	batchInflight := flag.Int("gateway-batch-inflight", 0, "the gateway's group-commit batches in flight (0: its default)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of chatd over each closed-loop gateway window to <file>-fsync-<on|off>, and of the presence connects and heartbeat window to <file>-presence-<connect|heartbeats>, and of the archiver draining the stream to <file>-archive-drain")
	execTrace := flag.String("trace", "", "write an execution trace of the presence connects and heartbeat window to <file>-presence-<connect|heartbeats>")
	rawOn := flag.Bool("raw", true, "run the raw JetStream phases")
	gatewayOn := flag.Bool("gateway", true, "run the gateway phases")
	presenceOn := flag.Bool("presence", true, "run the presence phase (its own nats-server, fsync on)")
	onlyPresence := flag.Bool("only-presence", false, "run only the presence phase (as -raw=false -gateway=false -unread=false)")
	unreadOn := flag.Bool("unread", true, "run the unread phase (a fresh nats-server per scenario, fsync off)")
	onlyUnread := flag.Bool("only-unread", false, "run only the unread phase")
	archiveOn := flag.Bool("archive", true, "run the archive phase (a local ClickHouse from the installed binary)")
	onlyArchive := flag.Bool("only-archive", false, "run only the archive phase")
	presenceUsers := flag.Int("presence-users", 0, "presence phase: simulated users (0: default 10000, 2500 with -quick)")
	scenarioSpec := flag.String("scenarios", "all", "scenarios on child-process servers to run: all, none, or a comma-separated list of "+strings.Join(scenarioNames(), ", "))
	onlyScenarios := flag.Bool("only-scenarios", false, "run only the -scenarios (no raw, gateway, presence, unread or archive phase)")
	presenceConns := flag.Int("presence-conns-per-user", 0, "presence phase: connections per user (0: default 2)")
	flag.Parse()
	// gatewaytest's account helpers use the default client: give every request a deadline.
	http.DefaultClient.Timeout = 30 * time.Second

	p := defaultParams(*quick)
	p.Raw, p.Gateway, p.Presence, p.Unread, p.Archive = *rawOn, *gatewayOn, *presenceOn, *unreadOn, *archiveOn
	if *onlyPresence {
		p.Raw, p.Gateway, p.Presence, p.Unread, p.Archive = false, false, true, false, false
	}
	if *onlyUnread {
		p.Raw, p.Gateway, p.Presence, p.Unread, p.Archive = false, false, false, true, false
	}
	if *onlyArchive {
		p.Raw, p.Gateway, p.Presence, p.Unread, p.Archive = false, false, false, false, true
	}
	if *onlyScenarios {
		p.Raw, p.Gateway, p.Presence, p.Unread, p.Archive = false, false, false, false, false
	}
	spec := *scenarioSpec
	if *onlyPresence || *onlyUnread || *onlyArchive {
		spec = "none" // an -only-<phase> run is that phase alone
	}
	selected, err := selectScenarios(spec)
	if err != nil {
		log.Fatal(err)
	}
	setIf(&p.PresenceUsers, *presenceUsers)
	setIf(&p.PresenceConnsPerUser, *presenceConns)
	setIf(&p.Senders, *senders)
	setIf(&p.Window, *window)
	if *openRates != "" {
		if p.OpenRates, err = parseInts(*openRates); err != nil {
			log.Fatalf("-open-rates: %v", err)
		}
	}
	setIf(&p.GatewayBatchMax, *batchMax)
	setIf(&p.GatewayBatchInflight, *batchInflight)
	for kv := range strings.SplitSeq(*chatdEnv, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			log.Fatalf("-chatd-env: %q is not KEY=VALUE", kv)
		}
		p.ChatdEnv = append(p.ChatdEnv, kv)
	}
	settings, err := parseFsync(*fsyncs)
	if err != nil {
		log.Fatal(err)
	}
	p.PayloadBytes = len(eventPayload(0, "x0", msgText(0, time.Now())))

	rep := newReport(p)
	for _, fsync := range settings {
		if !p.Raw && !p.Gateway {
			break
		}
		log.Printf("fsync=%s: starting", onOff(fsync))
		rep.Settings = append(rep.Settings, runSetting(p, fsync, *cpuProfile))
	}
	if p.Presence {
		log.Printf("presence: starting (fresh nats-server, fsync=on)")
		rep.Presence = runPresence(p, func(name string) func() func() {
			return namedProfiler(*cpuProfile, *execTrace, "presence-"+name)
		})
	}
	if p.Unread {
		log.Printf("unread: starting")
		rep.Unread = runUnread(p)
	}
	if p.Archive {
		log.Printf("archive: starting")
		rep.Archive = runArchive(p, func(name string) func() func() {
			return namedProfiler(*cpuProfile, *execTrace, name)
		})
	}
	for _, sc := range selected {
		log.Printf("%s: starting", sc.name)
		start := time.Now()
		res, err := sc.run(*quick)
		run := &scenarioRun{Seconds: time.Since(start).Seconds(), Result: res}
		if err != nil {
			run.Error = err.Error()
			log.Printf("%s: %v", sc.name, err)
		}
		rep.Scenarios[sc.name] = run
	}
	rep.finish()
	rep.print(os.Stdout)
	if *out != "" {
		if err := rep.write(*out); err != nil {
			log.Fatal(err)
		}
		log.Printf("wrote %s", *out)
	}
	if *plots != "" {
		if err := writeFigures(rep, *plots); err != nil {
			log.Fatal(err)
		}
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

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
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

// runSetting runs the raw and gateway phases against a fresh chatd child with the given
// durability: the raw phases publish to its embedded nats-server (a stream of their own), the
// gateway phases go through its WebSocket gateway. A phase that fails is recorded with its error
// and the remaining phases still run.
func runSetting(p params, fsync bool, cpuProfile string) settingResult {
	res := settingResult{Fsync: fsync}
	env := slices.Clone(p.ChatdEnv)
	if p.GatewayBatchMax > 0 {
		env = append(env, "CHAT_BATCH_MAX="+strconv.Itoa(p.GatewayBatchMax))
	}
	if p.GatewayBatchInflight > 0 {
		env = append(env, "CHAT_BATCH_INFLIGHT="+strconv.Itoa(p.GatewayBatchInflight))
	}
	srv, err := startChatd(chatdOptions{Fsync: fsync, Env: env})
	if err != nil {
		res.Errors = append(res.Errors, "start chatd: "+err.Error())
		return res
	}
	defer srv.stop()

	if p.Raw {
		raw, err := runRaw(srv, p)
		res.Raw = raw
		if err != nil {
			res.Errors = append(res.Errors, "raw: "+err.Error())
		}
	}
	if p.Gateway {
		gw, err := runGateway(srv, p, childProfiler(srv, suffixed(cpuProfile, "fsync-"+onOff(fsync)), p.Measure))
		res.Gateway = gw
		if err != nil {
			res.Errors = append(res.Errors, "gateway: "+err.Error())
		}
	}
	if p.Raw && p.Gateway && !fsync {
		hub, err := runHubLadder(p)
		res.Rawhub = hub
		if err != nil {
			res.Errors = append(res.Errors, "rawhub: "+err.Error())
		}
	}
	for _, e := range res.Errors {
		log.Printf("fsync=%s: %s", onOff(fsync), e)
	}
	return res
}
