package unread

import (
	"errors"
	"fmt"
	"time"

	"github.com/eventchat/chat/platform"
)

// Defaults of the settings.
const (
	// DefaultQueryWait bounds how long a conversations request waits for the projection to reach
	// the request's MinSeq.
	DefaultQueryWait = 2 * time.Second
	// DefaultSnapshotEvery is how often a changed projection is saved.
	DefaultSnapshotEvery = 30 * time.Second
)

// Config of the unread service. Every field is bound to a flag and a CHAT_UNREAD_* variable by Bind.
type Config struct {
	// ID names this instance in logs and in the Unread-Instance header of its answers; empty: the
	// host name.
	ID string
	// QueryWait bounds how long a conversations request waits for the projection to reach its
	// MinSeq before it is answered unavailable.
	QueryWait time.Duration
	// SnapshotEvery is how often the projection is saved to the object store when it changed
	// (and once more on shutdown), so a restart replays only what came after.
	SnapshotEvery time.Duration
	// Rebuild ignores the saved snapshot and replays the whole log on start.
	Rebuild bool
}

// Bind binds the options to flags and CHAT_UNREAD_* variables.
func (c *Config) Bind(f *platform.Flags) {
	f.String(&c.ID, "unread-id", "CHAT_UNREAD_ID", "", "unread instance id (default: host name)")
	f.Duration(&c.QueryWait, "unread-query-wait", "CHAT_UNREAD_QUERY_WAIT", DefaultQueryWait,
		"how long a conversations request waits for the projection to catch up with its minSeq")
	f.Duration(&c.SnapshotEvery, "unread-snapshot-every", "CHAT_UNREAD_SNAPSHOT_EVERY", DefaultSnapshotEvery,
		"how often a changed projection is saved to the object store (also on shutdown)")
	f.Bool(&c.Rebuild, "unread-rebuild", "CHAT_UNREAD_REBUILD", false,
		"ignore the saved snapshot and rebuild the projection from the whole log on start")
}

// Defaults returns the configuration Bind documents, for tests and embedding.
func Defaults() Config {
	return Config{QueryWait: DefaultQueryWait, SnapshotEvery: DefaultSnapshotEvery}
}

// Validate checks the configuration before start.
func (c *Config) Validate() error {
	var errs []error
	if c.QueryWait < 0 || c.QueryWait > time.Minute {
		errs = append(errs, fmt.Errorf("unread-query-wait %s: between 0 and 1m", c.QueryWait))
	}
	if c.SnapshotEvery < 10*time.Millisecond || c.SnapshotEvery > 24*time.Hour {
		errs = append(errs, fmt.Errorf("unread-snapshot-every %s: between 10ms and 24h", c.SnapshotEvery))
	}
	if len(c.ID) > 128 {
		errs = append(errs, errors.New("unread-id: at most 128 characters"))
	}
	return errors.Join(errs...)
}
