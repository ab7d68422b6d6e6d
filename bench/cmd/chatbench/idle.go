package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
)

// The idle scenario: what an open connection that does nothing costs the server. It opens
// thousands of WebSockets in steps, and after each step (the server settled, garbage collected,
// freed memory returned to the OS) reads the server's resident memory, heap, stacks and
// goroutines: memory against connections. Then it measures the server's CPU over an idle window
// with every connection open (pings, and in chatd the presence heartbeats), and reads the memory
// once more after it: the steady state, every connection pinged at least once in a full run (a
// goroutine's stack grows while it writes and may not shrink back). The per-connection figures
// are (that - the empty server) / connections. The same steps run against rawhub, the raw gorilla
// server with the library's default 4 KB buffers, in the same run.
//
// Both the clients' sockets (here) and the server's (in the child) count against the open files
// limit, which is raised as far as this process may: where the hard limit is lower than the
// connections asked for, fewer run, and the result says so.
//
// CHATBENCH_IDLE_PROFILE=<base> writes each server's CPU profile of the idle window to
// <base>-<server>-cpu.pprof, and its heap profile and goroutine stacks at the end to
// <base>-<server>-heap.pb.gz and <base>-<server>-goroutines.txt.

func init() {
	register(&scenario{name: "idle", order: 40, run: runIdle,
		doc: "idle connections: resident memory per connection (after GC) in steps up to 20k, and idle CPU, chatd against rawhub"})
}

// idleTargetKB is the target: resident memory per idle connection, after GC.
const idleTargetKB = 15

// idleParams size the scenario.
type idleParams struct {
	Conns      int           `json:"conns"`
	Steps      int           `json:"steps"` // connection steps after the empty one
	IdleWindow time.Duration `json:"-"`
	// SettleMax bounds the wait for the server to go quiet after a step.
	SettleMax time.Duration `json:"-"`
}

func idleDefaults(quick bool) idleParams {
	if quick {
		return idleParams{Conns: 5000, Steps: 2, IdleWindow: 6500 * time.Millisecond, SettleMax: 5 * time.Second}
	}
	return idleParams{Conns: 20_000, Steps: 4, IdleWindow: 30 * time.Second, SettleMax: 15 * time.Second}
}

// idleStep is one point of memory against connections, read after a GC.
type idleStep struct {
	Conns      int     `json:"conns"`
	RSS        int64   `json:"rss"`
	HeapInuse  int64   `json:"heapInuse"`
	StackInuse int64   `json:"stackInuse"`
	Goroutines int     `json:"goroutines"`
	SettleSecs float64 `json:"settleSeconds"` // how long the server took to go quiet
	// AfterIdle: read after the idle window (every connection pinged at least once in a full
	// run), not right after connecting.
	AfterIdle bool `json:"afterIdle,omitempty"`
}

// idleServer is what one server measured.
type idleServer struct {
	Server         string     `json:"server"`
	Steps          []idleStep `json:"steps"`
	ConnectSeconds float64    `json:"connectSeconds"` // dialling every step, in all
	// Per connection after the idle window (the steady state), against the empty server:
	// resident memory, heap and stacks in KB, goroutines; and the resident memory right after
	// connecting (the last step).
	RSSPerConnKB          float64 `json:"rssPerConnKB"`
	RSSPerConnConnectedKB float64 `json:"rssPerConnConnectedKB"`
	HeapPerConnKB         float64 `json:"heapPerConnKB"`
	StackPerConnKB        float64 `json:"stackPerConnKB"`
	GoroutinesPerConn     float64 `json:"goroutinesPerConn"`
	IdleWindowSecs        float64 `json:"idleWindowSeconds"`
	IdleCores             float64 `json:"idleCores"`
	IdleMicrosPerConn     float64 `json:"idleMicrosPerSecPerConn"` // CPU µs per second per connection
	IdleCorePctPer1k      float64 `json:"idleCorePctPer1k"`        // % of one core per 1k connections
	FramesReceived        int64   `json:"framesReceived"`          // data frames the idle clients got
	Dropped               int     `json:"dropped"`                 // clients the server closed
	DroppedFirstReason    string  `json:"droppedFirstReason,omitempty"`
}

// idleResult is the scenario's result.
type idleResult struct {
	Params         idleParams  `json:"params"`
	Chat           *idleServer `json:"chat,omitempty"`
	Raw            *idleServer `json:"raw,omitempty"`
	RSSChatOverRaw float64     `json:"rssChatOverRaw,omitempty"`
	CPUChatOverRaw float64     `json:"cpuChatOverRaw,omitempty"`
	TargetKB       float64     `json:"targetKB"`
	MetTarget      bool        `json:"metTarget"`
	Note           string      `json:"note,omitempty"` // why fewer connections than asked
	Errors         []string    `json:"errors,omitempty"`
}

