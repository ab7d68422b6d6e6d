package schemas

import (
	"encoding/json"
	"fmt"
	"time"
)

// Event types stored in the log (the "type" field). Each has a JSON Schema in jsonschema/.
const (
	TypeMessage = "chat.message.v1"
	TypeMember  = "chat.member.v1"
)

// Message types (the protocol's "type" field of a message).
var MessageTypes = map[string]bool{"text": true, "image": true, "audio": true, "file": true}

// Member actions.
const (
	ActionJoined  = "joined"
	ActionLeft    = "left"
	ActionInvited = "invited"
)

// Event is one entry of the log. Which fields are set depends on Type; unset fields are omitted.
// The stream sequence is not part of the payload: it is the message's position in the stream.
type Event struct {
	Type string `json:"type"`
	Conv string `json:"conv"`
	Ts   string `json:"ts"`

	// chat.message.v1
	From    string `json:"from,omitempty"`
	Mid     string `json:"mid,omitempty"`
	MsgType string `json:"msgType,omitempty"`
	Msg     string `json:"msg,omitempty"`
	Tid     string `json:"tid,omitempty"`

	// chat.member.v1
	User   string `json:"user,omitempty"`
	Action string `json:"action,omitempty"`
	By     string `json:"by,omitempty"`
	// Name, Public and Members are set on the first event of a group, its creator joining: Members
	// are all the initial members, who become members together at that event's seq (each of them
	// then has a joined event of their own in the same atomic batch).
	Name    string   `json:"name,omitempty"`
	Public  bool     `json:"public,omitempty"`
	Members []string `json:"members,omitempty"`
}

// DecodeEvent decodes and checks a log entry.
func DecodeEvent(data []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return Event{}, fmt.Errorf("schemas: decode event: %w", err)
	}
	switch e.Type {
	case TypeMessage, TypeMember:
	default:
		return Event{}, fmt.Errorf("schemas: unknown event type %q", e.Type)
	}
	if _, err := ParseConv(e.Conv); err != nil {
		return Event{}, fmt.Errorf("schemas: event: %w", err)
	}
	return e, nil
}

// VisibleTo reports whether a user who is a member of the event's conversation may see it:
// a private (tid) message is seen by its sender and its target only.
func (e *Event) VisibleTo(user string) bool {
	return e.Tid == "" || e.From == user || e.Tid == user
}

// TimeFormat is the protocol's time format: RFC 3339, UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// FormatTime formats t in the protocol's time format.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }
