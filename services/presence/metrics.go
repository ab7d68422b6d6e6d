package presence

import (
	"github.com/eventchat/chat/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the presence service: chat_presence_*. No user ids as labels.
type metrics struct {
	connEvents       *prometheus.CounterVec
	changes          *prometheus.CounterVec
	invalid          prometheus.Counter
	recomputeSeconds prometheus.Histogram
	pendingOffline   prometheus.Gauge
}

var connStates = []string{schemas.ConnConnect, schemas.ConnHeartbeat, schemas.ConnIdle, schemas.ConnActive, schemas.ConnDisconnect}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_presence_conn_events_total",
			Help: "Valid connection reports received from gateways, by state."}, []string{"state"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_presence_changes_total",
			Help: "Presence changes published by this instance, by new status."}, []string{"status"}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_presence_invalid_total",
			Help: "Connection reports dropped as invalid (bad JSON, type, user, conn id or state)."}),
		recomputeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_presence_recompute_seconds",
			Help:    "Time to recompute and store one user's aggregate.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		pendingOffline: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chat_presence_pending_offline",
			Help: "Users without connections waiting out the grace period before going offline."}),
	}
	reg.MustRegister(m.connEvents, m.changes, m.invalid, m.recomputeSeconds, m.pendingOffline)
	for _, s := range connStates {
		m.connEvents.WithLabelValues(s)
	}
	for _, s := range []string{schemas.StatusOnline, schemas.StatusAway, schemas.StatusOffline} {
		m.changes.WithLabelValues(s)
	}
	return m
}
