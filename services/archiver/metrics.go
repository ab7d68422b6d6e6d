package archiver

import (
	"github.com/eventchat/chat/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the archiver: chat_archiver_*. No user or conversation ids as labels.
type metrics struct {
	rowsInserted  prometheus.Counter
	batches       prometheus.Counter
	batchSize     prometheus.Histogram
	insertSeconds prometheus.Histogram
	duplicates    prometheus.Counter
	retries       prometheus.Counter
	exactChecks   prometheus.Counter
	errors        *prometheus.CounterVec
	lagSeconds    prometheus.Gauge
	archivedSeq   prometheus.Gauge
	pending       prometheus.Gauge
	clickhouseUp  prometheus.Gauge
	trimmedSeq    prometheus.Gauge
	trims         prometheus.Counter
	requests      *prometheus.CounterVec
	requestSecs   *prometheus.HistogramVec
}

// Label values.
const (
	opInsert    = "insert"    // a batch attempt (existing check or insert) failed
	opAck       = "ack"       // acknowledging or extending a message failed
	opConsume   = "consume"   // the consumer or its messages failed
	opMigrate   = "migrate"   // applying the schema failed
	opTrim      = "trim"      // trimming the stream failed
	opQuery     = "query"     // an events or analytics query failed in ClickHouse
	kindEvents  = "events"    // request kinds
	kindReports = "analytics" //
	resultOK    = "ok"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rowsInserted: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_archiver_rows_inserted_total",
			Help: "Rows inserted into ClickHouse (events not there before)."}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_archiver_batches_total",
			Help: "Batches archived and acknowledged."}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_archiver_batch_size",
			Help: "Events per archived batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		insertSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_archiver_insert_seconds",
			Help:    "Time of a successful attempt: the existing check and the insert of one batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 3, 12)}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_archiver_duplicates_skipped_total",
			Help: "Events of a batch found already archived (redeliveries) and not inserted again."}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_archiver_retries_total",
			Help: "Batch attempts retried after a failure."}),
		exactChecks: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_archiver_exact_checks_total",
			Help: "Batch attempts checked against the events table itself (a retry, or a batch holding a redelivered event) instead of the seq index."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_archiver_errors_total",
			Help: "Failures, by operation."}, []string{"op"}),
		lagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chat_archiver_lag_seconds",
			Help: "Age of the oldest event this instance holds unarchived (0: none)."}),
		archivedSeq: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chat_archiver_archived_seq",
			Help: "The consumer's ack floor: every event up to this seq is archived."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chat_archiver_pending",
			Help: "Events of the stream not yet delivered to any archiver."}),
		clickhouseUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chat_archiver_clickhouse_up",
			Help: "1 when the last ClickHouse operation or ping succeeded."}),
		trimmedSeq: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chat_archiver_trimmed_seq",
			Help: "The stream's first seq after this instance's last trim."}),
		trims: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_archiver_trims_total",
			Help: "Purges of archived events from the stream."}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_archiver_requests_total",
			Help: "Requests answered, by kind (events, analytics) and result (ok or an error code)."},
			[]string{"kind", "result"}),
		requestSecs: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "chat_archiver_request_seconds",
			Help: "Time to answer a request, by kind.", Buckets: prometheus.ExponentialBuckets(0.0005, 3, 12)},
			[]string{"kind"}),
	}
	reg.MustRegister(m.rowsInserted, m.batches, m.batchSize, m.insertSeconds, m.duplicates, m.retries, m.exactChecks, m.errors,
		m.lagSeconds, m.archivedSeq, m.pending, m.clickhouseUp, m.trimmedSeq, m.trims, m.requests, m.requestSecs)
	for _, op := range []string{opInsert, opAck, opConsume, opMigrate, opTrim, opQuery} {
		m.errors.WithLabelValues(op)
	}
	for _, k := range []string{kindEvents, kindReports} {
		m.requests.WithLabelValues(k, resultOK)
		for _, c := range []schemas.ErrCode{schemas.CodeBadRequest, schemas.CodeUnavailable, schemas.CodeInternal} {
			m.requests.WithLabelValues(k, string(c))
		}
		m.requestSecs.WithLabelValues(k)
	}
	return m
}
