package main

import (
	"context"
	"encoding/json"

	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/eventchat/chat/schemas"
	"github.com/gorilla/websocket"
)

// The raw baseline of the direct-message ladder: the same senders, receivers, frames and fixed
// rates against rawhub, a WebSocket relay that stores nothing (each pair in a room of its own).
// It is the floor of what any WebSocket server can do in this harness on this machine.

// hubStep is one rate of the raw ladder.
type hubStep struct {
	TargetRate      float64 `json:"targetRate"`
	Sent            int64   `json:"sent"`
	DeliveredPerSec float64 `json:"deliveredPerSec"`
	Lost            int64   `json:"lost"` // sent but never delivered (rawhub drops slow clients)
	SendToDeliver   latency `json:"sendToDeliverMs"`
	ServerCPUCores  float64 `json:"serverCpuCores"`
	// ServerCPUPerMsgUs is rawhub's CPU time per message in the window (relaying it to the
	// receiver and echoing it to the sender).
	ServerCPUPerMsgUs float64 `json:"serverCpuPerMsgUs"`
	Error             string  `json:"error,omitempty"`
}

// hubLadder is the raw ladder: steps up to the first that did not hold.
type hubLadder struct {
	Pairs        int        `json:"pairs"`
	Steps        []*hubStep `json:"steps"`
	MaxSustained *hubStep   `json:"maxSustained,omitempty"`
}

func (l *hubLadder) step(rate float64) *hubStep {
	if l == nil {
		return nil
	}
	for _, s := range l.Steps {
		if s.TargetRate == rate {
			return s
		}
	}
	return nil
}

// runHubLadder runs the open-loop ladder of p.OpenRates against a fresh rawhub.
func runHubLadder(p params) (*hubLadder, error) {
	hub, err := startRawhub()
	if err != nil {
		return nil, err
	}
	defer hub.stop()
	res := &hubLadder{Pairs: p.Senders}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	var senders, receivers []*websocket.Conn
	defer func() {
		for _, c := range append(senders, receivers...) {
			c.Close()
		}
	}()
	for i := range p.Senders {
		r, err := dialHub(ctx, hub.URL, "dm"+strconv.Itoa(i), 2*i)
		if err != nil {
			cancel()
			return res, err
		}
		receivers = append(receivers, r)
		s, err := dialHub(ctx, hub.URL, "dm"+strconv.Itoa(i), 2*i+1)
		if err != nil {
			cancel()
			return res, err
		}
		senders = append(senders, s)
	}
	cancel()
	run := &hubRun{senders: senders, receivers: receivers}
	run.start()
	defer run.stop()
	for k, rate := range p.OpenRates {
		st := run.step(hub, 1000+k, float64(rate), p)
		res.Steps = append(res.Steps, st)
		logf("rawhub open loop %6d/s: %.0f delivered/s, send->deliver p50 %.2f p99 %.2f p99.9 %.2f max %.2f ms, lost %d, server %.2f cores (%.1f µs/msg)",
			rate, st.DeliveredPerSec, st.SendToDeliver.P50, st.SendToDeliver.P99, st.SendToDeliver.P999, st.SendToDeliver.Max,
			st.Lost, st.ServerCPUCores, st.ServerCPUPerMsgUs)
		if st.Error != "" || st.Lost > 0 || st.SendToDeliver.P99 >= p.SustainedP99Ms || st.DeliveredPerSec < 0.95*st.TargetRate {
			break
		}
		res.MaxSustained = st
	}
	// A sender's socket closed by rawhub (it drops clients it cannot keep up with) ends the ladder
	// and shows in that step's error and losses: it is the baseline's limit, not a harness failure.
	return res, nil
}

// hubRun owns the raw ladder's connections: a reader per socket for the whole ladder (senders
// read and drop their echoes), the current step's histograms swapped in by step.
type hubRun struct {
	senders, receivers []*websocket.Conn
	phase              atomic.Int64
	delivered          atomic.Int64
	inWindow           atomic.Int64
	mu                 sync.Mutex
	hists              []*hdrhistogram.Histogram
	start0, end        time.Time
	readers            sync.WaitGroup
	firstErr           error
}

func (h *hubRun) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.firstErr == nil {
		h.firstErr = err
	}
}

func (h *hubRun) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.firstErr
}

