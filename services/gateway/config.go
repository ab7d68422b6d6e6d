package gateway

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/gateway/auth"
)

// Config of the gateway. Every field is bound to a flag and a CHAT_* variable by Bind; the zero
// value of a field means the default that Bind documents.
type Config struct {
	// Addr is the listen address of the HTTP and WebSocket server.
	Addr string
	// ID names this gateway instance in logs and NATS connection names; empty: the host name.
	ID string
	// AllowedOrigins are the browser origins allowed to open a WebSocket, besides the request's own
	// host. "*" allows any origin. Requests without an Origin header (non-browser clients) are allowed.
	AllowedOrigins []string

	Tokens auth.TokenConfig

	// SendQueue is the number of frames buffered per session; a session whose queue overflows is
	// closed with 1013 (too slow a reader).
	SendQueue int
	// RateLimit is the sustained client frames per second allowed per session, RateBurst the burst.
	RateLimit float64
	RateBurst int
	// RateStrikes is how many rate-limited frames in a row close the session (1008).
	RateStrikes int
	// MaxPendingAcks bounds the messages of one session waiting for JetStream at once.
	MaxPendingAcks int
	// PingInterval is the WebSocket ping period; a peer silent for 2.5 intervals is dropped.
	PingInterval time.Duration
	// SyncGrace is how long live events wait for a new session's first sync (see docs/protocol.md):
	// a client that sends no sync and no other command gets them after it.
	SyncGrace time.Duration
	// PresenceHeartbeat is how often each live connection is reported to the presence service; it
	// must be well under the presence connection TTL.
	PresenceHeartbeat time.Duration
	// TypingRate is the typing notices per second a session may send (burst 3); more are dropped.
	TypingRate float64
	// AuthTimeout is how long an unauthenticated socket may take to send its login frame.
	AuthTimeout time.Duration

	// BatchMax is the most events per group-commit batch (JetStream allows at most 1000);
	// BatchInflight the batches on the wire at once; AppendTimeout the wait for an answer.
	BatchMax      int
	BatchInflight int
	// BatchAtomicMin is the smallest batch stored as one JetStream atomic batch (one fsync for all);
	// smaller batches go out as pipelined single appends. 0 never uses atomic batches: right when
	// the stream does not fsync every write, where they only add cost.
	BatchAtomicMin int
	AppendTimeout  time.Duration

	// UnreadTimeout bounds a request to the unread service (conversations); past it, or with no
	// instance running, the command answers unavailable.
	UnreadTimeout time.Duration
	// ArchiveTimeout bounds a request to the archiver (history and sync older than the stream
	// keeps); past it the read answers unavailable.
	ArchiveTimeout time.Duration
	// MaxContacts bounds a user's contact list; adding past it answers bad_request.
	MaxContacts int
	// LogReaders bounds the log reads (sync, long-poll, history) running at once on this gateway:
	// each holds a short-lived JetStream consumer, and a stream allows a limited number (1,000 by
	// default); a storm of reconnects queues here instead of failing.
	LogReaders int
	// RecentEvents is how many of the newest conversation events the gateway keeps in memory to
	// answer syncs and history of the recent past without JetStream (recent.go); 0: none.
	RecentEvents int

	// PollDisconnectAfter: a long-poll client that sends no poll for this long after its last
	// poll ended counts as disconnected (presence).
	PollDisconnectAfter time.Duration
	// PollMaxClients bounds the long-poll clients this gateway tracks for presence at once; a
	// poll of a new client past it answers unavailable.
	PollMaxClients int
	// PollMaxEvents bounds the events of one poll answer; the cursor is then the last seq
	// included, and the next poll continues at once.
	PollMaxEvents int

	// AttachmentMaxBytes is the largest attachment accepted (413 too_large above it).
	AttachmentMaxBytes int64
	// AttachmentTypes are the content types an attachment may have.
	AttachmentTypes []string

	// ShutdownTimeout bounds the graceful drain on SIGTERM.
	ShutdownTimeout time.Duration
}

