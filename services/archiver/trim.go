package archiver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"

	"github.com/nats-io/nats.go/jetstream"
)

// trimTimeout bounds one trim.
const trimTimeout = 30 * time.Second

// trimmer trims the stream every TrimEvery (with jitter, so instances rarely trim together).
func (s *Service) trimmer(ctx context.Context) {
	for {
		if !platform.Sleep(ctx, s.cfg.TrimEvery-time.Duration(jitter(int64(s.cfg.TrimEvery/10)))) {
			return
		}
		tctx, cancel := context.WithTimeout(ctx, trimTimeout)
		_, err := s.trim(tctx)
		cancel()
		s.trimRuns.Add(1)
		if err != nil && ctx.Err() == nil {
			s.m.errors.WithLabelValues(opTrim).Inc()
			s.log.Warn("trimming the stream failed", "err", err)
		}
	}
}

// trim purges the content events (schemas.TrimmedSubjects) below the trim point from the stream
// and returns the point (0: nothing purged). The point is the lowest of: the first event not
// archived (the consumer's ack floor + 1, read now), the first event newer than now - max(Keep,
// the stream's dedup window), and, with KeepBytes, the first seq that leaves the stream within it
// (estimated from its average event size). So an event leaves the stream only once it is archived
// and outside every window kept. The point is recorded (schemas.ArchiveTrimKey) before the purge,
// so a reader that sees it may find the content below it gone, and never the other way round.
// Membership, contact and deletion-marker events are never purged: compare-and-swap appends on
// their subjects and the projections that repair from the log need them.
func (s *Service) trim(ctx context.Context) (uint64, error) {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	st := info.State
	if st.Msgs == 0 {
		return 0, nil
	}
	prev, rev, err := s.trimPoint(ctx)
	if err != nil {
		return 0, err
	}
	// base: below it, the content is already gone.
	base := max(st.FirstSeq, prev)
	cons, err := s.consumer(ctx, false)
	if err != nil {
		return 0, err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("consumer info: %w", err)
	}
	// Cheapest first: each limit can only lower the point, and nothing happens at or below base.
	point := ci.AckFloor.Stream + 1
	if s.cfg.KeepBytes > 0 {
		p := base // within the limit: nothing to drop
		if st.Bytes > uint64(s.cfg.KeepBytes) {
			avg := max(st.Bytes/st.Msgs, 1)
			drop := (st.Bytes - uint64(s.cfg.KeepBytes) + avg - 1) / avg
			p = base + drop
		}
		point = min(point, p)
	}
	if point <= base {
		return 0, nil
	}
	if keep := max(s.cfg.Keep, info.Config.Duplicates); keep > 0 {
		p, err := s.firstNewer(ctx, time.Now().Add(-keep), st.LastSeq)
		if err != nil {
			return 0, err
		}
		point = min(point, p)
	}
	if point <= base {
		return 0, nil
	}
	if err := s.recordTrimPoint(ctx, point, rev); err != nil {
		return 0, err
	}
	for _, subj := range schemas.TrimmedSubjects {
		if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeSequence(point)); err != nil {
			return 0, fmt.Errorf("purge %s below %d: %w", subj, point, err)
		}
	}
	s.m.trims.Inc()
	s.m.trimmedSeq.Set(float64(point))
	s.log.Info("stream trimmed", "below", point, "archived", ci.AckFloor.Stream, "previous", base)
	return point, nil
}

// trimPoint reads the recorded trim point and its revision (0, 0: none yet).
func (s *Service) trimPoint(ctx context.Context) (uint64, uint64, error) {
	e, err := s.archiveKV.Get(ctx, schemas.ArchiveTrimKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read the trim point: %w", err)
	}
	p, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("trim point %q: %w", e.Value(), err)
	}
	return p, e.Revision(), nil
}

// recordTrimPoint stores point, by compare-and-swap on rev (0: create), so it only rises; another
// instance having moved it meanwhile is an error for this pass (the next one re-reads).
func (s *Service) recordTrimPoint(ctx context.Context, point, rev uint64) error {
	v := []byte(strconv.FormatUint(point, 10))
	var err error
	if rev == 0 {
		_, err = s.archiveKV.Create(ctx, schemas.ArchiveTrimKey, v)
	} else {
		_, err = s.archiveKV.Update(ctx, schemas.ArchiveTrimKey, v, rev)
	}
	if err != nil {
		return fmt.Errorf("record the trim point %d: %w", point, err)
	}
	return nil
}

// firstNewer is the seq of the first event stored at or after cutoff, or last+1 when there is none
// up to last. It reads one event with a short-lived ordered consumer that starts at cutoff.
func (s *Service) firstNewer(ctx context.Context, cutoff time.Time, last uint64) (uint64, error) {
	m, err := s.stream.GetMsg(ctx, last)
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, fmt.Errorf("last event: %w", err)
	}
	if err == nil && m.Time.Before(cutoff) {
		return last + 1, nil
	}
	oc, err := s.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy,
		OptStartTime:      &cutoff,
		InactiveThreshold: 5 * time.Second,
	})
	if err != nil {
		return 0, fmt.Errorf("ordered consumer: %w", err)
	}
	batch, err := oc.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		return 0, fmt.Errorf("fetch: %w", err)
	}
	for msg := range batch.Messages() {
		meta, err := msg.Metadata()
		if err != nil {
			return 0, err
		}
		return meta.Sequence.Stream, nil
	}
	if err := batch.Error(); err != nil {
		return 0, fmt.Errorf("fetch: %w", err)
	}
	// Nothing at or after the cutoff (the last event was purged meanwhile?): trim nothing now.
	return 0, nil
}
