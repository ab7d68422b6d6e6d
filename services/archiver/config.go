package archiver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/archiver/chstore"
)

// Defaults of the settings.
const (
	DefaultDatabase      = "chat"
	DefaultUser          = "default"
	DefaultBatchSize     = 5000
	DefaultBatchWait     = time.Second
	DefaultAckWait       = 60 * time.Second
	DefaultInsertTimeout = 15 * time.Second
	DefaultRetryMin      = 250 * time.Millisecond
	DefaultRetryMax      = 30 * time.Second
	DefaultReadyLag      = 5 * time.Minute
	DefaultQueryTimeout  = 10 * time.Second
	DefaultAnalyticsWait = 60 * time.Second
	DefaultTrimEvery     = time.Minute
	DefaultShutdown      = 10 * time.Second
	// MaxBatchSize bounds BatchSize: the consumer lets 4 batches be pending at once.
	MaxBatchSize = 100_000
)

// Config of the archiver. Every field is bound to a flag and a CHAT_ARCHIVER_*, CHAT_ARCHIVE_* or
// CHAT_CLICKHOUSE_* variable by Bind.
type Config struct {
	// Addrs are the ClickHouse native-protocol addresses (host:port), tried in order. None: the
	// archiver is disabled (Enabled reports it; New refuses such a config).
	Addrs []string
	// Database is the archive's database, created by the migrations.
	Database string
	// User and Password authenticate to ClickHouse; Password comes from CHAT_CLICKHOUSE_PASSWORD
	// (no flag, so it is never printed) or, when set, from the file PasswordFile.
	User, Password, PasswordFile string

	// ID names this instance in logs; empty: the host name.
	ID string
	// BatchSize is the most events inserted with one INSERT; BatchWait is how long the first
	// event of a batch waits for more before the batch is inserted anyway.
	BatchSize int
	BatchWait time.Duration
	// AckWait is the consumer's redelivery timeout: an event neither acknowledged nor marked in
	// progress for that long goes to another instance. InsertTimeout bounds one insert attempt
	// and must be well under it (at most AckWait/3; see the package doc).
	AckWait       time.Duration
	InsertTimeout time.Duration
	// RetryMin and RetryMax bound the exponential backoff between attempts of a batch that
	// ClickHouse refused.
	RetryMin, RetryMax time.Duration
	// ReadyLag: the instance reports not ready while the oldest event it holds is older than
	// this (0: lag does not affect readiness).
	ReadyLag time.Duration
	// QueryTimeout bounds an events request; AnalyticsTimeout an analytics report.
	QueryTimeout     time.Duration
	AnalyticsTimeout time.Duration
	// ShutdownTimeout bounds finishing the batch in hand (and the answers in progress) on
	// shutdown; a batch ClickHouse has not taken by then is redelivered after AckWait.
	ShutdownTimeout time.Duration

	// Keep is the age of the events the stream keeps once they are archived (0: keep everything;
	// KeepBytes likewise bounds its size). When either is set, the archiver trims the stream every
	// TrimEvery, never past what is archived. Keep must be at least the dedup window.
	Keep      time.Duration
	KeepBytes int64
	TrimEvery time.Duration

	// windows shape how an events request reads its range (zero: defaultWindows; tests).
	windows windowing
	// afterInsert, when set (tests), runs after a batch was inserted and before it is
	// acknowledged, with the batch's seqs.
	afterInsert func(seqs []uint64)
}

