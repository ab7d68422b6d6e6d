package main

import (
	"errors"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/eventchat/chat/schemas"
)

// Flags go before or after the report; every one lands in the request or the options.
func TestParseAnalytics(t *testing.T) {
	t.Setenv("CHAT_NATS_URL", "nats://env:4222")
	t.Setenv("CHAT_CHATCTL_TIMEOUT", "") // restored after the test
	os.Unsetenv("CHAT_CHATCTL_TIMEOUT")
	for _, tc := range []struct {
		args []string
		want schemas.AnalyticsRequest
		fmt  string
	}{
		{[]string{"messages-per-day"}, schemas.AnalyticsRequest{Report: "messages-per-day"}, "table"},
		{[]string{"messages-per-day", "--since", "2026-01-01", "--until=2026-02-01T10:00:00Z", "--conv", "g:team", "--format", "csv"},
			schemas.AnalyticsRequest{Report: "messages-per-day", Since: "2026-01-01", Until: "2026-02-01T10:00:00Z", Conv: "g:team"}, "csv"},
		{[]string{"--format", "json", "-limit", "5", "busiest-conversations", "--since", "2026-01-01"},
			schemas.AnalyticsRequest{Report: "busiest-conversations", Since: "2026-01-01", Limit: 5}, "json"},
		{[]string{"first-response-time", "--limit", "1000"}, schemas.AnalyticsRequest{Report: "first-response-time", Limit: 1000}, "table"},
	} {
		o, err := parseAnalytics(tc.args)
		if err == nil && o.req != tc.want {
			err = errors.New("request differs")
		}
		if err != nil || o.format != tc.fmt || o.list {
			t.Errorf("%q: %+v %v", tc.args, o, err)
		}
	}
	o, err := parseAnalytics([]string{"active-users"})
	if err != nil || o.nats.URL != "nats://env:4222" || o.timeout != 65*time.Second {
		t.Errorf("env defaults: %+v %v", o, err)
	}
	o, err = parseAnalytics([]string{"active-users", "--nats-url", "nats://flag:4222", "--timeout", "2s"})
	if err != nil || o.nats.URL != "nats://flag:4222" || o.timeout != 2*time.Second {
		t.Errorf("flags over env: %+v %v", o, err)
	}
	t.Setenv("CHAT_CHATCTL_TIMEOUT", "5m")
	if o, err = parseAnalytics([]string{"active-users"}); err != nil || o.timeout != 5*time.Minute {
		t.Errorf("CHAT_CHATCTL_TIMEOUT: %+v %v", o, err)
	}
	if o, err = parseAnalytics([]string{"list"}); err != nil || !o.list {
		t.Errorf("list: %+v %v", o, err)
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"messages-per-day", "-help"}} {
		if _, err := parseAnalytics(args); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%q: %v, want help", args, err)
		}
	}
}

// Mistakes on the command line are usage errors (exit 2).
func TestParseAnalyticsUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--since", "2026-01-01"},
		{"messages-per-day", "active-users"},
		{"messages-per-day", "--format", "xml"},
		{"messages-per-day", "--bogus"},
		{"messages-per-day", "--limit", "x"},
		{"busiest-conversations", "--limit", "0"},
		{"busiest-conversations", "--limit", "1001"},
		{"messages-per-day", "--timeout", "0s"},
		{"messages-per-day", "--since"},
	} {
		_, err := parseAnalytics(args)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	t.Setenv("CHAT_CHATCTL_TIMEOUT", "soon")
	var ue *usageError
	if _, err := parseAnalytics([]string{"messages-per-day"}); !errors.As(err, &ue) {
		t.Errorf("a bad CHAT_CHATCTL_TIMEOUT: %v", err)
	}
}
