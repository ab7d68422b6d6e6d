package schemas

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Event types stored in the log (the "type" field). Each has a JSON Schema in jsonschema/.
const (
	TypeMessage = "chat.message.v1"
	TypeMember  = "chat.member.v1"
	// TypeRead is a read marker: From read conversation Conv up to Seq (subject chat.read.<user>).
	TypeRead = "chat.read.v1"
	// TypeContact adds (Action "add") or removes ("remove") User from From's contacts (subject
	// chat.contact.<owner>). It has no Conv.
	TypeContact = "chat.contact.v1"
	// TypeGone marks message Ref of Conv deleted (subject chat.gone.<conv>.<ref>). It is written in
	// the same atomic batch as the delete event, only if no marker exists yet: edits, reactions and
	// second deletes check it with Nats-Expected-Last-Subject-Sequence-Subject. Nothing but that
	// check reads it; consumers skip it.
	TypeGone = "chat.gone.v1"
)

// Kinds of message events that refer to an earlier message (Ref). Ordinary messages have no Kind.
const (
	KindEdit   = "edit"
	KindDelete = "delete"
	KindReact  = "react"
)

// Contact actions.
const (
	ContactAdd    = "add"
	ContactRemove = "remove"
)

// MaxEmojiChars is the longest reaction, in characters.
const MaxEmojiChars = 64

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
	Conv string `json:"conv,omitempty"`
	Ts   string `json:"ts"`

	// chat.message.v1
	From    string `json:"from,omitempty"`
	Mid     string `json:"mid,omitempty"`
	MsgType string `json:"msgType,omitempty"`
	Msg     string `json:"msg,omitempty"`
	Tid     string `json:"tid,omitempty"`
	// Kind, Ref, RefFrom, Emoji and Remove are set on edits, deletes and reactions: Ref is the seq
	// of the ordinary message they refer to and RefFrom its author. Tid is copied from that
	// message, so an event about a private message is seen by its sender and target only.
	Kind    string `json:"kind,omitempty"`
	Ref     uint64 `json:"ref,omitempty"`
	RefFrom string `json:"refFrom,omitempty"`
	Emoji   string `json:"emoji,omitempty"`
	Remove  bool   `json:"remove,omitempty"`

	// chat.read.v1: From has read Conv up to Seq (as asked; the unread projection clamps it to
	// the read event's own seq and never moves a marker back).
	Seq uint64 `json:"seq,omitempty"`

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
	// The common shape is decoded by hand (eventjson.go); anything else, errors included, by
	// encoding/json, with the same result. encoding/json decodes into a variable of its own, so
	// that e stays off the heap on the fast path.
	var e Event
	if !decodeEventFast(data, &e) {
		var slow Event
		if err := json.Unmarshal(data, &slow); err != nil {
			return Event{}, fmt.Errorf("schemas: decode event: %w", err)
		}
		e = slow
	}
	switch e.Type {
	case TypeMessage, TypeMember, TypeRead, TypeGone:
		if _, err := ParseConv(e.Conv); err != nil {
			return Event{}, fmt.Errorf("schemas: event: %w", err)
		}
	case TypeContact:
		if !ValidUser(e.From) || !ValidUser(e.User) {
			return Event{}, fmt.Errorf("schemas: contact event with an invalid user")
		}
	default:
		return Event{}, fmt.Errorf("schemas: unknown event type %q", e.Type)
	}
	return e, nil
}

// IsConvEvent reports whether e is delivered to the members of its conversation (a message, an
// edit, delete or reaction, or a membership event).
func (e *Event) IsConvEvent() bool { return e.Type == TypeMessage || e.Type == TypeMember }

// VisibleTo reports whether a user who is a member of the event's conversation may see it:
// a private (tid) message, and any edit, delete or reaction of one, is seen by the message's
// sender and its target only.
func (e *Event) VisibleTo(user string) bool {
	return e.Tid == "" || e.From == user || e.Tid == user || (e.RefFrom != "" && e.RefFrom == user)
}

// Audience are the only users who may see a private event, each once (nil for an event every
// member sees).
func (e *Event) Audience() []string {
	if e.Tid == "" {
		return nil
	}
	out := []string{e.From}
	for _, u := range []string{e.Tid, e.RefFrom} {
		if u != "" && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// TimeFormat is the protocol's time format: RFC 3339, UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// FormatTime formats t in the protocol's time format.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// Contacts is a user's contact list as stored in ContactsBucket: the projection of the user's
// chat.contact.v1 events up to stream sequence Seq (the last one applied).
type Contacts struct {
	Seq   uint64   `json:"seq"`
	Items []string `json:"items"`
}

// Apply folds contact event e at stream sequence seq into the list, once: an event at or before
// Seq changes nothing. Items stay sorted.
func (c *Contacts) Apply(e *Event, seq uint64) {
	if seq <= c.Seq || e.Type != TypeContact {
		return
	}
	c.Seq = seq
	if c.Items == nil {
		c.Items = []string{}
	}
	i, found := slices.BinarySearch(c.Items, e.User)
	switch {
	case e.Action == ContactAdd && !found:
		c.Items = slices.Insert(c.Items, i, e.User)
	case e.Action == ContactRemove && found:
		c.Items = slices.Delete(c.Items, i, i+1)
	}
}
