package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// JetStream API error codes the gateway acts on.
const (
	jsErrWrongLastSequence = 10071 // Nats-Expected-Last-Subject-Sequence did not hold (R1)
	jsErrWrongLastSeqClust = 10164 // the same on a replicated stream
	jsErrWrongLastMsgID    = 10070 // Nats-Expected-Last-Msg-Id did not hold
	jsErrBatchDuplicate    = 10201 // an atomic batch contained a message id already stored
)

// jsError is an error answer of the JetStream publish API.
type jsError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *jsError) Error() string {
	return fmt.Sprintf("jetstream: %s (code %d, err_code %d)", e.Description, e.Code, e.ErrCode)
}

// isWrongLastSeq reports whether err is a failed compare-and-swap on a subject's last sequence.
func isWrongLastSeq(err error) bool {
	var je *jsError
	return errors.As(err, &je) && (je.ErrCode == jsErrWrongLastSequence || je.ErrCode == jsErrWrongLastSeqClust)
}

// isJSError reports whether err is a JetStream publish error with code errCode.
func isJSError(err error, errCode int) bool {
	var je *jsError
	return errors.As(err, &je) && je.ErrCode == errCode
}

type pubAck struct {
	Stream    string   `json:"stream"`
	Seq       uint64   `json:"seq"`
	Duplicate bool     `json:"duplicate"`
	Count     uint64   `json:"count"`
	Error     *jsError `json:"error"`
}

func parsePubAck(data []byte) (pubAck, error) {
	var a pubAck
	if err := json.Unmarshal(data, &a); err != nil {
		return a, fmt.Errorf("jetstream: bad publish answer: %w", err)
	}
	if a.Error != nil {
		return a, a.Error
	}
	if a.Seq == 0 {
		return a, errors.New("jetstream: publish answer without a sequence")
	}
	return a, nil
}

// outMsg is one event to append.
type outMsg struct {
	subject string
	data    []byte
	// msgID, when set, is the Nats-Msg-Id: JetStream stores an id once per dedup window.
	msgID string
	// expectLast, when set, stores the message only if the last sequence of expectSubject (of
	// subject when expectSubject is empty) is *expectLast (Nats-Expected-Last-Subject-Sequence and
	// -Subject): a compare-and-swap on the log. Not for the group commit.
	expectLast    *uint64
	expectSubject string
	// expectLastMsgID, when set, stores the message only if the stream's last message id is this
	// (Nats-Expected-Last-Msg-Id). Single publishes only: atomic batches refuse it.
	expectLastMsgID string
}

// appendResult is what became of one appended event.
type appendResult struct {
	seq uint64
	// dup: the message id was already stored; seq is the sequence of the first copy.
	dup bool
	err error
}

// appendReq is a queued append; done is called exactly once, from the appender's goroutines.
type appendReq struct {
	msg  outMsg
	done func(appendResult)
}

// appender is the gateway's group commit. Appends queue up; a single publisher goroutine sends
// them to JetStream as atomic batches, so one fsync covers a whole batch. Up to maxInflight batches
// are on the wire at once; while they are being stored the next batch gathers, so a lone message
// goes out at once (low latency under light load) and batches grow with load (throughput).
// Batches too small for an atomic batch to pay go out as pipelined single publishes, bounded by a
// window of maxInflight*maxBatch unanswered messages that every answer opens by one. Without
// atomic batching (atomicMin 0: fsync off, where an atomic batch does not pay) a batch's slot is
// free once it is sent, so the publisher keeps streaming rather than wait for a batch's last
// answer (stop and go, which at 20k messages/s fell into batches of 1000 taking 150 ms each at
// half the rate and half the CPU).
// One connection and one publisher keep batches in order: a session's messages are stored in the
// order it sent them.
type appender struct {
	nc          *nats.Conn
	maxBatch    int
	maxInflight int
	// atomicMin is the smallest batch sent as a JetStream atomic batch; smaller ones go out as
	// pipelined single publishes. An atomic batch has a fixed cost (nats-server stages it on disk,
	// about 4 ms on R1 file streams), so it only pays when fsync per write costs more. 0: never.
	atomicMin int
	timeout   time.Duration
	metrics   *metrics
	log       *slog.Logger

	queue   chan *appendReq
	slots   chan struct{} // one token per batch in flight (a pipelined one: until it is sent)
	window  chan struct{} // one token per pipelined message unanswered
	closeMu sync.RWMutex
	closed  bool

	prefix  string // reply subjects are prefix + batch number
	mu      sync.Mutex
	pending map[uint64]*batch
	nextID  uint64
	wg      sync.WaitGroup
}