func (r *idleResult) failed() bool {
	return len(r.Errors) > 0 || (r.Chat != nil && r.Chat.Dropped > 0) || (r.Raw != nil && r.Raw.Dropped > 0)
}

func (r *idleResult) targets() []target {
	const name = "4. 20k idle connections: resident memory per connection, after GC"
	goal := fmt.Sprintf("≤ %d KB", idleTargetKB)
	if r.Chat == nil || r.Chat.RSSPerConnKB == 0 {
		return []target{missing(40, name, goal)}
	}
	measured := fmt.Sprintf("%.1f KB (%.1f right after connecting; raw gorilla %.1f KB); idle CPU %.1f µs/s per connection",
		r.Chat.RSSPerConnKB, r.Chat.RSSPerConnConnectedKB, r.rawKB(), r.Chat.IdleMicrosPerConn)
	if r.Params.Conns != 20_000 {
		measured += fmt.Sprintf("; %s connections", thousands(r.Params.Conns))
	}
	return []target{{Order: 40, Name: name, Goal: goal, Measured: measured, Met: r.MetTarget}}
}

func (r *idleResult) rawKB() float64 {
	if r.Raw == nil {
		return 0
	}
	return r.Raw.RSSPerConnKB
}

func runIdle(quick bool) (scenarioResult, error) {
	p := idleDefaults(quick)
	res := &idleResult{Params: p, TargetKB: idleTargetKB}
	// The clients' sockets are in this process and the server's in the child: each needs about
	// p.Conns files.
	limit, err := raiseNoFile(uint64(p.Conns + fdMargin))
	if err != nil {
		return res, err
	}
	if n := int(limit) - fdMargin; n < p.Conns {
		res.Note = fmt.Sprintf("%d connections, not %d: the open files limit is %d here (raising it needs privilege)", n, p.Conns, limit)
		logf("idle: %s", res.Note)
		p.Conns = n
		res.Params = p
	}
	m, err := newMinter()
	if err != nil {
		return res, err
	}
	// The chat clients' tokens, minted before anything is measured.
	tokens := make([]string, p.Conns)
	for i := range tokens {
		if tokens[i], err = m.token(fmt.Sprintf("idle%05d", i)); err != nil {
			return res, err
		}
	}

	logf("idle: rawhub, %d connections in %d steps", p.Conns, p.Steps)
	raw, err := startRawhub()
	if err != nil {
		return res, err
	}
	res.Raw, err = measureIdle(raw, p, func(ctx context.Context, i int) (*websocket.Conn, error) {
		return dialHub(ctx, raw.URL, fmt.Sprintf("idle%05d", i), i) // a room each: nothing is shared
	})
	raw.stop()
	if err != nil {
		res.Errors = append(res.Errors, "rawhub: "+err.Error())
	}

	logf("idle: chatd, %d connections in %d steps", p.Conns, p.Steps)
	// The production default send queue, not the benchmark's deeper one: it is per session.
	chat, err := startChatd(chatdOptions{Env: []string{"CHAT_SEND_QUEUE=1024"}})
	if err != nil {
		return res, err
	}
	res.Chat, err = measureIdle(chat, p, func(ctx context.Context, i int) (*websocket.Conn, error) {
		return dialChat(ctx, chat.URL, tokens[i], i)
	})
	chat.stop()
	if err != nil {
		res.Errors = append(res.Errors, "chatd: "+err.Error())
	}
	if res.Chat != nil && res.Raw != nil {
		res.RSSChatOverRaw = ratio(res.Chat.RSSPerConnKB, res.Raw.RSSPerConnKB)
		res.CPUChatOverRaw = ratio(res.Chat.IdleMicrosPerConn, res.Raw.IdleMicrosPerConn)
		res.MetTarget = res.Chat.RSSPerConnKB > 0 && res.Chat.RSSPerConnKB <= idleTargetKB
	}
	return res, nil
}

// idleConn is one idle client: its reader answers the server's pings (gorilla's default ping
// handler, run while reading) and discards anything else.
type idleConn struct {
	conn   *websocket.Conn
	done   chan struct{}
	closed atomic.Bool // closed by us: its reader's end is not a drop
}

// idleClients are the clients of one server.
type idleClients struct {
	mu      sync.Mutex
	conns   []*idleConn
	frames  atomic.Int64
	dropped atomic.Int64
	reason  atomic.Value // the first drop's error
}