// Bind binds the options to flags and environment variables.
func (c *Config) Bind(f *platform.Flags) {
	f.List(&c.Addrs, "clickhouse-addr", "CHAT_CLICKHOUSE_ADDR", "",
		"ClickHouse native-protocol addresses host:port (empty: no archive)")
	f.String(&c.Database, "clickhouse-db", "CHAT_CLICKHOUSE_DB", DefaultDatabase, "ClickHouse database of the archive")
	f.String(&c.User, "clickhouse-user", "CHAT_CLICKHOUSE_USER", DefaultUser, "ClickHouse user")
	// The password itself is read from the environment only, so -help never prints it.
	c.Password = os.Getenv("CHAT_CLICKHOUSE_PASSWORD")
	f.String(&c.PasswordFile, "clickhouse-password-file", "CHAT_CLICKHOUSE_PASSWORD_FILE", "",
		"file holding the ClickHouse password (or set CHAT_CLICKHOUSE_PASSWORD, never a flag)")
	f.String(&c.ID, "archiver-id", "CHAT_ARCHIVER_ID", "", "archiver instance id (default: host name)")
	f.Int(&c.BatchSize, "archiver-batch-size", "CHAT_ARCHIVER_BATCH_SIZE", DefaultBatchSize,
		"most events per ClickHouse insert")
	f.Duration(&c.BatchWait, "archiver-batch-wait", "CHAT_ARCHIVER_BATCH_WAIT", DefaultBatchWait,
		"how long an event waits for its batch to fill before it is inserted anyway")
	f.Duration(&c.AckWait, "archiver-ack-wait", "CHAT_ARCHIVER_ACK_WAIT", DefaultAckWait,
		"redelivery timeout of the archiver consumer (events in work are kept in progress)")
	f.Duration(&c.InsertTimeout, "archiver-insert-timeout", "CHAT_ARCHIVER_INSERT_TIMEOUT", DefaultInsertTimeout,
		"bound on one insert attempt (at most a third of the ack wait)")
	f.Duration(&c.RetryMin, "archiver-retry-min", "CHAT_ARCHIVER_RETRY_MIN", DefaultRetryMin,
		"first pause before retrying a batch ClickHouse refused")
	f.Duration(&c.RetryMax, "archiver-retry-max", "CHAT_ARCHIVER_RETRY_MAX", DefaultRetryMax,
		"longest pause between retries of a batch (exponential backoff)")
	f.Duration(&c.ReadyLag, "archiver-ready-lag", "CHAT_ARCHIVER_READY_LAG", DefaultReadyLag,
		"not ready while the oldest event in hand is older than this (0: ignore lag)")
	f.Duration(&c.QueryTimeout, "archiver-query-timeout", "CHAT_ARCHIVER_QUERY_TIMEOUT", DefaultQueryTimeout,
		"bound on answering an events (history) request")
	f.Duration(&c.AnalyticsTimeout, "archiver-analytics-timeout", "CHAT_ARCHIVER_ANALYTICS_TIMEOUT", DefaultAnalyticsWait,
		"bound on running an analytics report")
	f.Duration(&c.ShutdownTimeout, "archiver-shutdown-timeout", "CHAT_ARCHIVER_SHUTDOWN_TIMEOUT", DefaultShutdown,
		"bound on finishing the batch in hand on shutdown")
	f.Duration(&c.Keep, "archive-keep", "CHAT_ARCHIVE_KEEP", 0,
		"trim archived events older than this from the stream (0: keep; at least the dedup window)")
	f.Int64(&c.KeepBytes, "archive-keep-bytes", "CHAT_ARCHIVE_KEEP_BYTES", 0,
		"trim archived events beyond this size of the stream (0: keep)")
	f.Duration(&c.TrimEvery, "archive-trim-every", "CHAT_ARCHIVE_TRIM_EVERY", DefaultTrimEvery,
		"how often the stream is trimmed when a keep limit is set")
}

// Defaults returns the configuration Bind documents (with no ClickHouse address), for tests and
// embedding.
func Defaults() Config {
	return Config{
		Database: DefaultDatabase, User: DefaultUser,
		BatchSize: DefaultBatchSize, BatchWait: DefaultBatchWait,
		AckWait: DefaultAckWait, InsertTimeout: DefaultInsertTimeout,
		RetryMin: DefaultRetryMin, RetryMax: DefaultRetryMax, ReadyLag: DefaultReadyLag,
		QueryTimeout: DefaultQueryTimeout, AnalyticsTimeout: DefaultAnalyticsWait,
		TrimEvery: DefaultTrimEvery, ShutdownTimeout: DefaultShutdown,
	}
}

// Enabled reports whether an archive is configured (a ClickHouse address is set).
func (c *Config) Enabled() bool { return len(c.Addrs) > 0 }