// DefaultAttachmentTypes are the attachment content types accepted by default.
const DefaultAttachmentTypes = "image/png,image/jpeg,image/gif,image/webp,audio/mpeg,audio/ogg,audio/webm,audio/wav," +
	"audio/mp4,application/pdf,text/plain,application/zip,application/octet-stream"

// Bind binds the options to flags and CHAT_* variables.
func (c *Config) Bind(f *platform.Flags) {
	f.String(&c.Addr, "addr", "CHAT_ADDR", "127.0.0.1:8080", "HTTP/WebSocket listen address")
	f.String(&c.ID, "gateway-id", "CHAT_GATEWAY_ID", "", "gateway instance id (default: host name)")
	f.List(&c.AllowedOrigins, "allowed-origins", "CHAT_ALLOWED_ORIGINS", "",
		"browser origins allowed besides the request's own host, e.g. https://chat.example.com; * for any")
	f.String(&c.Tokens.Alg, "jwt-alg", "CHAT_JWT_ALG", "HS256", "token algorithm: HS256, RS256 or EdDSA")
	f.Duration(&c.Tokens.TTL, "jwt-ttl", "CHAT_JWT_TTL", 24*time.Hour, "lifetime of issued tokens")
	f.String(&c.Tokens.Secret, "jwt-secret", "CHAT_JWT_SECRET", "",
		"HS256 secret (empty: -jwt-secret-file, else generated once and kept in the chat_secrets bucket)")
	f.String(&c.Tokens.SecretFile, "jwt-secret-file", "CHAT_JWT_SECRET_FILE", "", "file holding the HS256 secret")
	f.String(&c.Tokens.PublicKeyFile, "jwt-public-key", "CHAT_JWT_PUBLIC_KEY", "",
		"PEM public key (RS256/EdDSA) whose tokens are accepted, e.g. an external issuer's")
	f.String(&c.Tokens.PrivateKeyFile, "jwt-private-key", "CHAT_JWT_PRIVATE_KEY", "",
		"PEM private key (RS256/EdDSA) to issue tokens with")
	f.String(&c.Tokens.Issuer, "jwt-issuer", "CHAT_JWT_ISSUER", "", "token issuer (iss), required when set")
	f.String(&c.Tokens.Audience, "jwt-audience", "CHAT_JWT_AUDIENCE", "", "token audience (aud), required when set")
	f.Int(&c.SendQueue, "send-queue", "CHAT_SEND_QUEUE", 1024, "frames buffered per session before it is closed as too slow")
	f.Float(&c.RateLimit, "rate-limit", "CHAT_RATE_LIMIT", 50, "client frames per second per session (sustained)")
	f.Int(&c.RateBurst, "rate-burst", "CHAT_RATE_BURST", 100, "client frames per session in a burst")
	f.Int(&c.RateStrikes, "rate-strikes", "CHAT_RATE_STRIKES", 20, "rate-limited frames in a row that close the session")
	f.Int(&c.MaxPendingAcks, "max-pending-acks", "CHAT_MAX_PENDING_ACKS", 256, "messages per session awaiting storage at once")
	f.Duration(&c.PingInterval, "ping-interval", "CHAT_PING_INTERVAL", 25*time.Second, "WebSocket ping period")
	f.Duration(&c.SyncGrace, "sync-grace", "CHAT_SYNC_GRACE", 500*time.Millisecond,
		"how long a new session's live events wait for its first sync")
	f.Duration(&c.PresenceHeartbeat, "presence-heartbeat", "CHAT_PRESENCE_HEARTBEAT", schemas.PresenceHeartbeat,
		"how often each connection is reported to the presence service (well under CHAT_PRESENCE_CONN_TTL)")
	f.Float(&c.TypingRate, "typing-rate", "CHAT_TYPING_RATE", 1, "typing notices per second per session (burst 3); more are dropped")
	f.Duration(&c.AuthTimeout, "auth-timeout", "CHAT_AUTH_TIMEOUT", 10*time.Second, "time allowed for the login frame")
	f.Int(&c.BatchMax, "batch-max", "CHAT_BATCH_MAX", 1000, "most events per group-commit batch (at most 1000)")
	f.Int(&c.BatchInflight, "batch-inflight", "CHAT_BATCH_INFLIGHT", 2, "group-commit batches in flight at once")
	f.Int(&c.BatchAtomicMin, "batch-atomic-min", "CHAT_BATCH_ATOMIC_MIN", 8,
		"smallest group-commit batch stored as one atomic batch (0: never; use 0 when JetStream does not fsync every write)")
	f.Duration(&c.AppendTimeout, "append-timeout", "CHAT_APPEND_TIMEOUT", 10*time.Second, "wait for JetStream to acknowledge an append")
	f.Duration(&c.UnreadTimeout, "unread-timeout", "CHAT_UNREAD_TIMEOUT", 3*time.Second,
		"wait for the unread service to answer conversations (then unavailable)")
	f.Duration(&c.ArchiveTimeout, "archive-timeout", "CHAT_ARCHIVE_TIMEOUT", 5*time.Second,
		"wait for the archiver to answer a history or sync request older than the stream keeps (then unavailable)")
	f.Int(&c.MaxContacts, "max-contacts", "CHAT_MAX_CONTACTS", 1000, "most contacts per user")
	f.Int(&c.LogReaders, "log-readers", "CHAT_LOG_READERS", 64,
		"log reads (sync, long-poll, history) at once; each holds a JetStream consumer while it runs")
	f.Int(&c.RecentEvents, "recent-events", "CHAT_RECENT_EVENTS", 20000,
		"newest conversation events kept in memory for syncs and history of the recent past (0: none)")
	f.Duration(&c.PollDisconnectAfter, "poll-disconnect-after", "CHAT_POLL_DISCONNECT_AFTER", 15*time.Second,
		"a long-poll client with no poll for this long after its last one counts as disconnected (presence)")
	f.Int(&c.PollMaxClients, "poll-max-clients", "CHAT_POLL_MAX_CLIENTS", 100000, "long-poll clients tracked per gateway at once")
	f.Int(&c.PollMaxEvents, "poll-max-events", "CHAT_POLL_MAX_EVENTS", 500, "most events in one long-poll answer")
	f.Int64(&c.AttachmentMaxBytes, "attachment-max-bytes", "CHAT_ATTACHMENT_MAX_BYTES", 10<<20, "largest attachment accepted, in bytes")
	f.List(&c.AttachmentTypes, "attachment-types", "CHAT_ATTACHMENT_TYPES", DefaultAttachmentTypes,
		"content types accepted for attachments")
	f.Duration(&c.ShutdownTimeout, "shutdown-timeout", "CHAT_SHUTDOWN_TIMEOUT", 20*time.Second, "graceful drain limit")
}

