package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go"
)

// reportInfo describes a report for `chatctl analytics list` and the help. The archiver is the
// authority on which reports exist: chatctl sends any name and prints the archiver's answer.
type reportInfo struct {
	name, columns, summary string
}

var reportList = []reportInfo{
	{"messages-per-day", "day, messages", "ordinary messages sent per UTC day (--conv: one conversation)"},
	{"active-users", "period, start, users", "daily (period day) and weekly (period week, from Monday) active senders (--conv)"},
	{"busiest-conversations", "conv, messages, senders", "conversations with the most messages (--limit, default 20)"},
	{"first-response-time", "conversations, unanswered, median_ms, p90_ms", "time to the first reply in direct conversations started in the window"},
	{"messages-by-type", "type, messages", "ordinary messages per message type: text, image, audio, file (--conv)"},
}

const analyticsUsage = `usage: chatctl analytics <report> [flags]
       chatctl analytics list

Runs a report on the ClickHouse archive: chatctl asks the archiver over NATS
(chat.archive.req.analytics) and prints its table. docs/analytics.md has each report's definition
and SQL.

flags (before or after the report):
  --since D         from D, inclusive: a date (2006-01-02, UTC midnight) or an RFC 3339 time
  --until D         to D, exclusive (same forms)
  --conv C          one conversation (dm:<a>:<b> or g:<group>), for the reports that take one
  --limit N         rows of a ranking report, 1..1000 (default 20)
  --format F        table (default), json (an array of objects) or csv (with a header)
  --timeout T       how long to wait for the archiver (default 65s, just above the archiver's own
                    60s bound on a report; env CHAT_CHATCTL_TIMEOUT)
  --nats-url URL    NATS server URL(s) (env CHAT_NATS_URL, default nats://127.0.0.1:4222)
  --nats-creds F    NATS credentials file (env CHAT_NATS_CREDS)

exit codes: 0 ok; 1 failure (no archiver answered, NATS unreachable, archive error);
2 bad usage or a request the archiver refused (unknown report, bad parameter).
`

// defaultTimeout is how long chatctl waits for an answer: longer than the archiver's default bound
// on a report (CHAT_ARCHIVER_ANALYTICS_TIMEOUT, 60s), so a report that runs out of time is
// reported as the archiver's error, not as a missing archiver.
const defaultTimeout = 65 * time.Second

// errNoArchiver is what chatctl says when nobody answers the request.
const errNoArchiver = "no archiver answered on NATS: is one running with CHAT_CLICKHOUSE_ADDR set?"

// usageError is a mistake in the command line (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// analyticsOpts is a parsed `chatctl analytics` command line.
type analyticsOpts struct {
	list    bool
	req     schemas.AnalyticsRequest
	format  string
	timeout time.Duration
	nats    platform.NATSConfig
}

// parseAnalytics parses the arguments after `analytics`. Flags may come before or after the
// report name. It returns flag.ErrHelp for -h/--help/help.
func parseAnalytics(args []string) (analyticsOpts, error) {
	var o analyticsOpts
	fs := flag.NewFlagSet("chatctl analytics", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	f := platform.NewFlags(fs)
	fs.StringVar(&o.req.Since, "since", "", "")
	fs.StringVar(&o.req.Until, "until", "", "")
	fs.StringVar(&o.req.Conv, "conv", "", "")
	fs.IntVar(&o.req.Limit, "limit", 0, "")
	fs.StringVar(&o.format, "format", "table", "")
	f.Duration(&o.timeout, "timeout", "CHAT_CHATCTL_TIMEOUT", defaultTimeout, "")
	f.BindNATS(&o.nats)
	if err := f.Err(); err != nil {
		return o, usagef("%v", err)
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return o, err
			}
			return o, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	switch {
	case len(pos) == 0:
		return o, usagef("which report? (chatctl analytics list)")
	case len(pos) > 1:
		return o, usagef("one report at a time; unexpected %q", strings.Join(pos[1:], " "))
	case pos[0] == "help":
		return o, flag.ErrHelp
	case pos[0] == "list":
		o.list = true
	}
	o.req.Report = pos[0]
	switch o.format {
	case "table", "json", "csv":
	default:
		return o, usagef("--format %q: want table, json or csv", o.format)
	}
	limitSet := false
	fs.Visit(func(fl *flag.Flag) { limitSet = limitSet || fl.Name == "limit" })
	if limitSet && (o.req.Limit < 1 || o.req.Limit > 1000) {
		return o, usagef("--limit %d: want 1..1000", o.req.Limit)
	}
	if o.timeout <= 0 {
		return o, usagef("--timeout must be positive")
	}
	return o, nil
}

func analyticsCmd(args []string, stdout, stderr io.Writer) int {
	o, err := parseAnalytics(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, analyticsUsage)
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "chatctl analytics: %s\n\n%s", ue.msg, analyticsUsage)
		return exitUsage
	}
	if o.list {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "REPORT\tCOLUMNS\tWHAT")
		for _, r := range reportList {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.name, r.columns, r.summary)
		}
		_ = tw.Flush()
		return exitOK
	}
	ctx, stop := platform.SignalContext()
	defer stop()
	reply, code, err := requestAnalytics(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "chatctl analytics:", err)
		return code
	}
	if err := writeTable(stdout, o.format, reply.Columns, reply.Rows); err != nil {
		fmt.Fprintln(stderr, "chatctl analytics:", err)
		return exitFailure
	}
	return exitOK
}

// requestAnalytics asks the archiver and returns its table, or an error with the exit code it
// calls for.
func requestAnalytics(ctx context.Context, o analyticsOpts) (schemas.AnalyticsReply, int, error) {
	var reply schemas.AnalyticsReply
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	nc, err := platform.Connect(o.nats, "chatctl", log)
	if err != nil {
		return reply, exitFailure, fmt.Errorf("cannot reach NATS: %w", err)
	}
	defer nc.Close()
	data, err := json.Marshal(o.req)
	if err != nil {
		return reply, exitFailure, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, schemas.ArchiveAnalyticsRq, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return reply, exitFailure, errors.New(errNoArchiver)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return reply, exitFailure, fmt.Errorf("%s (no answer within %s; a long report may need a larger --timeout)", errNoArchiver, o.timeout)
	case err != nil:
		return reply, exitFailure, fmt.Errorf("request to the archiver: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(msg.Data))
	dec.UseNumber() // counts print exactly, whatever their size
	if err := dec.Decode(&reply); err != nil {
		return reply, exitFailure, fmt.Errorf("the archiver's answer does not decode: %w", err)
	}
	switch reply.ErrCode {
	case "":
		return reply, exitOK, nil
	case schemas.CodeBadRequest:
		return reply, exitUsage, fmt.Errorf("bad request: %s", reply.ErrMsg)
	}
	return reply, exitFailure, fmt.Errorf("the archiver failed (%s): %s", reply.ErrCode, reply.ErrMsg)
}
