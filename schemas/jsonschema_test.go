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
	"http.login.response", "http.error", "http.messages.response", "http.poll.request", "http.poll.response"}

// expectedSchemas are the base names (without .json) of every schema but defs.json.
func expectedSchemas() []string {
	out := []string{"event." + TypeMessage, "event." + TypeMember}
	for _, c := range clientCmds {
		out = append(out, "client."+c)
	}
	for _, c := range serverCmds {
		out = append(out, "server."+c)
	}
	out = append(out, httpSchemas...)
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
	checkConst(t, all.docs["event."+TypeMessage], "type", TypeMessage)
	checkConst(t, all.docs["event."+TypeMember], "type", TypeMember)
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
	for name, want := range map[string]string{
		"userId": `^[a-z0-9_-]{1,64}$`, "groupId": `^[a-z0-9_-]{1,64}$`, "mid": `^[A-Za-z0-9_-]{1,64}$`,
		"conv": `^(dm:[a-z0-9_-]{1,64}:[a-z0-9_-]{1,64}|g:[a-z0-9_-]{1,64})$`,
	} {
		if got := defs[name].(map[string]any)["pattern"]; got != want {
			t.Errorf("defs %s pattern %v, want %s", name, got, want)
		}
	}
	for name, want := range map[string]int{"frameId": MaxFrameIDLen, "msgText": MaxMsgBytes, "name": MaxNameLen} {
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