func (h *hubRun) start() {
	h.hists = make([]*hdrhistogram.Histogram, len(h.receivers))
	for i := range h.receivers {
		h.hists[i] = newHist()
		h.readers.Go(func() { h.readReceiver(i) })
		h.readers.Go(func() {
			for {
				if _, _, err := h.senders[i].ReadMessage(); err != nil {
					return
				}
			}
		})
	}
}

func (h *hubRun) stop() {
	for _, c := range append(h.senders, h.receivers...) {
		c.Close()
	}
	h.readers.Wait()
}

func (h *hubRun) readReceiver(i int) {
	for {
		_, data, err := h.receivers[i].ReadMessage()
		if err != nil {
			return
		}
		phase, sent, ok := parseMsgText(jsonField(data, "msg"))
		if !ok || int64(phase) != h.phase.Load() {
			continue
		}
		now := time.Now()
		h.delivered.Add(1)
		h.mu.Lock()
		inWindow := sent >= h.start0.UnixNano() && sent < h.end.UnixNano()
		if inWindow {
			record(h.hists[i], now.Sub(time.Unix(0, sent)))
		}
		h.mu.Unlock()
		if !now.Before(h.start0) && now.Before(h.end) {
			h.inWindow.Add(1)
		}
	}
}

// step offers rate messages/s (all senders together) for warmup plus measure, then waits for the
// deliveries.
func (h *hubRun) step(hub *child, phase int, rate float64, p params) *hubStep {
	st := &hubStep{TargetRate: rate}
	begin := time.Now()
	h.mu.Lock()
	for i := range h.hists {
		h.hists[i] = newHist()
	}
	measure := p.stepDuration(rate)
	h.start0, h.end = begin.Add(p.OpenWarmup), begin.Add(p.OpenWarmup+measure)
	h.mu.Unlock()
	h.phase.Store(int64(phase))
	h.delivered.Store(0)
	h.inWindow.Store(0)
	interval := time.Duration(float64(time.Second) * float64(len(h.senders)) / rate)
	ctx, cancel := context.WithDeadline(context.Background(), h.end.Add(time.Minute))
	defer cancel()
	var sent, sentInWindow atomic.Int64
	var wg sync.WaitGroup
	for i := range h.senders {
		wg.Go(func() {
			offset := interval * time.Duration(i) / time.Duration(len(h.senders))
			for n := 0; ; n++ {
				at := begin.Add(offset + time.Duration(n)*interval)
				if !at.Before(h.end) {
					return
				}
				sleepUntil(ctx, at)
				if ctx.Err() != nil {
					return
				}
				text := msgText(phase, at)
				data, _ := json.Marshal(&schemas.ClientFrame{Cmd: schemas.CmdMessage, ID: strconv.Itoa(n), To: receiverID(i),
					Type: "text", Msg: &text, Mid: "p" + strconv.Itoa(phase) + "-" + strconv.Itoa(n)})
				_ = h.senders[i].SetWriteDeadline(time.Now().Add(10 * time.Second))
				if err := h.senders[i].WriteMessage(websocket.TextMessage, data); err != nil {
					h.fail(fmt.Errorf("rawhub sender %d: %w", i, err))
					return
				}
				sent.Add(1)
				if !at.Before(h.start0) {
					sentInWindow.Add(1)
				}
			}
		})
	}
	sleepUntil(ctx, h.start0)
	cpu := meterCPU(hub)
	sleepUntil(ctx, h.end)
	used, cores := cpu.stop()
	wg.Wait()
	if !waitFor(ctx, 30*time.Second, func() bool { return h.delivered.Load() >= sent.Load() }) {
		st.Error = fmt.Sprintf("%d messages not delivered 30 s after the step", sent.Load()-h.delivered.Load())
	}
	st.Sent = sent.Load()
	st.Lost = max(0, st.Sent-h.delivered.Load())
	st.DeliveredPerSec = float64(h.inWindow.Load()) / measure.Seconds()
	st.ServerCPUCores = cores
	if n := sentInWindow.Load(); n > 0 {
		st.ServerCPUPerMsgUs = float64(used.Microseconds()) / float64(n)
	}
	h.mu.Lock()
	st.SendToDeliver = summarize(merge(h.hists))
	h.mu.Unlock()
	if err := h.err(); err != nil && st.Error == "" {
		st.Error = err.Error()
	}
	return st
}
