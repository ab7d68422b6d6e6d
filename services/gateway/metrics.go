package gateway

import (
	"github.com/eventchat/chat/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the gateway: chat_gateway_*. No user or conversation ids as labels.
type metrics struct {
	connections     prometheus.Gauge
	connsTotal      *prometheus.CounterVec
	framesIn        *prometheus.CounterVec
	framesOut       prometheus.Counter
	acks            prometheus.Counter
	dups            prometheus.Counter
	errors          *prometheus.CounterVec
	appendSeconds   prometheus.Histogram
	batchSize       prometheus.Histogram
	appendFallbacks prometheus.Counter
	liveEvents      prometheus.Counter
	liveLagSeconds  prometheus.Histogram
	closes          *prometheus.CounterVec
	changes         *prometheus.CounterVec
	reads           prometheus.Counter
	contactChanges  *prometheus.CounterVec
	unreadPushes    prometheus.Counter
	unreadDups      prometheus.Counter
	unreadSeconds   prometheus.Histogram
	archiveRequests *prometheus.CounterVec
	archiveSeconds  prometheus.Histogram
	archiveEvents   prometheus.Counter
	archiveRefused  prometheus.Counter
	boundaryMoves   prometheus.Counter
	logReadRetries  prometheus.Counter
	polls           *prometheus.CounterVec
	pollSeconds     prometheus.Histogram
	pollFrames      prometheus.Counter
	pollFull        prometheus.Counter
	pollClients     prometheus.Gauge
	uploads         *prometheus.CounterVec
	uploadBytes     prometheus.Counter
	downloads       prometheus.Counter
	downloadBytes   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chat_gateway_connections",
			Help: "Open WebSocket sessions (long-poll clients: chat_gateway_poll_clients)."}),
		connsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_gateway_connections_total",
			Help: "Sessions opened, by transport."}, []string{"transport"}),
		framesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_gateway_frames_in_total",
			Help: "Client frames received, by command (unknown commands as \"other\")."}, []string{"cmd"}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_frames_out_total",
			Help: "Server frames queued to sessions."}),
		acks: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_acks_total",
			Help: "Messages acknowledged after JetStream stored them."}),
		dups: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_duplicate_mids_total",
			Help: "Retried mids answered with their first ack."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_gateway_errors_total",
			Help: "Error answers, by errCode."}, []string{"code"}),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_gateway_append_seconds",
			Help:    "Time from a message frame's arrival to JetStream's acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_gateway_append_batch_size",
			Help: "Events per group-commit batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 11)}),
		appendFallbacks: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_append_fallbacks_total",
			Help: "Batches re-appended one message at a time (duplicate mid in a batch, lost answer)."}),
		liveEvents: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_live_events_total",
			Help: "Events read from the log by the live feed."}),
		liveLagSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_gateway_live_lag_seconds",
			Help:    "Time from an event's append to its arrival at this gateway's live feed.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_gateway_session_closes_total",
			Help: "Sessions closed by the server, by close code."}, []string{"code"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_gateway_message_changes_total",
			Help: "Edits, deletes and reactions stored (retries answered from the first copy included), by kind."}, []string{"kind"}),
		reads: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_reads_total",
			Help: "Read markers stored."}),
		contactChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_gateway_contact_changes_total",
			Help: "Contacts added or removed (changes that changed nothing are not counted), by action."}, []string{"action"}),
		unreadPushes: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_unread_pushes_total",
			Help: "Unread frames queued to sessions."}),
		unreadDups: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_unread_duplicates_total",
			Help: "Unread changes dropped for a session that already got that change (several unread instances publish each)."}),
		unreadSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_gateway_unread_request_seconds",
			Help:    "Time the unread service took to answer a conversations request (failures included).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		archiveRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_gateway_archive_requests_total",
			Help: "Requests to the archiver (history and sync older than the stream keeps), by result: ok, no_archive (no archiver running), timeout, error."},
			[]string{"result"}),
		archiveSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_gateway_archive_request_seconds",
			Help:    "Time the archiver took to answer a request (failures included).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		archiveEvents: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_archive_events_total",
			Help: "Events read from the archive."}),
		archiveRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_archive_refused_events_total",
			Help: "Events the archive returned that the gateway's own visibility rules refused (should stay 0: the archiver's filter disagrees with the gateway's)."}),
		logReadRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_log_read_retries_total",
			Help: "Log reads whose fetch came back empty while their consumer still had events pending (retried)"}),
		boundaryMoves: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_archive_boundary_moves_total",
			Help: "History and sync reads during which the stream's first seq moved past where they read it, so that the events in between were read from the archive."}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_gateway_polls_total",
			Help: "Long-poll requests, by result: frames (answered with frames), empty (nothing within wait), gone (the client left first), error (an HTTP error)."},
			[]string{"result"}),
		pollSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chat_gateway_poll_seconds",
			Help:    "Time from a long-poll's arrival to its answer.",
			Buckets: []float64{0.001, 0.005, 0.02, 0.1, 0.5, 1, 2.5, 5, 10, 25, 55}}),
		pollFrames: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_poll_frames_total",
			Help: "Server frames in long-poll answers (events, replies and pushes)."}),
		pollFull: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_poll_full_total",
			Help: "Long-poll answers cut at the events bound (CHAT_POLL_MAX_EVENTS): the client was behind."}),
		pollClients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chat_gateway_poll_clients",
			Help: "Long-poll clients this gateway reports as connected (presence)."}),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chat_gateway_attachment_uploads_total",
			Help: "Attachment uploads, by result: ok, refused (a 4xx answer), gone (the client went away), error."}, []string{"result"}),
		uploadBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_attachment_upload_bytes_total",
			Help: "Bytes of attachments stored."}),
		downloads: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_attachment_downloads_total",
			Help: "Attachment downloads answered (GET, not HEAD)."}),
		downloadBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "chat_gateway_attachment_download_bytes_total",
			Help: "Bytes of attachments sent."}),
	}
	reg.MustRegister(m.connections, m.connsTotal, m.framesIn, m.framesOut, m.acks, m.dups, m.errors,
		m.appendSeconds, m.batchSize, m.appendFallbacks, m.liveEvents, m.liveLagSeconds, m.closes,
		m.changes, m.reads, m.contactChanges, m.unreadPushes, m.unreadDups, m.unreadSeconds,
		m.archiveRequests, m.archiveSeconds, m.archiveEvents, m.archiveRefused, m.boundaryMoves, m.logReadRetries,
		m.polls, m.pollSeconds, m.pollFrames, m.pollFull, m.pollClients, m.uploads, m.uploadBytes, m.downloads, m.downloadBytes)
	for _, r := range []string{"frames", "empty", "gone", "error"} {
		m.polls.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "refused", "gone", "error"} {
		m.uploads.WithLabelValues(r)
	}
	for _, t := range []string{"websocket", "longpoll"} {
		m.connsTotal.WithLabelValues(t)
	}
	for _, r := range []string{"ok", "no_archive", "timeout", "error"} {
		m.archiveRequests.WithLabelValues(r)
	}
	for _, k := range []string{schemas.KindEdit, schemas.KindDelete, schemas.KindReact} {
		m.changes.WithLabelValues(k)
	}
	for _, a := range []string{schemas.ContactAdd, schemas.ContactRemove} {
		m.contactChanges.WithLabelValues(a)
	}
	for _, c := range schemas.ErrCodes {
		m.errors.WithLabelValues(string(c))
	}
	return m
}

var knownCmds = map[string]bool{
	schemas.CmdLogin: true, schemas.CmdMessage: true, schemas.CmdCreate: true, schemas.CmdJoin: true,
	schemas.CmdLeave: true, schemas.CmdInvite: true, schemas.CmdEdit: true, schemas.CmdDelete: true,
	schemas.CmdReact: true, schemas.CmdRead: true, schemas.CmdTyping: true, schemas.CmdSync: true,
	schemas.CmdHistory: true, schemas.CmdConversations: true, schemas.CmdPresence: true,
	schemas.CmdContacts: true, schemas.CmdPing: true, schemas.CmdActivity: true,
}

func cmdLabel(cmd string) string {
	if knownCmds[cmd] {
		return cmd
	}
	return "other"
}
