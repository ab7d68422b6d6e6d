package schemas

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Presence and typing travel on core NATS (they are not events of the log):
//
//	chat.presence.conn.<user>     gateway -> presence (queue group "presence"): a connection's lifecycle
//	chat.presence.changed.<user>  presence -> every gateway: a user's aggregate status changed
//	chat.typing.dm.<a>.<b>        gateway -> every gateway: someone is typing (never stored)
//	chat.typing.g.<group>
//
//	bucket chat_presence_conns  key <user>.<conn>  one entry per live connection; memory storage;
//	                            entries expire PresenceConnTTL after their last heartbeat
//	bucket chat_presence        key <user>         the user's aggregate: status, lastSeen, devices
const (
	PresenceConnsBucket = "chat_presence_conns"
	PresenceBucket      = "chat_presence"
	PresenceQueue       = "presence"

	subjPresenceConn    = "chat.presence.conn."
	subjPresenceChanged = "chat.presence.changed."
	subjTyping          = "chat.typing."

	// PresenceConnAll and PresenceChangedAll are the subscriptions of the presence service and of
	// every gateway; TypingAll is every gateway's typing subscription.
	PresenceConnAll    = "chat.presence.conn.*"
	PresenceChangedAll = "chat.presence.changed.*"
	TypingAll          = "chat.typing.>"
)

// Presence timings (defaults; each is configurable where it is used, see docs/operations.md).
const (
	// PresenceHeartbeat is how often a gateway reports each live connection.
	PresenceHeartbeat = 6 * time.Second
	// PresenceConnTTL is how long a connection entry lives without a heartbeat: a gateway killed
	// without a goodbye leaves its users online at most this long plus the grace (and the sweep):
	// under 30 s with the defaults. Three heartbeats fit in it.
	PresenceConnTTL = 18 * time.Second
	// PresenceGrace is how long a user with no connection left stays online before going offline,
	// so a reload or a switch of transport produces no offline/online pair.
	PresenceGrace = 10 * time.Second
)

// Connection lifecycle states reported by gateways.
const (
	ConnConnect    = "connect"
	ConnHeartbeat  = "heartbeat"
	ConnIdle       = "idle"
	ConnActive     = "active"
	ConnDisconnect = "disconnect"
)

// Presence statuses.
const (
	StatusOnline  = "online"
	StatusAway    = "away"
	StatusOffline = "offline"
)

// Event types of presence and typing messages.
const (
	TypeConn            = "chat.presence.conn.v1"
	TypePresenceChanged = "chat.presence.changed.v1"
	TypeTyping          = "chat.typing.v1"
)

// ConnEvent is a gateway's report about one connection.
type ConnEvent struct {
	Type    string `json:"type"`
	User    string `json:"user"`
	Conn    string `json:"conn"`
	Gateway string `json:"gateway"`
	State   string `json:"state"`
	Idle    bool   `json:"idle,omitempty"`
	Client  string `json:"client,omitempty"`
	Ts      string `json:"ts"`
}

// ConnEntry is the value of a connection's key in PresenceConnsBucket.
type ConnEntry struct {
	Gateway string `json:"gateway"`
	Idle    bool   `json:"idle,omitempty"`
	Client  string `json:"client,omitempty"`
	Since   string `json:"since"`
}

// PresenceState is a user's aggregate in PresenceBucket. OfflineAt is set while the user has no
// connection but is still within the grace period: the time the user goes offline unless a
// connection comes back first.
type PresenceState struct {
	User      string `json:"user"`
	Status    string `json:"status"`
	LastSeen  string `json:"lastSeen,omitempty"`
	Devices   int    `json:"devices"`
	OfflineAt string `json:"offlineAt,omitempty"`
}

// PresenceChanged announces a new aggregate status.
type PresenceChanged struct {
	Type     string `json:"type"`
	User     string `json:"user"`
	Status   string `json:"status"`
	LastSeen string `json:"lastSeen,omitempty"`
}

// TypingEvent relays a typing notice.
type TypingEvent struct {
	Type    string `json:"type"`
	Conv    string `json:"conv"`
	User    string `json:"user"`
	Gateway string `json:"gateway"`
}

// PresenceConnSubject is where gateways report user's connections.
func PresenceConnSubject(user string) string { return subjPresenceConn + mustUser(user) }

// PresenceChangedSubject is where the presence service announces user's new status.
func PresenceChangedSubject(user string) string { return subjPresenceChanged + mustUser(user) }

// TypingSubject is where typing notices of conversation c travel.
func TypingSubject(c Conv) string {
	return subjTyping + ContentSubject(c)[len("chat.msg."):]
}

// ConnKey is a connection's key in PresenceConnsBucket; conn must be a valid key token.
func ConnKey(user, conn string) string {
	if !ValidMid(conn) {
		panic("schemas: ConnKey of an invalid connection id")
	}
	return mustUser(user) + "." + conn
}

// ConnsDirectGet is the direct-get API subject of the connections bucket's stream, and
// ConnsOfSubject the subjects of one user's connections in it: one multi-last direct get lists a
// user's connections without creating a consumer.
func ConnsDirectGet() string { return "$JS.API.DIRECT.GET.KV_" + PresenceConnsBucket }

// ConnsOfSubject is the subject filter of user's connection entries in the bucket's stream.
func ConnsOfSubject(user string) string {
	return "$KV." + PresenceConnsBucket + "." + ConnKeyPrefix(user)
}

// ConnKeyPrefix lists one user's connections.
func ConnKeyPrefix(user string) string { return mustUser(user) + ".*" }

// ParseConnKey splits a connection key.
func ParseConnKey(key string) (user, conn string, ok bool) {
	user, conn, ok = cutDot(key)
	return user, conn, ok && ValidUser(user) && ValidMid(conn)
}

// PresenceKey is a user's key in PresenceBucket.
func PresenceKey(user string) string { return mustUser(user) }

// PresenceBucketConfigs are the presence buckets. Connections live in memory: after a restart of
// NATS nobody is online until they reconnect, which is the truth.
func PresenceBucketConfigs(t Topology) []jetstream.KeyValueConfig {
	connTTL := t.PresenceConnTTL
	if connTTL <= 0 {
		connTTL = PresenceConnTTL
	}
	r := t.replicas()
	return []jetstream.KeyValueConfig{
		{Bucket: PresenceConnsBucket, Description: "live connections, expiring without heartbeats",
			History: 1, TTL: connTTL, LimitMarkerTTL: connTTL, Storage: jetstream.MemoryStorage, Replicas: r},
		{Bucket: PresenceBucket, Description: "per-user presence aggregate",
			History: 1, Storage: jetstream.FileStorage, Replicas: r},
	}
}
