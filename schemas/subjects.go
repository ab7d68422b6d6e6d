package schemas

import (
	"strconv"
	"strings"
)

// Subjects of the event log. Every subject is built here from validated identifiers; identifiers are
// always the last tokens. Layout (see docs/architecture.md):
//
//	chat.msg.dm.<a>.<b>   content events of a direct conversation (messages, edits, deletes, reactions)
//	chat.msg.g.<group>    content events of a group
//	chat.mem.g.<group>    membership events of a group (compare-and-swap target for membership changes)
//	chat.read.<user>      read markers of a user (chat.read.v1)
//	chat.contact.<user>   contact list changes of a user (chat.contact.v1)
//	chat.gone.dm.<a>.<b>.<seq>, chat.gone.g.<group>.<seq>
//	                      the deletion marker of message <seq> (chat.gone.v1)
const (
	SubjectRoot         = "chat"
	subjMsgDirectPrefix = "chat.msg.dm."
	subjMsgGroupPrefix  = "chat.msg.g."
	subjMemGroupPrefix  = "chat.mem.g."
	subjReadPrefix      = "chat.read."
	subjContactPrefix   = "chat.contact."
	subjGonePrefix      = "chat.gone."
)

// EventSubjects are the subjects the events stream binds.
var EventSubjects = []string{"chat.msg.>", "chat.mem.>", "chat.read.>", "chat.contact.>", "chat.gone.>"}

// ConvEventSubjects are the subjects of the events delivered to conversation members.
var ConvEventSubjects = []string{"chat.msg.>", "chat.mem.>"}

// ReadSubject carries the read markers of user.
func ReadSubject(user string) string { return subjReadPrefix + mustUser(user) }

// ContactSubject carries the contact list changes of owner; it is the compare-and-swap target
// for them.
func ContactSubject(owner string) string { return subjContactPrefix + mustUser(owner) }

// GoneSubject carries the deletion marker of message seq of conversation c.
func GoneSubject(c Conv, seq uint64) string {
	return subjGonePrefix + ContentSubject(c)[len("chat.msg."):] + "." + strconv.FormatUint(seq, 10)
}

// SubjectKind tells which kind of event a subject of the events stream carries: TypeMessage for
// a conversation's content, TypeMember, TypeRead, TypeContact or TypeGone; "" for any other.
// Consumers route by it before decoding.
func SubjectKind(subject string) string {
	switch {
	case strings.HasPrefix(subject, "chat.msg."):
		return TypeMessage
	case strings.HasPrefix(subject, subjMemGroupPrefix):
		return TypeMember
	case strings.HasPrefix(subject, subjReadPrefix):
		return TypeRead
	case strings.HasPrefix(subject, subjContactPrefix):
		return TypeContact
	case strings.HasPrefix(subject, subjGonePrefix):
		return TypeGone
	}
	return ""
}

// ContentSubject is the subject that carries the content events of a conversation.
// It panics on a Conv that did not come from ParseConv, DirectConv or GroupConv: a programming
// error, never client input.
func ContentSubject(c Conv) string {
	switch {
	case c.Kind == ConvDirect && ValidUser(c.A) && ValidUser(c.B) && c.A < c.B:
		return subjMsgDirectPrefix + c.A + "." + c.B
	case c.Kind == ConvGroup && ValidGroup(c.Group):
		return subjMsgGroupPrefix + c.Group
	}
	panic("schemas: ContentSubject of an invalid conversation")
}

// MemberSubject is the subject that carries the membership events of a group.
func MemberSubject(group string) string {
	if !ValidGroup(group) {
		panic("schemas: MemberSubject of an invalid group")
	}
	return subjMemGroupPrefix + group
}

// ConvSubjects are all the subjects that carry events of conversation c, for history and sync.
func ConvSubjects(c Conv) []string {
	if c.Kind == ConvGroup {
		return []string{ContentSubject(c), MemberSubject(c.Group)}
	}
	return []string{ContentSubject(c)}
}

// KV keys. Bucket layouts are documented with the buckets in topology.go.

// UserKey is the key of an account in the users bucket.
func UserKey(user string) string { return mustUser(user) }

// GroupKey is the key of a group's state in the groups bucket.
func GroupKey(group string) string {
	if !ValidGroup(group) {
		panic("schemas: GroupKey of an invalid group")
	}
	return group
}

// IndexKey is the key of a user's entry for conversation c in the conversation index bucket:
// "<user>.d.<other>" for a direct conversation, "<user>.g.<group>" for a group.
func IndexKey(user string, c Conv) string {
	mustUser(user)
	switch c.Kind {
	case ConvDirect:
		if !c.Has(user) {
			panic("schemas: IndexKey of a direct conversation the user is not in")
		}
		return user + ".d." + c.Other(user)
	case ConvGroup:
		return user + ".g." + c.Group
	}
	panic("schemas: IndexKey of an invalid conversation")
}

// IndexPrefix is the key filter that lists all of a user's entries in the conversation index.
func IndexPrefix(user string) string { return mustUser(user) + ".>" }

// ParseIndexKey parses a key made by IndexKey back into the user and conversation.
func ParseIndexKey(key string) (user string, c Conv, ok bool) {
	u, rest, ok1 := cutDot(key)
	kind, id, ok2 := cutDot(rest)
	if !ok1 || !ok2 || !ValidUser(u) {
		return "", Conv{}, false
	}
	var err error
	switch kind {
	case "d":
		c, err = DirectConv(u, id)
	case "g":
		c, err = GroupConv(id)
	default:
		return "", Conv{}, false
	}
	return u, c, err == nil
}

func cutDot(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}

// DedupID is the Nats-Msg-Id of a message: unique per sender, so a retried mid stores nothing new.
func DedupID(from, mid string) string {
	mustUser(from)
	if !ValidMid(mid) {
		panic("schemas: DedupID of an invalid mid")
	}
	return "m:" + from + ":" + mid
}

// ContactsKey is the key of a user's contact list in the contacts bucket.
func ContactsKey(owner string) string { return mustUser(owner) }

func mustUser(u string) string {
	if !ValidUser(u) {
		panic("schemas: key or subject from an invalid user id")
	}
	return u
}
