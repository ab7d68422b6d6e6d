package schemas

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const fixturesDir = "testdata/fixtures"

var clientCmds = []string{CmdLogin, CmdMessage, CmdCreate, CmdJoin, CmdLeave, CmdInvite, CmdEdit, CmdDelete,
	CmdReact, CmdRead, CmdTyping, CmdSync, CmdHistory, CmdConversations, CmdPresence, CmdContacts, CmdPing,
	CmdActivity}

var serverCmds = []string{CmdMessage, CmdMember, CmdAck, CmdOK, CmdError, CmdSynced, CmdHistory,
	CmdConversations, CmdPresence, CmdContacts, CmdUnread, CmdTyping, CmdPong}

var httpSchemas = []string{"http.register.request", "http.register.response", "http.login.request",
	"http.login.response", "http.error", "http.messages.response", "http.poll.request", "http.poll.response", "http.attachment.response"}

var eventTypes = []string{TypeMessage, TypeMember, TypeRead, TypeContact, TypeGone}

// Internal messages: the unread service's NATS messages (nats.<service>.<message>) and KV values
// (kv.<bucket>).
var internalSchemas = []string{"nats.unread.changed", "nats.unread.conversations.request",
	"nats.unread.conversations.reply", "kv.contacts"}

// expectedSchemas are the base names (without .json) of every schema but defs.json.
func expectedSchemas() []string {
	var out []string
	for _, typ := range eventTypes {
		out = append(out, "event."+typ)
	}
	for _, c := range clientCmds {
		out = append(out, "client."+c)
	}
	for _, c := range serverCmds {
		out = append(out, "server."+c)
	}
	out = append(out, httpSchemas...)
	out = append(out, internalSchemas...)
	sort.Strings(out)
	return out
}

type compiled struct {
	docs    map[string]map[string]any     // base name -> schema document
	schemas map[string]*jsonschema.Schema // base name -> compiled schema
}

var (
	compileOnce sync.Once
	compiledAll compiled
	compileErr  error
)

// loadSchemas compiles every schema of SchemaFS once, resolving $refs only among them.
func loadSchemas(t testing.TB) compiled {
	t.Helper()
	compileOnce.Do(func() { compiledAll, compileErr = compileSchemas() })
	if compileErr != nil {
		t.Fatal(compileErr)
	}
	return compiledAll
}

func compileSchemas() (compiled, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	// Nothing may be fetched from outside SchemaFS.
	c.UseLoader(refuseLoader{})
	out := compiled{docs: map[string]map[string]any{}, schemas: map[string]*jsonschema.Schema{}}
	for _, p := range SchemaFiles() {
		data, err := SchemaFS.ReadFile(p)
		if err != nil {
			return out, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return out, &schemaErr{p, err}
		}
		obj, _ := doc.(map[string]any)
		id, _ := obj["$id"].(string)
		if id != SchemaBaseURL+path.Base(p) {
			return out, &schemaErr{p, errString("$id is " + id + ", want " + SchemaBaseURL + path.Base(p))}
		}
		if err := c.AddResource(id, doc); err != nil {
			return out, &schemaErr{p, err}
		}
		out.docs[strings.TrimSuffix(path.Base(p), ".json")] = obj
	}
	for name := range out.docs {
		sch, err := c.Compile(SchemaBaseURL + name + ".json")
		if err != nil {
			return out, &schemaErr{name, err}
		}
		out.schemas[name] = sch
	}
	return out, nil
}

type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) { return nil, errString("refusing to load " + url) }

type errString string

func (e errString) Error() string { return string(e) }

type schemaErr struct {
	file string
	err  error
}

func (e *schemaErr) Error() string { return e.file + ": " + e.err.Error() }

func TestSchemaFilesAreTheExpectedOnes(t *testing.T) {
	var got []string
	for _, p := range SchemaFiles() {
		if !strings.HasPrefix(p, "jsonschema/") || !strings.HasSuffix(p, ".json") {
			t.Errorf("unexpected path %q", p)
		}
		if name := strings.TrimSuffix(path.Base(p), ".json"); name != "defs" {
			got = append(got, name)
		}
	}
	if want := expectedSchemas(); !slices.Equal(got, want) {
		t.Errorf("schema files\n got %v\nwant %v", got, want)
	}
	if !slices.IsSorted(SchemaFiles()) {
		t.Error("SchemaFiles is not sorted")
	}
}