// batch is a group of appends sent together: as one atomic batch (one answer for all), or as
// pipelined single publishes (one answer each) when it is too small for an atomic batch to pay.
type batch struct {
	reqs     []*appendReq
	atomic   bool
	answered []bool // pipelined: which answers are in
	left     int    // pipelined: answers still expected
	held     int    // pipelined: window tokens held (published and unanswered)
	slot     bool   // holds its slot until answered (atomic, or any batch when atomic batching is on)
	sent     time.Time
}

func newAppender(nc *nats.Conn, maxBatch, maxInflight, atomicMin int, timeout time.Duration, m *metrics, log *slog.Logger) *appender {
	return &appender{
		nc: nc, maxBatch: maxBatch, maxInflight: maxInflight, atomicMin: atomicMin, timeout: timeout, metrics: m, log: log,
		queue:   make(chan *appendReq, 4*maxBatch),
		slots:   make(chan struct{}, maxInflight),
		window:  make(chan struct{}, maxInflight*maxBatch),
		prefix:  nats.NewInbox() + ".",
		pending: map[uint64]*batch{},
	}
}

// enqueue queues an append. It blocks while the queue is full (backpressure on the sender) and
// fails once the appender is closed.
func (a *appender) enqueue(ctx context.Context, m outMsg, done func(appendResult)) error {
	a.closeMu.RLock()
	defer a.closeMu.RUnlock()
	if a.closed {
		return errAppenderClosed
	}
	select {
	case a.queue <- &appendReq{msg: m, done: done}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errAppenderClosed = errors.New("appender closed")

// run publishes until close has been called and every queued append has been answered.
func (a *appender) run() error {
	sub, err := a.nc.Subscribe(a.prefix+">", a.onAck)
	if err != nil {
		return fmt.Errorf("appender: subscribe: %w", err)
	}
	defer sub.Unsubscribe()
	stopSweep := make(chan struct{})
	sweepDone := make(chan struct{})
	go func() { defer close(sweepDone); a.sweep(stopSweep) }()

	for first := range a.queue {
		a.slots <- struct{}{} // wait for a free slot: meanwhile the queue gathers the next batch
		reqs := []*appendReq{first}
	gather:
		for len(reqs) < a.maxBatch {
			select {
			case r, ok := <-a.queue:
				if !ok {
					break gather
				}
				reqs = append(reqs, r)
			default:
				break gather
			}
		}
		a.send(reqs)
	}
	// Wait for the last batches' answers (or their time-outs) before stopping.
	for i := 0; i < a.maxInflight; i++ {
		a.slots <- struct{}{}
	}
	for i := 0; i < cap(a.window); i++ {
		a.window <- struct{}{}
	}
	a.wg.Wait()
	close(stopSweep)
	<-sweepDone
	return nil
}

// close stops accepting appends; run returns once all queued ones are answered.
func (a *appender) close() {
	a.closeMu.Lock()
	defer a.closeMu.Unlock()
	if !a.closed {
		a.closed = true
		close(a.queue)
	}
}

func (a *appender) send(reqs []*appendReq) {
	// With atomic batching on, a pipelined batch keeps its slot until answered too: the next batch
	// gathers meanwhile, and grows into an atomic one (one fsync) under load.
	b := &batch{reqs: reqs, atomic: a.atomicMin > 0 && len(reqs) >= a.atomicMin, slot: a.atomicMin > 0, sent: time.Now()}
	if !b.atomic {
		b.answered, b.left = make([]bool, len(reqs)), len(reqs)
	}
	a.mu.Lock()
	a.nextID++
	id := a.nextID
	a.pending[id] = b
	a.mu.Unlock()
	a.metrics.batchSize.Observe(float64(len(reqs)))

	reply := a.prefix + strconv.FormatUint(id, 10)
	var err error
	if b.atomic {
		batchID := nuid.Next()
		for i, r := range reqs {
			m := newMsg(r.msg, "")
			m.Header.Set("Nats-Batch-Id", batchID)
			m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
			if i == len(reqs)-1 {
				m.Header.Set("Nats-Batch-Commit", "1")
				m.Reply = reply
			}
			if err = a.nc.PublishMsg(m); err != nil {
				break
			}
		}
	} else {
		if !b.slot {
			<-a.slots // the window bounds what is in flight
		}
		for i, r := range reqs {
			a.window <- struct{}{}
			a.mu.Lock()
			taken := a.pending[id] != b // timed out meanwhile: the fallback has the rest
			if !taken {
				b.held++
			}
			a.mu.Unlock()
			if taken {
				<-a.window
				return
			}
			if err = a.nc.PublishMsg(newMsg(r.msg, reply+"."+strconv.Itoa(i))); err != nil {
				break
			}
		}
	}
	if err != nil {
		if b, unanswered := a.take(id); b != nil {
			a.fallback(unanswered, err)
		}
	}
}

func newMsg(m outMsg, reply string) *nats.Msg {
	msg := &nats.Msg{Subject: m.subject, Reply: reply, Data: m.data, Header: nats.Header{}}
	if m.msgID != "" {
		msg.Header.Set(nats.MsgIdHdr, m.msgID)
	}
	if m.expectLast != nil {
		msg.Header.Set(nats.ExpectedLastSubjSeqHdr, strconv.FormatUint(*m.expectLast, 10))
		if m.expectSubject != "" {
			msg.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, m.expectSubject)
		}
	}
	if m.expectLastMsgID != "" {
		msg.Header.Set(nats.ExpectedLastMsgIdHdr, m.expectLastMsgID)
	}
	return msg
}

// take removes a batch from the pending set, frees its slot (if it holds one) and window tokens
// (pipelined) and returns the requests still unanswered; nil if it was already taken.
func (a *appender) take(id uint64) (*batch, []*appendReq) {
	a.mu.Lock()
	b := a.pending[id]
	delete(a.pending, id)
	held := 0
	if b != nil {
		held, b.held = b.held, 0
	}
	a.mu.Unlock()
	if b == nil {
		return nil, nil
	}
	if b.slot {
		<-a.slots
	}
	if b.atomic {
		return b, b.reqs
	}
	for ; held > 0; held-- {
		<-a.window
	}
	var left []*appendReq
	for i, r := range b.reqs {
		if !b.answered[i] {
			left = append(left, r)
		}
	}
	return b, left
}

// answerOne records the answer to message i of a pipelined batch; it reports false if the batch
// is gone (timed out and failed over) or the answer came already.
func (a *appender) answerOne(id uint64, i int) (*appendReq, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.pending[id]
	if b == nil || b.atomic || i < 0 || i >= len(b.reqs) || b.answered[i] {
		return nil, false
	}
	b.answered[i] = true
	b.held--
	<-a.window
	if b.left--; b.left == 0 {
		delete(a.pending, id)
		if b.slot {
			<-a.slots
		}
	}
	return b.reqs[i], true
}

func (a *appender) onAck(m *nats.Msg) {
	if len(m.Subject) <= len(a.prefix) {
		return
	}
	idStr, iStr, pipelined := strings.Cut(m.Subject[len(a.prefix):], ".")
	id, err := strconv.ParseUint(idStr, 10, 64)
	if err != nil {
		return
	}
	if pipelined {
		i, err := strconv.Atoi(iStr)
		if err != nil {
			return
		}
		r, ok := a.answerOne(id, i)
		if !ok {
			return
		}
		ack, err := parsePubAck(m.Data)
		if err != nil {
			a.fallback([]*appendReq{r}, err)
			return
		}
		r.done(appendResult{seq: ack.Seq, dup: ack.Duplicate})
		return
	}
	b, reqs := a.take(id)
	if b == nil {
		return // answered after its time-out: the fallback has it
	}
	ack, err := parsePubAck(m.Data)
	if err != nil {
		// A duplicate id in a batch, or a batch the server could not take whole: store the messages
		// one by one, where dedup answers each retried mid with its first sequence.
		a.fallback(reqs, err)
		return
	}
	n := uint64(len(reqs))
	if ack.Count != n {
		a.fallback(reqs, fmt.Errorf("jetstream: batch of %d acknowledged as %d", n, ack.Count))
		return
	}
	for i, r := range reqs {
		r.done(appendResult{seq: ack.Seq - n + 1 + uint64(i), dup: ack.Duplicate})
	}
}

// fallback appends a batch's messages one at a time, synchronously, off the publisher's goroutine.
func (a *appender) fallback(reqs []*appendReq, cause error) {
	if len(reqs) == 0 {
		return
	}
	a.metrics.appendFallbacks.Inc()
	a.log.Debug("appends failed over to single appends", "count", len(reqs), "cause", cause)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for _, r := range reqs {
			r.done(a.publishOne(r.msg))
		}
	}()
}

