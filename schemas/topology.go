package schemas

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The whole JetStream topology of the system, on one screen: every stream, bucket and consumer.
//
//	stream CHAT_EVENTS   subjects chat.msg.>, chat.mem.>, chat.read.>, chat.contact.>, chat.gone.>
//	                     the event log; stream sequence = protocol seq (subjects: subjects.go)
//	                     writers: gateway (appends client commands as events)
//	                     readers: gateway (live ordered consumer per process; per-request ordered consumers
//	                              for sync and history), unread (ordered consumer per instance, whole log),
//	                              later the archiver (durable consumer)
//	bucket chat_users    key <user>              account: name, password hash      writer: gateway; readers: gateway, unread (names)
//	bucket chat_groups   key <group>             group state projected from chat.mem.g.<group> (members,
//	                                             since/left seqs, last applied seq)  writer/reader: gateway
//	bucket chat_index    key <user>.d.<other>,   the conversations a user is or was in; chooses the
//	                         <user>.g.<group>    subjects a sync reads             writer/reader: gateway
//	bucket chat_secrets  key jwt-hs256           generated token signing key (when none is configured)
//	bucket chat_contacts key <user>              contact list projected from chat.contact.<user>  writer/reader: gateway
//	bucket chat_archive  key trimmed             content events below this seq may be purged from the
//	                                             stream (all archived)  writer: archiver; reader: gateway
//	objects chat_unread  object state            unread projection snapshot        writer/reader: unread
//	objects chat_attachments  object <attachment id>  an uploaded file; metadata conv, uploader,
//	                                             contentType, size, name, sha256   writer/reader: gateway
//	presence buckets and subjects: see presence.go; the unread service's subjects: unread.go
const (
	EventsStream  = "CHAT_EVENTS"
	UsersBucket   = "chat_users"
	GroupsBucket  = "chat_groups"
	IndexBucket   = "chat_index"
	SecretsBucket = "chat_secrets"
	// ContactsBucket holds each user's contact list, key ContactsKey(owner), value Contacts: a
	// projection of the chat.contact.<owner> events, written by the gateway that appends them.
	ContactsBucket = "chat_contacts"
	// ArchiveBucket holds the archive's state that other services read: key ArchiveTrimKey.
	ArchiveBucket = "chat_archive"
	// AttachmentsBucket is the object store of uploaded attachments: object name = attachment id
	// (ValidAttachmentID), metadata AttachmentMeta*.
	AttachmentsBucket = "chat_attachments"

	// SecretKeyHS256 is the key of the generated HS256 token signing secret in SecretsBucket.
	SecretKeyHS256 = "jwt-hs256"
)

// Topology holds the settings that shape streams and buckets. The zero value is valid: R1, file
// storage, keep events forever, a 24 h dedup window.
type Topology struct {
	// Replicas for the stream and buckets; 0 means 1. Use 3 on a NATS cluster.
	Replicas int
	// MaxAge of events in the log; 0 keeps them forever. Sync from before the window answers
	// unavailable (or from the archive, when one is configured).
	MaxAge time.Duration
	// MaxBytes of the log; 0 is unlimited.
	MaxBytes int64
	// DedupWindow is how long a mid is remembered per sender; 0 means 24 h.
	DedupWindow time.Duration
	// PresenceConnTTL is how long a connection entry lives without a heartbeat; 0 means
	// PresenceConnTTL (18 s).
	PresenceConnTTL time.Duration
}

func (t Topology) replicas() int {
	if t.Replicas <= 0 {
		return 1
	}
	return t.Replicas
}

func (t Topology) dedup() time.Duration {
	d := t.DedupWindow
	if d <= 0 {
		d = 24 * time.Hour
	}
	// JetStream requires the dedup window to be within MaxAge.
	if t.MaxAge > 0 && d > t.MaxAge {
		d = t.MaxAge
	}
	return d
}

// EventsStreamConfig is the definition of the event log.
func EventsStreamConfig(t Topology) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        EventsStream,
		Description: "chat event log: every conversation event; the stream sequence is the protocol seq",
		Subjects:    EventSubjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    t.replicas(),
		MaxAge:      t.MaxAge,
		MaxBytes:    nonZero(t.MaxBytes),
		Duplicates:  t.dedup(),
		Discard:     jetstream.DiscardOld,
		// Message-level limits guard the log against oversized appends.
		MaxMsgSize: 256 * 1024,
		// Atomic batches amortize the per-write fsync: the gateway's group commit.
		AllowAtomicPublish: true,
		AllowDirect:        true,
		DenyDelete:         true,
	}
}