func (cs *idleClients) add(c *websocket.Conn) {
	ic := &idleConn{conn: c, done: make(chan struct{})}
	cs.mu.Lock()
	cs.conns = append(cs.conns, ic)
	cs.mu.Unlock()
	go func() {
		defer close(ic.done)
		for {
			_, r, err := c.NextReader()
			if err != nil {
				if !ic.closed.Load() {
					cs.dropped.Add(1)
					cs.reason.CompareAndSwap(nil, err.Error())
				}
				return
			}
			cs.frames.Add(1)
			_, _ = io.Copy(io.Discard, r)
		}
	}()
}

// closeAll closes every client's socket and waits for the readers.
func (cs *idleClients) closeAll() {
	cs.mu.Lock()
	conns := cs.conns
	cs.conns = nil
	cs.mu.Unlock()
	for _, ic := range conns {
		ic.closed.Store(true)
		_ = ic.conn.Close()
	}
	for _, ic := range conns {
		<-ic.done
	}
}

// measureIdle connects p.Conns clients to c in steps, reading memory after each, then measures
// the CPU of the idle window.
func measureIdle(c *child, p idleParams, dial func(ctx context.Context, i int) (*websocket.Conn, error)) (*idleServer, error) {
	out := &idleServer{Server: c.name}
	cs := &idleClients{}
	defer cs.closeAll()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	point := func(n int, afterIdle bool) error {
		settled := settle(c, p.SettleMax)
		st, rss, err := c.gc(ctx)
		if err != nil {
			return fmt.Errorf("gc at %d connections: %w", n, err)
		}
		out.Steps = append(out.Steps, idleStep{Conns: n, RSS: rss, HeapInuse: st.HeapInuse, StackInuse: st.StackInuse,
			Goroutines: st.Goroutines, SettleSecs: settled.Seconds(), AfterIdle: afterIdle})
		logf("idle: %s %6d connections: RSS %6.1f MB  heap %6.1f MB  stacks %5.1f MB  %6d goroutines (settled in %.1f s)",
			c.name, n, idleMB(rss), idleMB(st.HeapInuse), idleMB(st.StackInuse), st.Goroutines, settled.Seconds())
		return nil
	}
	if err := point(0, false); err != nil {
		return out, err
	}
	connected := 0
	var dialTime time.Duration
	for step := 1; step <= p.Steps; step++ {
		upto := p.Conns * step / p.Steps
		t0 := time.Now()
		err := parallel(upto-connected, 64, func(k int) error {
			i := connected + k
			conn, err := dial(ctx, i)
			if err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
			cs.add(conn)
			return nil
		})
		dialTime += time.Since(t0)
		if err != nil {
			return out, err
		}
		connected = upto
		if err := point(connected, false); err != nil {
			return out, err
		}
	}
	out.ConnectSeconds = dialTime.Seconds()

	// The idle window: every connection open, nothing sent.
	var stopProfile func()
	if base := os.Getenv("CHATBENCH_IDLE_PROFILE"); base != "" {
		stopProfile = childProfiler(c, base+"-"+c.name+"-cpu.pprof", p.IdleWindow)()
	}
	meter := meterCPU(c)
	t0 := time.Now()
	select {
	case <-time.After(p.IdleWindow):
	case <-ctx.Done():
		return out, ctx.Err()
	}
	used, cores := meter.stop()
	out.IdleWindowSecs = time.Since(t0).Seconds()
	if stopProfile != nil {
		stopProfile()
	}
	out.IdleCores = cores
	n := float64(connected)
	out.IdleMicrosPerConn = float64(used.Microseconds()) / out.IdleWindowSecs / n
	out.IdleCorePctPer1k = cores * 100 / n * 1000

	connectedStep := out.Steps[len(out.Steps)-1]
	if err := point(connected, true); err != nil {
		return out, err
	}
	if base := os.Getenv("CHATBENCH_IDLE_PROFILE"); base != "" {
		// Where the memory goes: the heap (after the GC above) and every goroutine's stack.
		saveChildProfile(ctx, c, "heap", base+"-"+c.name+"-heap.pb.gz")
		saveChildProfile(ctx, c, "goroutine?debug=1", base+"-"+c.name+"-goroutines.txt")
	}
	first, last := out.Steps[0], out.Steps[len(out.Steps)-1]
	out.RSSPerConnKB = float64(last.RSS-first.RSS) / n / 1024
	out.RSSPerConnConnectedKB = float64(connectedStep.RSS-first.RSS) / n / 1024
	out.HeapPerConnKB = float64(last.HeapInuse-first.HeapInuse) / n / 1024
	out.StackPerConnKB = float64(last.StackInuse-first.StackInuse) / n / 1024
	out.GoroutinesPerConn = float64(last.Goroutines-first.Goroutines) / n
	out.FramesReceived = cs.frames.Load()
	out.Dropped = int(cs.dropped.Load())
	if r, ok := cs.reason.Load().(string); ok {
		out.DroppedFirstReason = r
	}
	logf("idle: %s %.1f KB per connection after the idle window (heap %.1f, stacks %.1f; %.1f right after connecting), %.2f goroutines; idle CPU %.3f cores = %.1f µs/s per connection",
		c.name, out.RSSPerConnKB, out.HeapPerConnKB, out.StackPerConnKB, out.RSSPerConnConnectedKB, out.GoroutinesPerConn, cores, out.IdleMicrosPerConn)
	if out.Dropped > 0 {
		return out, fmt.Errorf("%d clients dropped by the server (first: %s)", out.Dropped, out.DroppedFirstReason)
	}
	return out, nil
}

