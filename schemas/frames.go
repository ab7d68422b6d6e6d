package schemas

import "encoding/json"

// Client commands (the "cmd" of a client frame).
const (
	CmdLogin         = "login"
	CmdMessage       = "message"
	CmdCreate        = "create"
	CmdJoin          = "join"
	CmdLeave         = "leave"
	CmdInvite        = "invite"
	CmdEdit          = "edit"
	CmdDelete        = "delete"
	CmdReact         = "react"
	CmdRead          = "read"
	CmdTyping        = "typing"
	CmdSync          = "sync"
	CmdHistory       = "history"
	CmdConversations = "conversations"
	CmdPresence      = "presence"
	CmdContacts      = "contacts"
	CmdPing          = "ping"
	// CmdActivity is an extension of v1: {"cmd":"activity","idle":true|false} reports the session
	// idle or active again (a user whose every session is idle is away).
	CmdActivity = "activity"
)

// Server frame commands that are not also client commands.
const (
	CmdOK     = "ok"
	CmdAck    = "ack"
	CmdMember = "member"
	CmdUnread = "unread"
	CmdError  = "error"
	CmdSynced = "synced"
	CmdPong   = "pong"
)

// ClientFrame is any frame a client sends. Fields unused by the frame's cmd are ignored. Numeric
// fields that are optional are pointers so that "absent" and 0 differ.
type ClientFrame struct {
	Cmd   string `json:"cmd"`
	ID    string `json:"id,omitempty"`
	Token string `json:"token,omitempty"`

	Conv    string   `json:"conv,omitempty"`
	To      string   `json:"to,omitempty"`
	Type    string   `json:"type,omitempty"`
	Msg     *string  `json:"msg,omitempty"`
	Mid     string   `json:"mid,omitempty"`
	Tid     string   `json:"tid,omitempty"`
	Name    *string  `json:"name,omitempty"`
	Public  bool     `json:"public,omitempty"`
	Members []string `json:"members,omitempty"`
	User    string   `json:"user,omitempty"`
	Users   []string `json:"users,omitempty"`
	Seq     *uint64  `json:"seq,omitempty"`
	Emoji   string   `json:"emoji,omitempty"`
	After   *uint64  `json:"after,omitempty"`
	Before  *uint64  `json:"before,omitempty"`
	Limit   *int     `json:"limit,omitempty"`
	Add     string   `json:"add,omitempty"`
	Idle    *bool    `json:"idle,omitempty"`
	// Remove is a user id for contacts and a boolean for react: decoded per command.
	Remove json.RawMessage `json:"remove,omitempty"`
}

// MessageFrame is a message event as a client sees it (live, in sync and in history).
// Edits, deletes and reactions are message frames with Kind and Ref; an ordinary message always has
// Mid, Type and Msg.
type MessageFrame struct {
	Cmd    string `json:"cmd"`
	Conv   string `json:"conv"`
	Seq    uint64 `json:"seq"`
	Mid    string `json:"mid,omitempty"`
	From   string `json:"from"`
	Type   string `json:"type,omitempty"`
	Msg    string `json:"msg,omitempty"`
	Ts     string `json:"ts"`
	Tid    string `json:"tid,omitempty"`
	Kind   string `json:"kind,omitempty"`
	Ref    uint64 `json:"ref,omitempty"`
	Emoji  string `json:"emoji,omitempty"`
	Remove bool   `json:"remove,omitempty"`
}

// MemberFrame is a membership event as a client sees it. By and Ts are extensions of v1.
type MemberFrame struct {
	Cmd    string `json:"cmd"`
	Conv   string `json:"conv"`
	User   string `json:"user"`
	Action string `json:"action"`
	Seq    uint64 `json:"seq"`
	By     string `json:"by,omitempty"`
	Ts     string `json:"ts,omitempty"`
}

