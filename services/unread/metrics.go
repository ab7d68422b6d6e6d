package unread

import (
	"github.com/eventchat/chat/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the unread service: chat_unread_*. No user or conversation ids as labels.
type metrics struct {
	events          *prometheus.CounterVec
	undecodable     prometheus.Counter
	appliedSeq      prometheus.Gauge
	lagSeconds      prometheus.Gauge
	queries         *prometheus.CounterVec
	queryWait       prometheus.Histogram
	pushes          *prometheus.CounterVec
	snapshotSeconds prometheus.Histogram
	snapshotBytes   prometheus.Gauge
	snapshotSeq     *prometheus.GaugeVec
}

// Label values.
const (
	eventOther = "other" // contacts, deletion markers: skipped
	causeRead  = "read"
	causeDel   = "delete"
	resultOK   = "ok"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_unread_events_total",
			Help: "Events of the log applied to the projection, by type (other: skipped kinds)."}, []string{"type"}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_unread_undecodable_total",
			Help: "Events skipped because they could not be decoded or were malformed."}),
		appliedSeq: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chat_unread_applied_seq",
			Help: "Stream sequence of the last event applied to the projection."}),
		lagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chat_unread_lag_seconds",
			Help: "Age of the last event applied when it was applied."}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_unread_queries_total",
			Help: "Conversations requests answered, by result (ok or an error code)."}, []string{"result"}),
		queryWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_unread_query_wait_seconds",
			Help:    "Time a conversations request waited for the projection to reach its minSeq.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_unread_pushes_total",
			Help: "Unread changes published, by cause (read or delete)."}, []string{"cause"}),
		snapshotSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_unread_snapshot_seconds",
			Help:    "Time to encode and store a snapshot of the projection.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
		snapshotBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chat_unread_snapshot_bytes",
			Help: "Size of the last snapshot written."}),
		snapshotSeq: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "chat_unread_snapshot_seq",
			Help: "Stream sequence of the last snapshot loaded or written by this instance, by op."}, []string{"op"}),
	}
	reg.MustRegister(m.events, m.undecodable, m.appliedSeq, m.lagSeconds, m.queries, m.queryWait, m.pushes,
		m.snapshotSeconds, m.snapshotBytes, m.snapshotSeq)
	for _, t := range []string{schemas.TypeMessage, schemas.TypeMember, schemas.TypeRead, eventOther} {
		m.events.WithLabelValues(t)
	}
	m.queries.WithLabelValues(resultOK)
	for _, c := range []schemas.ErrCode{schemas.CodeBadRequest, schemas.CodeUnavailable, schemas.CodeInternal} {
		m.queries.WithLabelValues(string(c))
	}
	m.pushes.WithLabelValues(causeRead)
	m.pushes.WithLabelValues(causeDel)
	m.snapshotSeq.WithLabelValues("load")
	m.snapshotSeq.WithLabelValues("write")
	return m
}