// BucketConfigs are the definitions of the key-value buckets.
func BucketConfigs(t Topology) []jetstream.KeyValueConfig {
	r := t.replicas()
	return []jetstream.KeyValueConfig{
		{Bucket: UsersBucket, Description: "accounts", History: 1, Replicas: r, Storage: jetstream.FileStorage},
		{Bucket: GroupsBucket, Description: "group state projected from membership events", History: 1, Replicas: r, Storage: jetstream.FileStorage},
		{Bucket: IndexBucket, Description: "conversations per user", History: 1, Replicas: r, Storage: jetstream.FileStorage},
		{Bucket: SecretsBucket, Description: "generated signing keys", History: 1, Replicas: r, Storage: jetstream.FileStorage},
		{Bucket: ContactsBucket, Description: "contact lists projected from contact events", History: 1, Replicas: r, Storage: jetstream.FileStorage},
		{Bucket: ArchiveBucket, Description: "archive state: the stream's trim point", History: 1, Replicas: r, Storage: jetstream.FileStorage},
	}
}

// ObjectStoreConfigs are the definitions of the object stores.
func ObjectStoreConfigs(t Topology) []jetstream.ObjectStoreConfig {
	return []jetstream.ObjectStoreConfig{
		{Bucket: UnreadSnapshotBucket, Description: "snapshots of the unread projection", Replicas: t.replicas(), Storage: jetstream.FileStorage},
		{Bucket: AttachmentsBucket, Description: "attachments (images, audio, files) uploaded to conversations", Replicas: t.replicas(), Storage: jetstream.FileStorage},
	}
}

// AllBucketConfigs are every bucket of the system: the core ones and the presence ones.
func AllBucketConfigs(t Topology) []jetstream.KeyValueConfig {
	return append(BucketConfigs(t), PresenceBucketConfigs(t)...)
}

// LiveConsumerConfig is the ordered consumer each gateway process reads the whole log with, from
// startSeq on, to push events to its sessions.
func LiveConsumerConfig(startSeq uint64) jetstream.OrderedConsumerConfig {
	return jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       startSeq,
		InactiveThreshold: 30 * time.Second,
	}
}

// ReadConsumerConfig is the short-lived ordered consumer a sync or history request reads the events
// of some conversations with, from startSeq on.
func ReadConsumerConfig(filters []string, startSeq uint64) jetstream.OrderedConsumerConfig {
	if startSeq == 0 {
		startSeq = 1
	}
	return jetstream.OrderedConsumerConfig{
		FilterSubjects:    filters,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       startSeq,
		InactiveThreshold: 10 * time.Second,
	}
}

// Ensure creates the stream and buckets, or brings an existing one's settings up to date. It never
// deletes a stream or bucket: a change JetStream cannot apply in place is returned as an error for an
// operator to resolve.
func Ensure(ctx context.Context, js jetstream.JetStream, t Topology) error {
	if _, err := js.CreateOrUpdateStream(ctx, EventsStreamConfig(t)); err != nil {
		return fmt.Errorf("schemas: ensure stream %s: %w", EventsStream, err)
	}
	for _, b := range AllBucketConfigs(t) {
		if _, err := js.CreateOrUpdateKeyValue(ctx, b); err != nil {
			return fmt.Errorf("schemas: ensure bucket %s: %w", b.Bucket, err)
		}
	}
	for _, o := range ObjectStoreConfigs(t) {
		if _, err := js.CreateOrUpdateObjectStore(ctx, o); err != nil {
			return fmt.Errorf("schemas: ensure object store %s: %w", o.Bucket, err)
		}
	}
	return nil
}

// Check reports whether the stream and buckets exist, without changing anything (readiness).
func Check(ctx context.Context, js jetstream.JetStream) error {
	if _, err := js.Stream(ctx, EventsStream); err != nil {
		return fmt.Errorf("stream %s: %w", EventsStream, err)
	}
	for _, b := range []string{UsersBucket, GroupsBucket, IndexBucket, ContactsBucket} {
		if _, err := js.KeyValue(ctx, b); err != nil {
			return fmt.Errorf("bucket %s: %w", b, err)
		}
	}
	return nil
}

func nonZero(v int64) int64 {
	if v == 0 {
		return -1
	}
	return v
}