// Defaults returns the configuration Bind documents, for tests and embedding.
func Defaults() Config {
	return Config{
		Addr: "127.0.0.1:8080", Tokens: auth.TokenConfig{Alg: "HS256", TTL: 24 * time.Hour},
		SendQueue: 1024, RateLimit: 50, RateBurst: 100, RateStrikes: 20, MaxPendingAcks: 256,
		PingInterval: 25 * time.Second, AuthTimeout: 10 * time.Second, SyncGrace: 500 * time.Millisecond,
		PresenceHeartbeat: schemas.PresenceHeartbeat, TypingRate: 1,
		BatchMax: 1000, BatchInflight: 2, BatchAtomicMin: 8, AppendTimeout: 10 * time.Second, ShutdownTimeout: 20 * time.Second,
		UnreadTimeout: 3 * time.Second, ArchiveTimeout: 5 * time.Second, MaxContacts: 1000, LogReaders: 64, RecentEvents: 20000,
		PollDisconnectAfter: 15 * time.Second, PollMaxClients: 100000, PollMaxEvents: 500,
		AttachmentMaxBytes: 10 << 20, AttachmentTypes: strings.Split(DefaultAttachmentTypes, ","),
	}
}

// Validate checks the configuration before start.
func (c *Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("addr is empty"))
	}
	if c.LogReaders < 1 {
		errs = append(errs, errors.New("log-readers must be at least 1"))
	}
	if c.RecentEvents < 0 || c.RecentEvents > 10_000_000 {
		errs = append(errs, fmt.Errorf("recent-events %d: between 0 and 10000000", c.RecentEvents))
	}
	if c.SendQueue < 16 {
		errs = append(errs, fmt.Errorf("send-queue %d: at least 16", c.SendQueue))
	}
	if c.RateLimit <= 0 || c.RateBurst < 1 || c.RateStrikes < 1 {
		errs = append(errs, errors.New("rate-limit, rate-burst and rate-strikes must be positive"))
	}
	if c.MaxPendingAcks < 1 {
		errs = append(errs, errors.New("max-pending-acks must be positive"))
	}
	if c.BatchMax < 1 || c.BatchMax > 1000 {
		errs = append(errs, fmt.Errorf("batch-max %d: between 1 and 1000", c.BatchMax))
	}
	if c.BatchAtomicMin < 0 || c.BatchAtomicMin > 1000 {
		errs = append(errs, fmt.Errorf("batch-atomic-min %d: between 0 and 1000", c.BatchAtomicMin))
	}
	if c.BatchInflight < 1 || c.BatchInflight > 32 {
		errs = append(errs, fmt.Errorf("batch-inflight %d: between 1 and 32", c.BatchInflight))
	}
	if c.PresenceHeartbeat < 100*time.Millisecond || c.TypingRate <= 0 {
		errs = append(errs, errors.New("presence-heartbeat (>= 100ms) and typing-rate must be positive"))
	}
	if c.SyncGrace < 0 || c.SyncGrace > time.Minute {
		errs = append(errs, fmt.Errorf("sync-grace %s: between 0 and 1m", c.SyncGrace))
	}
	if c.PingInterval < time.Second || c.AuthTimeout <= 0 || c.AppendTimeout <= 0 || c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("ping-interval (>= 1s), auth-timeout, append-timeout and shutdown-timeout must be positive"))
	}
	if c.UnreadTimeout <= 0 || c.UnreadTimeout > time.Minute {
		errs = append(errs, fmt.Errorf("unread-timeout %s: between 0 and 1m", c.UnreadTimeout))
	}
	if c.ArchiveTimeout <= 0 || c.ArchiveTimeout > time.Minute {
		errs = append(errs, fmt.Errorf("archive-timeout %s: between 0 and 1m", c.ArchiveTimeout))
	}
	if c.MaxContacts < 1 || c.MaxContacts > 10000 {
		errs = append(errs, fmt.Errorf("max-contacts %d: between 1 and 10000", c.MaxContacts))
	}
	if c.PollDisconnectAfter < 100*time.Millisecond || c.PollDisconnectAfter > 10*time.Minute {
		errs = append(errs, fmt.Errorf("poll-disconnect-after %s: between 100ms and 10m", c.PollDisconnectAfter))
	}
	if c.PollMaxClients < 1 {
		errs = append(errs, errors.New("poll-max-clients must be positive"))
	}
	if c.PollMaxEvents < 1 || c.PollMaxEvents > 10000 {
		errs = append(errs, fmt.Errorf("poll-max-events %d: between 1 and 10000", c.PollMaxEvents))
	}
	if c.AttachmentMaxBytes < 1 || c.AttachmentMaxBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("attachment-max-bytes %d: between 1 and 1 GiB", c.AttachmentMaxBytes))
	}
	if _, err := attachmentTypeSet(c.AttachmentTypes); err != nil {
		errs = append(errs, err)
	}
	if err := c.Tokens.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
