package platform

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// LogConfig selects the log format and level.
type LogConfig struct {
	// Level is debug, info, warn or error; empty means info.
	Level string
	// Format is json or text; empty means text.
	Format string
}

// BindLog binds the log options.
func (f *Flags) BindLog(c *LogConfig) {
	f.String(&c.Level, "log-level", "CHAT_LOG_LEVEL", "info", "log level: debug, info, warn, error")
	f.String(&c.Format, "log-format", "CHAT_LOG_FORMAT", "text", "log format: text or json")
}

// NewLogger builds the process logger.
func NewLogger(w io.Writer, c LogConfig) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(strings.ToUpper(orDefault(c.Level, "info")))); err != nil {
		return nil, fmt.Errorf("log level %q: %w", c.Level, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch orDefault(c.Format, "text") {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", c.Format)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