// publishOne appends one message and waits for its acknowledgement, retrying time-outs: a retry is
// safe because the message id makes JetStream store it once.
func (a *appender) publishOne(m outMsg) appendResult {
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		resp, err := a.nc.RequestMsg(newMsg(m, ""), a.timeout)
		if err != nil {
			last = err
			if m.msgID == "" || !(errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)) {
				break
			}
			continue
		}
		ack, err := parsePubAck(resp.Data)
		if err != nil {
			return appendResult{err: err}
		}
		return appendResult{seq: ack.Seq, dup: ack.Duplicate}
	}
	return appendResult{err: fmt.Errorf("append to %s: %w", m.subject, last)}
}

// sweep fails over batches whose answer did not come in time (a lost reply, a NATS reconnect).
func (a *appender) sweep(stop <-chan struct{}) {
	t := time.NewTicker(a.timeout / 4)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			a.mu.Lock()
			var late []uint64
			for id, b := range a.pending {
				if now.Sub(b.sent) > a.timeout {
					late = append(late, id)
				}
			}
			a.mu.Unlock()
			for _, id := range late {
				if b, unanswered := a.take(id); b != nil {
					a.fallback(unanswered, nats.ErrTimeout)
				}
			}
		}
	}
}

// appendAtomic stores msgs as one atomic batch, outside the group commit: all of them or none.
// Each message may carry its own expectations (outMsg.expectLast); when one does not hold nothing is
// stored and isWrongLastSeq(err) holds. It returns the sequence of each message.
func appendAtomic(ctx context.Context, nc *nats.Conn, msgs []outMsg) ([]uint64, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	if len(msgs) == 1 {
		ack, err := publishSync(ctx, nc, msgs[0])
		if err != nil {
			return nil, err
		}
		return []uint64{ack.Seq}, nil
	}
	batchID := nuid.Next()
	var resp *nats.Msg
	for i, om := range msgs {
		m := newMsg(om, "")
		m.Header.Set("Nats-Batch-Id", batchID)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i < len(msgs)-1 {
			if err := nc.PublishMsg(m); err != nil {
				return nil, err
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		var err error
		if resp, err = nc.RequestMsgWithContext(ctx, m); err != nil {
			return nil, err
		}
	}
	ack, err := parsePubAck(resp.Data)
	if err != nil {
		return nil, err
	}
	seqs := make([]uint64, len(msgs))
	for i := range msgs {
		seqs[i] = ack.Seq - uint64(len(msgs)) + 1 + uint64(i)
	}
	return seqs, nil
}

// publishSync appends one message outside the group commit and waits for JetStream's answer
// (stored, and fsynced where the stream syncs every write). A duplicate message id answers with
// the first copy's sequence and Duplicate set.
func publishSync(ctx context.Context, nc *nats.Conn, m outMsg) (pubAck, error) {
	resp, err := nc.RequestMsgWithContext(ctx, newMsg(m, ""))
	if err != nil {
		return pubAck{}, err
	}
	return parsePubAck(resp.Data)
}

// isLostAnswer reports whether an append may or may not have been stored: its answer did not come.
func isLostAnswer(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders)
}