// EventFrame converts a log entry at stream sequence seq into the frame clients see.
func EventFrame(e *Event, seq uint64) any {
	if e.Type == TypeMember {
		return MemberFrame{Cmd: CmdMember, Conv: e.Conv, User: e.User, Action: e.Action, Seq: seq, By: e.By, Ts: e.Ts}
	}
	return MessageFrame{Cmd: CmdMessage, Conv: e.Conv, Seq: seq, Mid: e.Mid, From: e.From, Type: e.MsgType,
		Msg: e.Msg, Ts: e.Ts, Tid: e.Tid, Kind: e.Kind, Ref: e.Ref, Emoji: e.Emoji, Remove: e.Remove}
}

// UnreadFrame tells every session of a user their unread count of a conversation.
type UnreadFrame struct {
	Cmd     string `json:"cmd"`
	Conv    string `json:"conv"`
	Count   int    `json:"count"`
	ReadSeq uint64 `json:"readSeq"`
}

// ConversationItem is one entry of the conversation list.
type ConversationItem struct {
	Conv    string `json:"conv"`
	Name    string `json:"name"`
	LastSeq uint64 `json:"lastSeq"`
	LastTs  string `json:"lastTs"`
	// LastMessage is the last visible ordinary message that is not deleted, or nil.
	LastMessage *MessageFrame `json:"lastMessage"`
	Unread      int           `json:"unread"`
}

// ConversationsFrame answers conversations, most recent activity first.
type ConversationsFrame struct {
	Cmd   string             `json:"cmd"`
	ID    string             `json:"id,omitempty"`
	Items []ConversationItem `json:"items"`
}

// ContactsFrame answers contacts with the user's contact list.
type ContactsFrame struct {
	Cmd   string   `json:"cmd"`
	ID    string   `json:"id,omitempty"`
	Items []string `json:"items"`
}

// AckFrame answers a stored message, edit, delete or reaction. Mid is always set for a message;
// for the others only when the command carried one.
type AckFrame struct {
	Cmd  string `json:"cmd"`
	ID   string `json:"id,omitempty"`
	Conv string `json:"conv"`
	Seq  uint64 `json:"seq"`
	Mid  string `json:"mid,omitempty"`
	Ts   string `json:"ts"`
}

// OKFrame answers a command that has no other answer.
type OKFrame struct {
	Cmd string `json:"cmd"`
	ID  string `json:"id,omitempty"`
}

// ErrorFrame reports a failed command or a protocol violation.
type ErrorFrame struct {
	Cmd     string  `json:"cmd"`
	ID      string  `json:"id,omitempty"`
	ErrCode ErrCode `json:"errCode"`
	ErrMsg  string  `json:"errMsg"`
}

// SyncedFrame ends a sync: Seq is the last seq delivered, or the head when nothing was missed.
type SyncedFrame struct {
	Cmd string `json:"cmd"`
	ID  string `json:"id,omitempty"`
	Seq uint64 `json:"seq"`
}

// HistoryFrame answers history; Messages are event frames, oldest first.
type HistoryFrame struct {
	Cmd      string `json:"cmd"`
	ID       string `json:"id,omitempty"`
	Conv     string `json:"conv"`
	Messages []any  `json:"messages"`
}

// PongFrame answers ping.
type PongFrame struct {
	Cmd string `json:"cmd"`
	ID  string `json:"id,omitempty"`
}

// HTTP bodies.

// RegisterRequest is the body of POST /v1/register.
type RegisterRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
	Name     string `json:"name,omitempty"`
}

// RegisterResponse answers a registration.
type RegisterResponse struct {
	User string `json:"user"`
}

// LoginRequest is the body of POST /v1/login.
type LoginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// LoginResponse answers a login.
type LoginResponse struct {
	Token     string `json:"token"`
	ExpiresAt string `json:"expiresAt"`
}

// HTTPError is the body of every HTTP error answer.
type HTTPError struct {
	ErrCode ErrCode `json:"errCode"`
	ErrMsg  string  `json:"errMsg"`
}

// AttachmentResponse answers POST /v1/attachments (201): the stored file, by the id messages
// refer to.
type AttachmentResponse struct {
	ID          string `json:"id"`
	ContentType string `json:"contentType"`
	Size        int64  `json:"size"`
	Name        string `json:"name"`
}

// MessagesResponse answers GET /v1/conversations/{conv}/messages.
type MessagesResponse struct {
	Messages []any `json:"messages"`
}