func TestSchemasCompileAndDescribeThemselves(t *testing.T) {
	all := loadSchemas(t)
	for name, doc := range all.docs {
		if doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema is %v", name, doc["$schema"])
		}
		if d, _ := doc["description"].(string); len(d) < 10 {
			t.Errorf("%s: missing description", name)
		}
		if name == "defs" {
			continue
		}
		if doc["unevaluatedProperties"] != false {
			t.Errorf("%s: not closed (unevaluatedProperties: false)", name)
		}
	}
	// Frame schemas pin their cmd; event schemas their type.
	for _, c := range clientCmds {
		checkConst(t, all.docs["client."+c], "cmd", c)
	}
	for _, c := range serverCmds {
		checkConst(t, all.docs["server."+c], "cmd", c)
	}
	for _, typ := range eventTypes {
		checkConst(t, all.docs["event."+typ], "type", typ)
	}
}

func checkConst(t *testing.T, doc map[string]any, prop, want string) {
	t.Helper()
	props, _ := doc["properties"].(map[string]any)
	p, _ := props[prop].(map[string]any)
	if p == nil || p["const"] != want {
		t.Errorf("%v: properties.%s.const is %v, want %q", doc["$id"], prop, p, want)
	}
}

// The enums of defs.json are the Go constants.
func TestDefsEnumsMatchGo(t *testing.T) {
	defs := loadSchemas(t).docs["defs"]["$defs"].(map[string]any)
	enum := func(name string) []string {
		var out []string
		for _, v := range defs[name].(map[string]any)["enum"].([]any) {
			out = append(out, v.(string))
		}
		sort.Strings(out)
		return out
	}
	var codes []string
	for _, c := range ErrCodes {
		codes = append(codes, string(c))
	}
	sort.Strings(codes)
	if got := enum("errCode"); !slices.Equal(got, codes) || len(codes) != 9 {
		t.Errorf("errCode enum %v, Go %v", got, codes)
	}
	var types []string
	for k := range MessageTypes {
		types = append(types, k)
	}
	sort.Strings(types)
	if got := enum("msgType"); !slices.Equal(got, types) {
		t.Errorf("msgType enum %v, Go %v", got, types)
	}
	actions := []string{ActionInvited, ActionJoined, ActionLeft}
	if got := enum("memberAction"); !slices.Equal(got, actions) {
		t.Errorf("memberAction enum %v, Go %v", got, actions)
	}
	if got, want := enum("messageKind"), []string{KindDelete, KindEdit, KindReact}; !slices.Equal(got, want) {
		t.Errorf("messageKind enum %v, Go %v", got, want)
	}
	if got, want := enum("contactAction"), []string{ContactAdd, ContactRemove}; !slices.Equal(got, want) {
		t.Errorf("contactAction enum %v, Go %v", got, want)
	}
	for name, want := range map[string]string{
		"userId": `^[a-z0-9_-]{1,64}$`, "groupId": `^[a-z0-9_-]{1,64}$`, "mid": `^[A-Za-z0-9_-]{1,64}$`,
		"conv": `^(dm:[a-z0-9_-]{1,64}:[a-z0-9_-]{1,64}|g:[a-z0-9_-]{1,64})$`,
	} {
		if got := defs[name].(map[string]any)["pattern"]; got != want {
			t.Errorf("defs %s pattern %v, want %s", name, got, want)
		}
	}
	for name, want := range map[string]int{"frameId": MaxFrameIDLen, "msgText": MaxMsgBytes, "name": MaxNameLen,
		"emoji": MaxEmojiChars} {
		if got := defs[name].(map[string]any)["maxLength"]; got != json.Number(itoa(want)) {
			t.Errorf("defs %s maxLength %v, want %d", name, got, want)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestFixtures(t *testing.T) {
	all := loadSchemas(t)
	entries, err := os.ReadDir(fixturesDir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if all.schemas[e.Name()] == nil || e.Name() == "defs" {
			t.Errorf("fixtures for unknown schema %q", e.Name())
			continue
		}
		seen[e.Name()] = true
	}
	for _, name := range expectedSchemas() {
		if !seen[name] {
			t.Errorf("schema %s has no fixtures", name)
			continue
		}
		sch := all.schemas[name]
		for _, kind := range []string{"valid", "invalid"} {
			files, _ := filepath.Glob(filepath.Join(fixturesDir, name, kind, "*.json"))
			if len(files) < 2 {
				t.Errorf("%s: %d %s fixtures, want at least 2", name, len(files), kind)
			}
			for _, f := range files {
				t.Run(name+"/"+kind+"/"+strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
					data, err := os.ReadFile(f)
					if err != nil {
						t.Fatal(err)
					}
					inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
					if err != nil {
						t.Fatalf("fixture is not JSON: %v", err)
					}
					err = sch.Validate(inst)
					if kind == "valid" && err != nil {
						t.Errorf("valid fixture rejected: %v", err)
					}
					if kind == "invalid" && err == nil {
						t.Error("invalid fixture accepted")
					}
				})
			}
		}
	}
}

// validateValue marshals v with encoding/json and validates it against schema name.
func validateValue(t *testing.T, all compiled, name string, v any) {
	t.Helper()
	sch := all.schemas[name]
	if sch == nil {
		t.Fatalf("no schema %s", name)
	}
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Errorf("%s: %s does not validate: %v", name, data, err)
	}
}

func ptr[T any](v T) *T { return &v }

// The Go types marshal to what the schemas describe, so the two cannot drift apart.
func TestGoValuesMatchSchemas(t *testing.T) {
	all := loadSchemas(t)
	ts := FormatTime(time.Date(2025, 3, 1, 12, 0, 0, 0, time.FixedZone("X", 3600)))
	msg := Event{Type: TypeMessage, Conv: "dm:alice:bob", Ts: ts, From: "alice", Mid: "m-1", MsgType: "text", Msg: "hello"}
	private := Event{Type: TypeMessage, Conv: "g:team", Ts: ts, From: "alice", Mid: "Z_9", MsgType: "image",
		Msg: "https://cdn.example/x.png", Tid: "bob"}
	creator := Event{Type: TypeMember, Conv: "g:team", Ts: ts, User: "alice", Action: ActionJoined, By: "alice",
		Name: "Team", Public: true}
	invited := Event{Type: TypeMember, Conv: "g:team", Ts: ts, User: "carol", Action: ActionInvited, By: "bob"}
	left := Event{Type: TypeMember, Conv: "g:team", Ts: ts, User: "carol", Action: ActionLeft}
	// Edits, deletes and reactions of msg (public, seq 1) and of private (seq 42, alice to bob).
	edit := Event{Type: TypeMessage, Conv: msg.Conv, Ts: ts, From: "alice", Kind: KindEdit, Ref: 1, RefFrom: "alice",
		Msg: "hello again"}
	editMid := Event{Type: TypeMessage, Conv: msg.Conv, Ts: ts, From: "alice", Mid: "e-1", Kind: KindEdit, Ref: 1,
		RefFrom: "alice", Msg: "fixed"}
	privEdit := Event{Type: TypeMessage, Conv: private.Conv, Ts: ts, From: "alice", Tid: "bob", Kind: KindEdit, Ref: 42,
		RefFrom: "alice", Msg: "https://cdn.example/y.png"}
	del := Event{Type: TypeMessage, Conv: msg.Conv, Ts: ts, From: "alice", Kind: KindDelete, Ref: 1, RefFrom: "alice"}
	privDel := Event{Type: TypeMessage, Conv: private.Conv, Ts: ts, From: "alice", Tid: "bob", Kind: KindDelete, Ref: 42,
		RefFrom: "alice", Mid: "d-1"}
	react := Event{Type: TypeMessage, Conv: msg.Conv, Ts: ts, From: "bob", Kind: KindReact, Ref: 1, RefFrom: "alice",
		Emoji: "👍"}
	privReact := Event{Type: TypeMessage, Conv: private.Conv, Ts: ts, From: "bob", Tid: "bob", Kind: KindReact, Ref: 42,
		RefFrom: "alice", Emoji: strings.Repeat("x", MaxEmojiChars), Remove: true}
	read := Event{Type: TypeRead, Conv: "g:team", Ts: ts, From: "bob", Seq: 42}
	addContact := Event{Type: TypeContact, Ts: ts, From: "alice", User: "bob", Action: ContactAdd}
	removeContact := Event{Type: TypeContact, Ts: ts, From: "alice", User: "bob", Action: ContactRemove}
	gone := Event{Type: TypeGone, Conv: private.Conv, Ts: ts, Ref: 42}

	last := EventFrame(&msg, 1).(MessageFrame)
	convItems := []ConversationItem{
		{Conv: "g:team", Name: "Team", LastSeq: 44, LastTs: ts, LastMessage: ptr(EventFrame(&private, 42).(MessageFrame)), Unread: 2},
		{Conv: "dm:alice:bob", Name: "Bob", LastSeq: 3, LastTs: ts, LastMessage: &last, Unread: 0},
		{Conv: "g:empty", Name: "", LastSeq: 5, LastTs: ts, LastMessage: nil, Unread: 0},
	}
	var contacts Contacts
	for i, e := range []Event{addContact, {Type: TypeContact, Ts: ts, From: "alice", User: "carol", Action: ContactAdd}} {
		contacts.Apply(&e, uint64(10+i))
	}

	cases := []struct {
		schema string
		v      any
	}{
		{"event.chat.message.v1", msg},
		{"event.chat.message.v1", private},
		{"event.chat.member.v1", creator},
		{"event.chat.member.v1", invited},
		{"event.chat.member.v1", left},
		{"server.message", EventFrame(&msg, 1)},
		{"server.message", EventFrame(&private, 42)},
		{"server.member", EventFrame(&creator, 2)},
		{"server.member", EventFrame(&left, 3)},
		{"event.chat.message.v1", edit},
		{"event.chat.message.v1", editMid},
		{"event.chat.message.v1", privEdit},
		{"event.chat.message.v1", del},
		{"event.chat.message.v1", privDel},
		{"event.chat.message.v1", react},
		{"event.chat.message.v1", privReact},
		{"event.chat.read.v1", read},
		{"event.chat.contact.v1", addContact},
		{"event.chat.contact.v1", removeContact},
		{"event.chat.gone.v1", gone},
		{"server.message", EventFrame(&edit, 2)},
		{"server.message", EventFrame(&editMid, 3)},
		{"server.message", EventFrame(&privEdit, 43)},
		{"server.message", EventFrame(&del, 4)},
		{"server.message", EventFrame(&privDel, 44)},
		{"server.message", EventFrame(&react, 5)},
		{"server.message", EventFrame(&privReact, 45)},
		{"server.history", HistoryFrame{Cmd: CmdHistory, Conv: "g:team", Messages: []any{EventFrame(&private, 42),
			EventFrame(&privEdit, 43), EventFrame(&privDel, 44), EventFrame(&privReact, 45)}}},
		{"server.unread", UnreadFrame{Cmd: CmdUnread, Conv: "g:team", Count: 3, ReadSeq: 40}},
		{"server.unread", UnreadFrame{Cmd: CmdUnread, Conv: "dm:alice:bob"}},
		{"server.conversations", ConversationsFrame{Cmd: CmdConversations, ID: "c", Items: convItems}},
		{"server.conversations", ConversationsFrame{Cmd: CmdConversations, Items: convItems[2:]}},
		{"server.conversations", ConversationsFrame{Cmd: CmdConversations, Items: []ConversationItem{}}},
		{"server.contacts", ContactsFrame{Cmd: CmdContacts, ID: "k", Items: contacts.Items}},
		{"server.contacts", ContactsFrame{Cmd: CmdContacts, Items: []string{}}},
		{"kv.contacts", contacts},
		{"kv.contacts", Contacts{Seq: 1, Items: []string{}}},
		{"nats.unread.changed", UnreadChanged{User: "bob", Conv: "g:team", Count: 0, ReadSeq: 44, Cause: 46}},
		{"nats.unread.changed", UnreadChanged{User: "bob", Conv: "dm:alice:bob", Count: 2, Cause: 1}},
		{"nats.unread.conversations.request", ConversationsRequest{User: "alice", MinSeq: 46}},
		{"nats.unread.conversations.request", ConversationsRequest{User: "alice"}},
		{"nats.unread.conversations.reply", ConversationsReply{Items: convItems, Seq: 46}},
		{"nats.unread.conversations.reply", ConversationsReply{Items: []ConversationItem{}}},
		{"nats.unread.conversations.reply", ConversationsReply{ErrCode: CodeUnavailable, ErrMsg: "behind"}},
		{"nats.unread.conversations.reply", ConversationsReply{Items: []ConversationItem{}, Seq: 9, ErrCode: CodeInternal}},
		{"server.ack", AckFrame{Cmd: CmdAck, ID: "c1", Conv: msg.Conv, Seq: 42, Mid: msg.Mid, Ts: ts}},
		{"server.ack", AckFrame{Cmd: CmdAck, Conv: msg.Conv, Seq: 1, Mid: msg.Mid, Ts: ts}},
		{"server.ok", OKFrame{Cmd: CmdOK}},
		{"server.ok", OKFrame{Cmd: CmdOK, ID: strings.Repeat("i", MaxFrameIDLen)}},
		{"server.synced", SyncedFrame{Cmd: CmdSynced, ID: "s", Seq: 0}},
		{"server.synced", SyncedFrame{Cmd: CmdSynced, Seq: 1 << 53}},
		{"server.history", HistoryFrame{Cmd: CmdHistory, ID: "h", Conv: "g:team",
			Messages: []any{EventFrame(&creator, 1), EventFrame(&private, 2), EventFrame(&left, 3)}}},
		{"server.history", HistoryFrame{Cmd: CmdHistory, Conv: "dm:alice:bob", Messages: []any{}}},
		{"server.pong", PongFrame{Cmd: CmdPong}},
		{"server.pong", PongFrame{Cmd: CmdPong, ID: "p"}},
		{"http.login.response", LoginResponse{Token: "eyJ.eyJ.sig", ExpiresAt: ts}},
		{"http.register.response", RegisterResponse{User: "alice"}},
		{"http.register.request", RegisterRequest{User: "alice", Password: "correct horse"}},
		{"http.register.request", RegisterRequest{User: "alice", Password: "correct horse", Name: "Alice"}},
		{"http.login.request", LoginRequest{User: "alice", Password: "correct horse"}},
		{"http.messages.response", MessagesResponse{Messages: []any{EventFrame(&msg, 7)}}},
		{"http.attachment.response", AttachmentResponse{ID: "a" + strings.Repeat("x", 22), ContentType: "image/png", Size: 12, Name: "p.png"}},
		{"client.message", ClientFrame{Cmd: CmdMessage, ID: "1", Conv: "g:team", Type: "text", Msg: ptr("hi"), Mid: "m1", Tid: "bob"}},
		{"client.message", ClientFrame{Cmd: CmdMessage, To: "bob", Type: "file", Msg: ptr("att-1"), Mid: "m2"}},
		{"client.create", ClientFrame{Cmd: CmdCreate, Conv: "g:team", Name: ptr("Team"), Public: true, Members: []string{"bob"}}},
		{"client.edit", ClientFrame{Cmd: CmdEdit, Conv: "g:team", Seq: ptr(uint64(42)), Msg: ptr("fixed")}},
		{"client.react", ClientFrame{Cmd: CmdReact, Conv: "g:team", Seq: ptr(uint64(42)), Emoji: "👍", Remove: json.RawMessage("true")}},
		{"client.read", ClientFrame{Cmd: CmdRead, Conv: "g:team", Seq: ptr(uint64(0))}},
		{"client.sync", ClientFrame{Cmd: CmdSync, ID: "s", After: ptr(uint64(0))}},
		{"client.history", ClientFrame{Cmd: CmdHistory, Conv: "g:team", Before: ptr(uint64(9)), Limit: ptr(20)}},
		{"client.contacts", ClientFrame{Cmd: CmdContacts, Remove: json.RawMessage(`"bob"`)}},
		{"client.ping", ClientFrame{Cmd: CmdPing}},
	}
	for _, code := range ErrCodes {
		cases = append(cases,
			struct {
				schema string
				v      any
			}{"server.error", ErrorFrame{Cmd: CmdError, ID: "x", ErrCode: code, ErrMsg: "m"}},
			struct {
				schema string
				v      any
			}{"http.error", HTTPError{ErrCode: code, ErrMsg: "m"}})
	}
	for _, c := range cases {
		validateValue(t, all, c.schema, c.v)
	}
	// Go values of other frames are refused where they do not belong.
	data, _ := json.Marshal(EventFrame(&msg, 1))
	inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if all.schemas["server.member"].Validate(inst) == nil {
		t.Error("a message frame validates as a member frame")
	}
	if all.schemas["event.chat.message.v1"].Validate(inst) == nil {
		t.Error("a message frame validates as a stored event")
	}
}

// rejectValue marshals v with encoding/json and asserts that schema name refuses it.
func rejectValue(t *testing.T, all compiled, name, why string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if all.schemas[name].Validate(inst) == nil {
		t.Errorf("%s accepts %s (%s)", name, data, why)
	}
}

// Each conditional rule of the stored message event, pinned by one Go value that breaks only it
// (the same values without the breaking field validate, see TestGoValuesMatchSchemas).
func TestMessageEventRules(t *testing.T) {
	all := loadSchemas(t)
	const ts = "2025-03-01T12:00:00.000Z"
	base := func(kind string) Event {
		e := Event{Type: TypeMessage, Conv: "g:team", Ts: ts, From: "alice", Kind: kind, Ref: 42, RefFrom: "alice"}
		switch kind {
		case "":
			e.Ref, e.RefFrom, e.Mid, e.MsgType, e.Msg = 0, "", "m-1", "text", "hi"
		case KindEdit:
			e.Msg = "fixed"
		case KindReact:
			e.From, e.Emoji = "bob", "👍"
		}
		return e
	}
	for _, kind := range []string{"", KindEdit, KindDelete, KindReact} {
		validateValue(t, all, "event.chat.message.v1", base(kind))
		for _, conv := range []string{"dm:alice:bob", "g:team"} {
			e := base(kind)
			e.Conv = conv
			validateValue(t, all, "event.chat.message.v1", e)
			e.Tid = "bob"
			if conv == "g:team" {
				validateValue(t, all, "event.chat.message.v1", e)
			} else {
				rejectValue(t, all, "event.chat.message.v1", "tid in a direct conversation", e)
			}
		}
	}
	for _, c := range []struct {
		kind   string
		why    string
		change func(*Event)
	}{
		{"", "message without mid", func(e *Event) { e.Mid = "" }},
		{"", "message without msgType", func(e *Event) { e.MsgType = "" }},
		{"", "message without msg", func(e *Event) { e.Msg = "" }},
		{"", "ref without kind", func(e *Event) { e.Ref = 41 }},
		{"", "refFrom without kind", func(e *Event) { e.RefFrom = "bob" }},
		{"", "emoji without kind", func(e *Event) { e.Emoji = "👍" }},
		{"", "remove without kind", func(e *Event) { e.Remove = true }},
		{"", "seq on a message", func(e *Event) { e.Seq = 3 }},
		{"", "member fields on a message", func(e *Event) { e.User = "bob" }},
		{KindEdit, "edit without ref", func(e *Event) { e.Ref = 0 }},
		{KindEdit, "edit without refFrom", func(e *Event) { e.RefFrom = "" }},
		{KindEdit, "edit without msg", func(e *Event) { e.Msg = "" }},
		{KindEdit, "edit with emoji", func(e *Event) { e.Emoji = "👍" }},
		{KindEdit, "edit with remove", func(e *Event) { e.Remove = true }},
		{KindDelete, "delete without ref", func(e *Event) { e.Ref = 0 }},
		{KindDelete, "delete without refFrom", func(e *Event) { e.RefFrom = "" }},
		{KindDelete, "delete with msg", func(e *Event) { e.Msg = "x" }},
		{KindDelete, "delete with msgType", func(e *Event) { e.MsgType = "text" }},
		{KindDelete, "delete with emoji", func(e *Event) { e.Emoji = "👍" }},
		{KindDelete, "delete with remove", func(e *Event) { e.Remove = true }},
		{KindReact, "react without ref", func(e *Event) { e.Ref = 0 }},
		{KindReact, "react without refFrom", func(e *Event) { e.RefFrom = "" }},
		{KindReact, "react without emoji", func(e *Event) { e.Emoji = "" }},
		{KindReact, "react with msg", func(e *Event) { e.Msg = "x" }},
		{KindReact, "react with msgType", func(e *Event) { e.MsgType = "text" }},
		{KindReact, "emoji too long", func(e *Event) { e.Emoji = strings.Repeat("x", MaxEmojiChars+1) }},
		{"pin", "unknown kind", func(e *Event) {}},
	} {
		e := base(c.kind)
		c.change(&e)
		rejectValue(t, all, "event.chat.message.v1", c.why, e)
	}
	// The non-message events.
	read := Event{Type: TypeRead, Conv: "g:team", Ts: ts, From: "bob", Seq: 42}
	contact := Event{Type: TypeContact, Ts: ts, From: "alice", User: "bob", Action: ContactAdd}
	gone := Event{Type: TypeGone, Conv: "g:team", Ts: ts, Ref: 42}
	for _, c := range []struct {
		schema string
		why    string
		e      Event
		change func(*Event)
	}{
		// Event.Seq is omitted when 0: a read of seq 0 changes nothing and must not be stored.
		{"event.chat.read.v1", "read without seq", read, func(e *Event) { e.Seq = 0 }},
		{"event.chat.read.v1", "read without from", read, func(e *Event) { e.From = "" }},
		{"event.chat.read.v1", "read of a message", read, func(e *Event) { e.Msg = "x" }},
		{"event.chat.contact.v1", "contact with a bad action", contact, func(e *Event) { e.Action = "block" }},
		{"event.chat.contact.v1", "contact with a member action", contact, func(e *Event) { e.Action = ActionJoined }},
		{"event.chat.contact.v1", "contact without user", contact, func(e *Event) { e.User = "" }},
		{"event.chat.contact.v1", "contact in a conversation", contact, func(e *Event) { e.Conv = "dm:alice:bob" }},
		{"event.chat.gone.v1", "gone without ref", gone, func(e *Event) { e.Ref = 0 }},
		{"event.chat.gone.v1", "gone with a kind", gone, func(e *Event) { e.Kind = KindDelete }},
		{"event.chat.gone.v1", "gone with from", gone, func(e *Event) { e.From = "alice" }},
		{"event.chat.message.v1", "a read is not a message", read, func(e *Event) {}},
		{"event.chat.read.v1", "a gone marker is not a read", gone, func(e *Event) {}},
	} {
		e := c.e
		c.change(&e)
		rejectValue(t, all, c.schema, c.why, e)
	}
}

// Lists are arrays, never null: a Go value with a nil slice is refused, so whoever builds one must
// use an empty slice.
func TestNilListsAreRefused(t *testing.T) {
	all := loadSchemas(t)
	for _, c := range []struct {
		schema string
		v      any
	}{
		{"server.contacts", ContactsFrame{Cmd: CmdContacts}},
		{"server.conversations", ConversationsFrame{Cmd: CmdConversations}},
		{"server.history", HistoryFrame{Cmd: CmdHistory, Conv: "g:team"}},
		{"http.messages.response", MessagesResponse{}},
		{"kv.contacts", Contacts{Seq: 1}},
		{"nats.unread.conversations.reply", ConversationsReply{Seq: 1}},
	} {
		rejectValue(t, all, c.schema, "nil list", c.v)
	}
}

// Every schema's $refs resolve inside SchemaFS (compiling with a loader that refuses everything else
// proves it); this also checks that the embedded files are the ones on disk.
func TestSchemaFSMatchesDisk(t *testing.T) {
	err := fs.WalkDir(SchemaFS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		emb, _ := SchemaFS.ReadFile(p)
		disk, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(emb, disk) {
			t.Errorf("%s differs from the embedded copy", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