// Trims reports whether the archiver trims the stream (a keep limit is set).
func (c *Config) Trims() bool { return c.Keep > 0 || c.KeepBytes > 0 }

// Validate checks the configuration before start. A disabled config (no address) is valid.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for _, a := range c.Addrs {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			bad("clickhouse-addr %q: want host:port", a)
		}
	}
	if !chstore.ValidDatabase(c.Database) {
		bad("clickhouse-db %q: letters, digits and '_', not starting with a digit, at most 63", c.Database)
	}
	if c.User == "" || strings.ContainsAny(c.User, "\x00\r\n") {
		bad("clickhouse-user: required, one line")
	}
	if c.Password != "" && c.PasswordFile != "" {
		bad("CHAT_CLICKHOUSE_PASSWORD and clickhouse-password-file: set one")
	}
	if len(c.ID) > 128 {
		errs = append(errs, errors.New("archiver-id: at most 128 characters"))
	}
	if c.BatchSize < 1 || c.BatchSize > MaxBatchSize {
		bad("archiver-batch-size %d: between 1 and %d", c.BatchSize, MaxBatchSize)
	}
	if c.BatchWait < time.Millisecond || c.BatchWait > time.Minute {
		bad("archiver-batch-wait %s: between 1ms and 1m", c.BatchWait)
	}
	if c.AckWait < time.Second || c.AckWait > time.Hour {
		bad("archiver-ack-wait %s: between 1s and 1h", c.AckWait)
	}
	if c.InsertTimeout <= 0 || c.InsertTimeout > c.AckWait/3 {
		bad("archiver-insert-timeout %s: positive and at most a third of archiver-ack-wait (%s)", c.InsertTimeout, c.AckWait)
	}
	if c.RetryMin <= 0 || c.RetryMax < c.RetryMin || c.RetryMax > 10*time.Minute {
		bad("archiver-retry-min %s / -max %s: 0 < min <= max <= 10m", c.RetryMin, c.RetryMax)
	}
	if c.ReadyLag < 0 {
		bad("archiver-ready-lag %s: not negative", c.ReadyLag)
	}
	if c.QueryTimeout < 100*time.Millisecond || c.QueryTimeout > 10*time.Minute {
		bad("archiver-query-timeout %s: between 100ms and 10m", c.QueryTimeout)
	}
	if c.AnalyticsTimeout < 100*time.Millisecond || c.AnalyticsTimeout > time.Hour {
		bad("archiver-analytics-timeout %s: between 100ms and 1h", c.AnalyticsTimeout)
	}
	if c.ShutdownTimeout <= 0 || c.ShutdownTimeout > 10*time.Minute {
		bad("archiver-shutdown-timeout %s: positive, at most 10m", c.ShutdownTimeout)
	}
	if c.Keep < 0 || c.KeepBytes < 0 {
		bad("archive-keep %s / archive-keep-bytes %d: not negative", c.Keep, c.KeepBytes)
	}
	if c.TrimEvery < 10*time.Millisecond || c.TrimEvery > 24*time.Hour {
		bad("archive-trim-every %s: between 10ms and 24h", c.TrimEvery)
	}
	return errors.Join(errs...)
}

// ValidateTopology checks the settings that depend on the stream's: Keep must cover the dedup
// window, so a retried mid still finds its first copy in the stream.
func (c *Config) ValidateTopology(t schemas.Topology) error {
	if c.Keep > 0 && c.Keep < dedupWindow(t) {
		return fmt.Errorf("archive-keep %s: at least the dedup window (%s)", c.Keep, dedupWindow(t))
	}
	return nil
}

// dedupWindow is the stream's duplicate window as schemas.EventsStreamConfig sets it.
func dedupWindow(t schemas.Topology) time.Duration {
	return schemas.EventsStreamConfig(t).Duplicates
}

// password is the configured password, read from PasswordFile when that is set.
func (c *Config) password() (string, error) {
	if c.PasswordFile == "" {
		return c.Password, nil
	}
	data, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("clickhouse-password-file: %w", err)
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}
