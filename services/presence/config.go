package presence

import (
	"errors"
	"fmt"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
)

// DefaultSweep is how often pending offlines are checked by default: a user goes offline between
// Grace and Grace+Sweep after the last connection went.
const DefaultSweep = 500 * time.Millisecond

// Config of the presence service. Every field is bound to a flag and a CHAT_* variable by Bind;
// the connection TTL is part of the topology (CHAT_PRESENCE_CONN_TTL, platform.BindTopology).
type Config struct {
	// ID names this instance in logs; empty: the host name.
	ID string
	// Grace is how long a user with no connection left keeps its status before going offline, so
	// a reload or a switch of transport produces no offline/online pair.
	Grace time.Duration
	// Sweep is how often pending offlines are checked.
	Sweep time.Duration
}

// Bind binds the options to flags and CHAT_* variables.
func (c *Config) Bind(f *platform.Flags) {
	f.String(&c.ID, "presence-id", "CHAT_PRESENCE_ID", "", "presence instance id (default: host name)")
	f.Duration(&c.Grace, "presence-grace", "CHAT_PRESENCE_GRACE", schemas.PresenceGrace,
		"how long a user without connections keeps its status before going offline")
	f.Duration(&c.Sweep, "presence-sweep", "CHAT_PRESENCE_SWEEP", DefaultSweep,
		"how often pending offlines are checked (offline comes between grace and grace+sweep)")
}

// Defaults returns the configuration Bind documents, for tests and embedding.
func Defaults() Config {
	return Config{Grace: schemas.PresenceGrace, Sweep: DefaultSweep}
}

// Validate checks the configuration before start.
func (c *Config) Validate() error {
	var errs []error
	if c.Grace < 0 || c.Grace > time.Hour {
		errs = append(errs, fmt.Errorf("presence-grace %s: between 0 and 1h", c.Grace))
	}
	if c.Sweep < 10*time.Millisecond || c.Sweep > time.Minute {
		errs = append(errs, fmt.Errorf("presence-sweep %s: between 10ms and 1m", c.Sweep))
	}
	if len(c.ID) > 128 {
		errs = append(errs, errors.New("presence-id: at most 128 characters"))
	}
	return errors.Join(errs...)
}