// settle waits until the child is quiet, and returns how long that took: under 5% of a core
// over a second, or two seconds in a row within 20% of each other under half a core (the floor
// of the connections' own keepalive and presence heartbeats), or max has passed.
func settle(c *child, max time.Duration) time.Duration {
	t0 := time.Now()
	prev := -1.0
	for time.Since(t0) < max {
		m := meterCPU(c)
		time.Sleep(time.Second)
		_, cores := m.stop()
		if cores < 0.05 || (prev >= 0 && cores < 0.5 && cores <= prev*1.2 && cores >= prev*0.8) {
			break
		}
		prev = cores
	}
	return time.Since(t0)
}

// raiseNoFile tries to let this process (and the servers it starts, which inherit the limit)
// open want files: thousands of sockets need more than the usual soft limit. Raising the hard
// limit needs privilege (CAP_SYS_RESOURCE); without it the soft limit goes up to the hard one. It
// returns the limit in force.
func raiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	raised := syscall.Rlimit{Cur: want, Max: max(lim.Max, want)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
		return want, nil
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("raise the open files limit: %w", err)
	}
	return lim.Cur, nil
}

// fdMargin are the files a process needs besides its clients' sockets (chatd: the NATS
// connections, the store's files, listeners).
const fdMargin = 1000

// saveChildProfile writes one of the child's profiles (a /debug/pprof/ path) to path.
func saveChildProfile(ctx context.Context, c *child, profile, path string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.DebugURL+"/debug/pprof/"+profile, nil)
	if err != nil {
		logf("%s profile: %v", profile, err)
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		logf("%s profile: %v", profile, err)
		return
	}
	defer resp.Body.Close()
	f := create(path)
	if f == nil {
		return
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		logf("%s profile: %v", profile, err)
	}
	closeLogged(f)
}

func idleMB(b int64) float64 { return float64(b) / (1 << 20) }

func (r *idleResult) print(w io.Writer) {
	fmt.Fprintf(w, "  %d idle connections in %d steps; memory after GC and FreeOSMemory; idle CPU over %s\n",
		r.Params.Conns, r.Params.Steps, r.Params.IdleWindow)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tconns\tRSS MB\theap MB\tstacks MB\tgoroutines\tsettle s\t\t")
	for _, s := range []*idleServer{r.Chat, r.Raw} {
		if s == nil {
			continue
		}
		for _, st := range s.Steps {
			when := ""
			if st.AfterIdle {
				when = "after the idle window"
			}
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%d\t%.1f\t%s\t\n", s.Server, st.Conns, idleMB(st.RSS), idleMB(st.HeapInuse),
				idleMB(st.StackInuse), st.Goroutines, st.SettleSecs, when)
		}
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tKB/conn RSS\theap\tstacks\tRSS right after connecting\tgoroutines/conn\tidle cores\tµs/s per conn\t% core per 1k\tdropped\t")
	for _, s := range []*idleServer{r.Chat, r.Raw} {
		if s == nil {
			continue
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%.3f\t%.2f\t%.2f\t%d\t\n", s.Server, s.RSSPerConnKB, s.HeapPerConnKB,
			s.StackPerConnKB, s.RSSPerConnConnectedKB, s.GoroutinesPerConn, s.IdleCores, s.IdleMicrosPerConn, s.IdleCorePctPer1k, s.Dropped)
	}
	tw.Flush()
	if r.Note != "" {
		fmt.Fprintf(w, "  note: %s\n", r.Note)
	}
	verdict := "missed"
	if r.MetTarget {
		verdict = "met"
	}
	fmt.Fprintf(w, "  chat/raw: memory %.2f, idle CPU %.2f; target at most %.0f KB per connection: %s\n",
		r.RSSChatOverRaw, r.CPUChatOverRaw, r.TargetKB, verdict)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
}
