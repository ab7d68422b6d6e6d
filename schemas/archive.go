package schemas

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The archiver's NATS contract. The archiver is the only service that talks to ClickHouse; the
// gateway and chatctl reach the archive through these requests (queue group "archiver": any
// instance answers):
//
//	chat.archive.req.events      gateway -> archiver: ArchiveEventsRequest -> ArchiveEventsReply
//	                             (history and sync older than the stream keeps)
//	chat.archive.req.analytics   chatctl -> archiver: AnalyticsRequest -> AnalyticsReply
//
//	durable consumer "archiver" on CHAT_EVENTS (explicit ack, shared by every instance): every
//	event goes to ClickHouse, acknowledged only once ClickHouse has accepted its batch.
const (
	ArchiverQueue        = "archiver"
	ArchiverConsumer     = "archiver"
	ArchiveEventsRq      = "chat.archive.req.events"
	ArchiveAnalyticsRq   = "chat.archive.req.analytics"
	MaxArchiveEventsPage = 1000
	// MaxArchiveConvs is the most conversations one ArchiveEventsRequest may name.
	MaxArchiveConvs = 1000
)

// ArchiverConsumerConfig is the durable consumer every archiver instance shares: the whole log
// from its first event, every subject, explicit acks (an event is acknowledged once ClickHouse
// holds it), redelivered after ackWait without an ack or progress signal, never given up.
func ArchiverConsumerConfig(ackWait time.Duration, maxAckPending int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ArchiverConsumer,
		Description:   "archiver: every event into ClickHouse; its ack floor is the archived seq",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: maxAckPending,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}
}

// The archiver trims the stream's content, never its other events: it purges TrimmedSubjects
// below a trim point, and records the point first (bucket ArchiveBucket, key ArchiveTrimKey, the
// decimal seq; it only rises). Every event of those subjects below the point is archived; readers
// take max(the stream's first seq, the point) as the first seq whose content the stream still
// holds. Membership, contact and deletion-marker events stay in the stream: the compare-and-swap
// appends and the projections that repair from the log need them.
const ArchiveTrimKey = "trimmed"

// TrimmedSubjects are the subjects the archiver purges below its trim point.
var TrimmedSubjects = []string{"chat.msg.>", "chat.read.>"}

// ArchiveConv is one conversation of an ArchiveEventsRequest and the seqs the user may see in it:
// from From (inclusive) to To (exclusive; 0: no end), as the gateway's membership rules say. The
// user's own member events of it are visible whatever their seq.
type ArchiveConv struct {
	Conv string `json:"conv"`
	From uint64 `json:"from,omitempty"`
	To   uint64 `json:"to,omitempty"`
}

// ArchiveEventsRequest asks for the conversation events (messages, edits, deletes, reactions,
// member events) of Convs that User may see, with After < seq < Before (each bound exclusive; 0:
// none), at most Limit (1..MaxArchiveEventsPage), oldest first, or newest first with Desc. Private
// (tid) events are returned only to their sender, target or the author of the message they refer
// to, exactly as schemas.Event.VisibleTo says.
type ArchiveEventsRequest struct {
	User   string        `json:"user"`
	Convs  []ArchiveConv `json:"convs"`
	After  uint64        `json:"after,omitempty"`
	Before uint64        `json:"before,omitempty"`
	Limit  int           `json:"limit"`
	Desc   bool          `json:"desc,omitempty"`
}

// ArchivedEvent is one event from the archive: its stream sequence and its payload as stored in
// the log (decode with DecodeEvent).
type ArchivedEvent struct {
	Seq  uint64          `json:"seq"`
	Data json.RawMessage `json:"data"`
}

// ArchiveEventsReply answers an ArchiveEventsRequest, in the order asked. Archived is the highest
// seq the archive holds (every event up to it is there: the archiver consumer's ack floor, read
// before the query); Events holds only seqs up to Archived, so a page never skips an event still
// in flight to the archive: the events after Archived are read from the stream (and if the
// stream's first seq is already past Archived+1, ask again). An error has ErrCode.
type ArchiveEventsReply struct {
	Events   []ArchivedEvent `json:"events"`
	Archived uint64          `json:"archived"`
	ErrCode  ErrCode         `json:"errCode,omitempty"`
	ErrMsg   string          `json:"errMsg,omitempty"`
}

// AnalyticsRequest runs one analytics report (see docs/analytics.md) over [Since, Until) (dates
// or RFC 3339 times, UTC; empty: unbounded), optionally for one conversation.
type AnalyticsRequest struct {
	Report string `json:"report"`
	Since  string `json:"since,omitempty"`
	Until  string `json:"until,omitempty"`
	Conv   string `json:"conv,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// AnalyticsReply is a report's table: column names and rows of JSON values (strings, numbers).
type AnalyticsReply struct {
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
	ErrCode ErrCode  `json:"errCode,omitempty"`
	ErrMsg  string   `json:"errMsg,omitempty"`
}
