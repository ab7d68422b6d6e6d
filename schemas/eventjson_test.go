package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// eventFixtures are the contents of the event fixtures (valid and invalid) by file name.
func eventFixtures(tb testing.TB) map[string][]byte {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(fixturesDir, "event.*", "*", "*.json"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no event fixtures: %v", err)
	}
	out := make(map[string][]byte, len(files))
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		out[name] = data
	}
	return out
}

// decodeBoth decodes data with the fast path and with json.Unmarshal, and fails unless they agree:
// when the fast path takes the input, encoding/json accepts it and gives the same value. It
// reports whether the fast path took the input.
func decodeBoth(t *testing.T, data []byte) (Event, bool) {
	t.Helper()
	var want Event
	wantErr := json.Unmarshal(data, &want)
	var got Event
	fast := decodeEventFast(data, &got)
	if !fast {
		return want, false
	}
	if wantErr != nil {
		t.Fatalf("fast path took %q, encoding/json fails: %v", data, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fast path on %q:\n got %#v\nwant %#v", data, got, want)
	}
	return got, true
}

// Every real event, of every type, takes the fast path and gives what encoding/json gives.
func TestDecodeEventFastFixtures(t *testing.T) {
	// The only fixtures outside the fast shape: a value of the wrong JSON type.
	fallback := map[string]bool{"public_not_bool.json": true, "react_remove_not_bool.json": true,
		"seq_string.json": true}
	types := map[string]bool{}
	for name, data := range eventFixtures(t) {
		e, fast := decodeBoth(t, data)
		if fast == fallback[filepath.Base(name)] {
			t.Errorf("%s: fast path %v", name, fast)
		}
		if fast {
			types[e.Type] = true
		}
		// The fixtures are pretty-printed; their compact form takes the fast path too.
		var buf bytes.Buffer
		if err := json.Compact(&buf, data); err != nil {
			t.Fatal(err)
		}
		if _, fast := decodeBoth(t, buf.Bytes()); fast == fallback[filepath.Base(name)] {
			t.Errorf("%s compacted: fast path %v", name, fast)
		}
	}
	for _, typ := range eventTypes {
		if !types[typ] {
			t.Errorf("no %s fixture took the fast path", typ)
		}
	}
}

// The fast path on each kind of event, as the services write them (json.Marshal of an Event).
func TestDecodeEventFastKinds(t *testing.T) {
	const ts = "2025-03-01T12:00:00.123Z"
	events := map[string]Event{
		"message": {Type: TypeMessage, Conv: "dm:alice:bob", Ts: ts, From: "alice", Mid: "m-1",
			MsgType: "text", Msg: "hello, 世界 👋 \u007f"},
		"private": {Type: TypeMessage, Conv: "g:team", Ts: ts, From: "alice", Mid: "m-2",
			MsgType: "image", Msg: "https://cdn.example/x.png", Tid: "carol"},
		"edit": {Type: TypeMessage, Conv: "g:team", Ts: ts, From: "alice", Mid: "e-1", MsgType: "text",
			Kind: KindEdit, Ref: 42, RefFrom: "alice", Msg: "fixed"},
		"delete": {Type: TypeMessage, Conv: "g:team", Ts: ts, From: "alice", Kind: KindDelete,
			Ref: 18446744073709551615, RefFrom: "alice", Tid: "bob"},
		"react": {Type: TypeMessage, Conv: "g:team", Ts: ts, From: "bob", Kind: KindReact, Ref: 7,
			RefFrom: "alice", Emoji: "👍", Remove: true},
		"read": {Type: TypeRead, Conv: "g:team", Ts: ts, From: "alice", Seq: 9007199254740991},
		"creator": {Type: TypeMember, Conv: "g:team", Ts: ts, User: "alice", Action: ActionJoined,
			By: "alice", Name: "The team", Public: true, Members: []string{"alice", "bob", "carol"}},
		"invited": {Type: TypeMember, Conv: "g:team", Ts: ts, User: "carol", Action: ActionInvited, By: "bob"},
		"left":    {Type: TypeMember, Conv: "g:team", Ts: ts, User: "carol", Action: ActionLeft},
		"contact": {Type: TypeContact, Ts: ts, From: "alice", User: "bob", Action: ContactRemove},
		"gone":    {Type: TypeGone, Conv: "g:team", Ts: ts, Ref: 42},
		// Texts that json.Marshal escapes: HTML, quotes, backslashes, control characters.
		"escaped": {Type: TypeMessage, Conv: "dm:alice:bob", Ts: ts, From: "alice", Mid: "m-3",
			MsgType: "text", Msg: "<b>\"hi\"</b> & <i>bye</i>\n\ttab \\ / \r\b\f\x00\x1f \u2028\u2029 é 👍 \ufffd"},
		"escaped member": {Type: TypeMember, Conv: "g:rnd", Ts: ts, User: "alice", Action: ActionJoined,
			By: "alice", Name: "R&D <core>", Members: []string{"a<b", "c>d", "e&f", "\"q\""}},
		// Every field set, to cover every key.
		"all": {Type: "x", Conv: "c", Ts: "t", From: "f", Mid: "m", MsgType: "mt", Msg: "ms", Tid: "ti",
			Kind: "k", Ref: 1, RefFrom: "rf", Emoji: "em", Remove: true, Seq: 2, User: "u", Action: "a",
			By: "b", Name: "n", Public: true, Members: []string{"m1"}},
	}
	for name, want := range events {
		for _, html := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/html=%v", name, html), func(t *testing.T) {
				var buf bytes.Buffer
				enc := json.NewEncoder(&buf)
				enc.SetEscapeHTML(html)
				if err := enc.Encode(want); err != nil {
					t.Fatal(err)
				}
				got, fast := decodeBoth(t, buf.Bytes())
				if !fast {
					t.Fatalf("fallback on %s", buf.Bytes())
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("got %#v\nwant %#v", got, want)
				}
				// DecodeEvent: same value and same check as before.
				if de, err := DecodeEvent(buf.Bytes()); err == nil && !reflect.DeepEqual(de, want) {
					t.Errorf("DecodeEvent: %#v", de)
				} else if err != nil && name != "all" {
					t.Errorf("DecodeEvent: %v", err)
				}
			})
		}
	}
}

// The escapes decode to what they stand for, checked against the expected strings themselves, not
// only against encoding/json.
func TestDecodeEventFastEscapes(t *testing.T) {
	cases := map[string]string{
		`plain`:                    "plain",
		`a\nb`:                     "a\nb",
		`\"\\\/\b\f\n\r\t`:         "\"\\/\b\f\n\r\t",
		`\u003cb\u003e\u0026`:      "<b>&",
		`\u003C\u003E`:             "<>",
		`\u0000\u001f\u007f`:       "\x00\x1f\x7f",
		`\u00e9\u00E9`:             "éé",
		`\u0080\u07ff\u0800\uffff`: "\u0080\u07ff\u0800\uffff",
		`\ud7ff\ue000`:             "\ud7ff\ue000",
		`x\u4e16y\u754cz`:          "x世y界z",
		"é\\n👍\\u0041":             "é\n👍A",
		`\\u0041`:                  "\\u0041",
		`\\\\`:                     "\\\\",
	}
	for in, want := range cases {
		data := []byte(`{"msg":"` + in + `","members":["` + in + `"]}`)
		got, fast := decodeBoth(t, data)
		if !fast {
			t.Errorf("%s: fallback", data)
			continue
		}
		if got.Msg != want || len(got.Members) != 1 || got.Members[0] != want {
			t.Errorf("%s: msg %q, members %q, want %q", data, got.Msg, got.Members, want)
		}
	}
}

// Whitespace wherever JSON allows it.
func TestDecodeEventFastWhitespace(t *testing.T) {
	want := Event{Type: TypeMember, Conv: "g:team", Ts: "t", Ref: 3, Public: true, Members: []string{"a", "b"}}
	inputs := []string{
		`{"type":"chat.member.v1","conv":"g:team","ts":"t","ref":3,"public":true,"members":["a","b"]}`,
		` {"type" : "chat.member.v1" , "conv":"g:team","ts":"t","ref" : 3 ,"public" : true , "members" : [ "a" , "b" ] } `,
		"\t\r\n{\n\t\"type\":\t\"chat.member.v1\",\r\n\"conv\"\n:\n\"g:team\",\"ts\":\"t\",\"ref\":3\n,\"public\":true\t,\"members\":[\n\"a\",\r\"b\"\n]\n}\n\n",
		"{\"type\":\"chat.member.v1\",\"conv\":\"g:team\",\"ts\":\"t\",\"ref\":3,\"public\":true,\"members\":[\"a\",\"b\"]}\r\n",
	}
	for _, in := range inputs {
		got, fast := decodeBoth(t, []byte(in))
		if !fast || !reflect.DeepEqual(got, want) {
			t.Errorf("%q: fast %v, %#v", in, fast, got)
		}
	}
	for _, in := range []string{`{}`, ` { } `, "\n{\n}\n"} {
		if got, fast := decodeBoth(t, []byte(in)); !fast || !reflect.DeepEqual(got, Event{}) {
			t.Errorf("%q: fast %v, %#v", in, fast, got)
		}
	}
}

// decodeEventCases are inputs around the edges of the fast path: fast tells whether it takes them.
// Those it leaves to encoding/json include valid JSON it does not handle, type errors and syntax
// errors.
var decodeEventCases = []struct {
	name string
	in   string
	fast bool
}{
	// null, and repeated keys: the fast path does as encoding/json does.
	{"null string", `{"type":"chat.read.v1","msg":null}`, true},
	{"null uint", `{"seq":null,"ref":null}`, true},
	{"null bool", `{"public":null,"remove":null}`, true},
	{"null members", `{"members":null}`, true},
	{"repeated string", `{"msg":"a","msg":"b"}`, true},
	{"repeated string then null", `{"msg":"a","msg":null}`, true},
	{"repeated uint then null", `{"seq":5,"seq":null,"ref":1,"ref":0}`, true},
	{"repeated bool", `{"public":true,"public":null,"remove":true,"remove":false}`, true},
	{"repeated members shorter", `{"members":["a","b","c"],"members":["d"]}`, true},
	{"repeated members longer", `{"members":["a"],"members":["b","c","d"]}`, true},
	{"repeated members then empty", `{"members":["a"],"members":[]}`, true},
	{"repeated members then null", `{"members":["a"],"members":null}`, true},
	{"null then empty members", `{"members":null,"members":[]}`, true},
	{"empty members", `{"members":[]}`, true},
	{"empty members spaced", `{"members":[ ]}`, true},
	{"empty strings", `{"type":"","msg":"","members":[""]}`, true},
	{"zero", `{"seq":0,"ref":0}`, true},
	{"max uint64", `{"seq":18446744073709551615}`, true},
	{"utf8", "{\"msg\":\"é世👍\u007f\u2028\u2029\xef\xbf\xbd\"}", true},

	// Keys.
	{"unknown key", `{"type":"chat.read.v1","extra":1}`, false},
	{"unknown key string", `{"extra":"x"}`, false},
	{"key case", `{"Type":"chat.read.v1"}`, false},
	{"key case msgtype", `{"msgtype":"text"}`, false},
	{"key upper", `{"CONV":"g:team"}`, false},
	{"key kelvin", "{\"\u212aind\":\"edit\"}", false},
	{"key escape", `{"ty\u0070e":"chat.read.v1"}`, false},
	{"key escaped quote", `{"ty\"pe":"x"}`, false},
	{"key empty", `{"":"x"}`, false},
	{"key not string", `{type:"x"}`, false},

	// Escapes: all but the surrogates take the fast path.
	{"escape newline", `{"msg":"a\nb"}`, true},
	{"escape every short", `{"msg":"\"\\\/\b\f\n\r\t"}`, true},
	{"escape html", `{"msg":"\u003cb\u003e \u0026amp; \u003C\u003E\u0026"}`, true},
	{"escape unicode", `{"msg":"\u00e9"}`, true},
	{"escape unicode upper", `{"msg":"\u00E9\u00c9\uABCD\uabcd"}`, true},
	{"escape unicode widths", `{"msg":"\u0041\u007f\u0080\u07ff\u0800\uffff"}`, true},
	{"escape nul", `{"msg":"\u0000"}`, true},
	{"escape controls", `{"msg":"\u0001\u001f\u0008\u000c"}`, true},
	{"escape line separators", `{"msg":"\u2028\u2029"}`, true},
	{"escape replacement char", `{"msg":"\ufffd\ufffe"}`, true},
	{"escape before surrogates", `{"msg":"\ud7ff\ue000"}`, true},
	{"escape quote", `{"msg":"a\"b"}`, true},
	{"escape backslash last", `{"msg":"a\\"}`, true},
	{"escape slash", `{"msg":"a\/b"}`, true},
	{"escape only", `{"msg":"\n"}`, true},
	{"escape and utf8", "{\"msg\":\"\\u00e9\xc3\xa9\\n\xf0\x9f\x91\x8d\"}", true},
	{"escape in members", `{"members":["a\tb","\u003c"]}`, true},
	{"escape in enum", `{"type":"chat.message\u002ev1","kind":"\u0065dit"}`, true},
	{"escape in ts", `{"ts":"2025-03-01T12:00:00\u002e123Z"}`, true},
	{"escape surrogates", `{"msg":"\ud83d\udc4d"}`, false},
	{"escape surrogates upper", `{"msg":"\uD83D\uDC4D"}`, false},
	{"escape lone high surrogate", `{"msg":"\ud800"}`, false},
	{"escape lone low surrogate", `{"msg":"\udfff x"}`, false},
	{"escape reversed surrogates", `{"msg":"\udc4d\ud83d"}`, false},
	{"escape surrogate in members", `{"members":["\ud83d\udc4d"]}`, false},
	{"escape invalid", `{"msg":"a\x"}`, false},
	{"escape single quote", `{"msg":"a\'b"}`, false},
	{"escape upper n", `{"msg":"a\Nb"}`, false},
	{"escape upper u", `{"msg":"\U00e9"}`, false},
	{"escape short unicode", `{"msg":"\u00e"}`, false},
	{"escape short unicode end", `{"msg":"\u00`, false},
	{"escape bad hex", `{"msg":"\u00g9"}`, false},
	{"escape signed hex", `{"msg":"\u+0e9"}`, false},
	{"escape at end", `{"msg":"a\`, false},
	{"escape quote at end", `{"msg":"a\"}`, false},
	{"escape then raw newline", "{\"msg\":\"\\n\n\"}", false},
	{"escape then invalid utf8", "{\"msg\":\"\\n\xff\"}", false},
	{"escape splitting utf8", "{\"msg\":\"\xc3\\n\xa9\"}", false},
	{"invalid utf8", "{\"msg\":\"\xff\"}", false},
	{"invalid utf8 truncated", "{\"msg\":\"\xe4\xb8\"}", false},
	{"utf8 surrogate", "{\"msg\":\"\xed\xa0\x80\"}", false},
	{"utf8 overlong", "{\"msg\":\"\xc0\xaf\"}", false},
	{"invalid utf8 in members", "{\"members\":[\"\xff\"]}", false},
	{"raw tab", "{\"msg\":\"a\tb\"}", false},
	{"raw newline", "{\"msg\":\"a\nb\"}", false},
	{"raw nul", "{\"msg\":\"a\x00b\"}", false},
	{"unterminated", `{"msg":"abc`, false},
	{"string number", `{"msg":1}`, false},
	{"string bool", `{"msg":true}`, false},
	{"string object", `{"conv":{}}`, false},
	{"string array", `{"conv":["a"]}`, false},
	{"string nul literal", `{"msg":nul}`, false},
	{"string nullx", `{"msg":nullx}`, false},

	// Numbers.
	{"negative", `{"seq":-1}`, false},
	{"negative zero", `{"seq":-0}`, false},
	{"plus", `{"seq":+1}`, false},
	{"fraction", `{"seq":1.5}`, false},
	{"fraction zero", `{"seq":1.0}`, false},
	{"zero fraction", `{"seq":0.0}`, false},
	{"exponent", `{"seq":1e3}`, false},
	{"exponent upper", `{"ref":1E3}`, false},
	{"zero exponent", `{"ref":0e0}`, false},
	{"leading zero", `{"seq":01}`, false},
	{"overflow", `{"seq":18446744073709551616}`, false},
	{"overflow long", `{"ref":99999999999999999999999}`, false},
	{"number string", `{"seq":"42"}`, false},
	{"number bool", `{"seq":true}`, false},
	{"number truncated", `{"seq":4`, false},

	// Bools.
	{"bool string", `{"public":"yes"}`, false},
	{"bool number", `{"remove":1}`, false},
	{"bool case", `{"public":True}`, false},
	{"bool truncated", `{"public":tru}`, false},
	{"bool trailing", `{"public":truex}`, false},
	{"bool falsey", `{"public":fals}`, false},

	// Members.
	{"members string", `{"members":"a"}`, false},
	{"members number", `{"members":[1]}`, false},
	{"members null element", `{"members":["a",null]}`, false},
	{"members null element repeated", `{"members":["a","b"],"members":[null,"c"]}`, false},
	{"members nested", `{"members":[["a"]]}`, false},
	{"members object", `{"members":{}}`, false},
	{"members trailing comma", `{"members":["a",]}`, false},
	{"members missing comma", `{"members":["a" "b"]}`, false},
	{"members unterminated", `{"members":["a"`, false},
	{"members open", `{"members":[`, false},

	// Not an object, trailing data, syntax errors.
	{"empty", ``, false},
	{"spaces", "  \n", false},
	{"null", `null`, false},
	{"array", `[]`, false},
	{"string", `"x"`, false},
	{"number", `1`, false},
	{"bom", "\xef\xbb\xbf{}", false},
	{"trailing garbage", `{"type":"chat.read.v1"}x`, false},
	{"trailing object", `{} {}`, false},
	{"trailing brace", `{"type":"x"}}`, false},
	{"trailing nul", "{}\x00", false},
	{"trailing comma", `{"type":"x",}`, false},
	{"missing comma", `{"type":"x" "ts":"t"}`, false},
	{"missing colon", `{"type" "x"}`, false},
	{"double colon", `{"type"::"x"}`, false},
	{"missing value", `{"type":}`, false},
	{"open", `{`, false},
	{"open key", `{"type"`, false},
	{"open colon", `{"type":`, false},
	{"open value", `{"type":"x"`, false},
	{"open comma", `{"type":"x",`, false},
	{"leading comma", `{,"type":"x"}`, false},
	{"vertical tab", "{\v}", false},
	{"form feed", "{\"type\":\"x\"\f}", false},
	{"nbsp", "{\u00a0}", false},
	{"single quotes", `{'type':'x'}`, false},
}

func TestDecodeEventFastEdges(t *testing.T) {
	for _, c := range decodeEventCases {
		t.Run(c.name, func(t *testing.T) {
			if _, fast := decodeBoth(t, []byte(c.in)); fast != c.fast {
				t.Errorf("%q: fast path %v, want %v", c.in, fast, c.fast)
			}
			checkDecodeEvent(t, []byte(c.in))
		})
	}
}

// checkDecodeEvent checks DecodeEvent against encoding/json: the same decode error, wrapped as
// before, or the value encoding/json gives when the event passes the checks.
func checkDecodeEvent(t *testing.T, data []byte) {
	t.Helper()
	var want Event
	wantErr := json.Unmarshal(data, &want)
	got, err := DecodeEvent(data)
	switch {
	case wantErr != nil:
		if err == nil || err.Error() != "schemas: decode event: "+wantErr.Error() {
			t.Fatalf("DecodeEvent(%q): %v, want the decode error %v", data, err, wantErr)
		}
	case err == nil:
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("DecodeEvent(%q):\n got %#v\nwant %#v", data, got, want)
		}
	case strings.HasPrefix(err.Error(), "schemas: decode event:"):
		t.Fatalf("DecodeEvent(%q): %v, encoding/json decodes it", data, err)
	}
}

// The decoded strings are copies: reusing the input buffer (as NATS does) does not change them.
func TestDecodeEventFastCopies(t *testing.T) {
	data := []byte(`{"type":"chat.member.v1","conv":"g:team","ts":"2025-03-01T12:00:00.123Z","user":"alice",` +
		`"action":"joined","by":"alice","name":"The \u003cteam\u003e","public":true,"members":["alice","bob","\"c\""]}`)
	if !decodeEventFast(data, new(Event)) {
		t.Fatal("fallback")
	}
	e, err := DecodeEvent(data)
	if err != nil {
		t.Fatal(err)
	}
	want := e
	want.Members = append([]string(nil), e.Members...)
	for i := range data {
		data[i] = 'x'
	}
	if !reflect.DeepEqual(e, want) || e.Conv != "g:team" || e.Members[1] != "bob" || e.Members[2] != `"c"` ||
		e.Name != "The <team>" {
		t.Fatalf("decoded event changed with its input: %#v", e)
	}
}

// FuzzDecodeEvent compares the fast decoder with json.Unmarshal: whenever the fast path takes an
// input, encoding/json accepts it and gives the same value; DecodeEvent gives encoding/json's
// decode error or value. It also checks that the fast path takes the canonical forms (json.Marshal,
// with and without HTML escaping) of every event encoding/json decodes: json.Marshal writes no
// surrogate escapes.
func FuzzDecodeEvent(f *testing.F) {
	for _, data := range eventFixtures(f) {
		f.Add(data)
		var buf bytes.Buffer
		if err := json.Compact(&buf, data); err == nil {
			f.Add(buf.Bytes())
		}
	}
	for _, c := range decodeEventCases {
		f.Add([]byte(c.in))
	}
	f.Add([]byte(typicalMessageEvent))
	for _, msg := range []string{"<b>bold</b> & <i>it</i>", `say "hi"`, "line 1\nline 2\r\n\ttab", `back\slash /`,
		"é 世界 👍 \u2028\u2029 \x00\x1f\x7f", "\ufffd\xff"} {
		for _, html := range []bool{false, true} {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(html)
			e := Event{Type: TypeMessage, Conv: "g:team", Ts: "t", From: "a&b", Mid: "m", MsgType: "text", Msg: msg,
				Members: []string{msg, "<x>"}}
			if err := enc.Encode(e); err != nil {
				f.Fatal(err)
			}
			f.Add(buf.Bytes())
		}
	}
	f.Add([]byte(`{"msg":"\u00e9\u00E9\u0000\ud83d\udc4d\ud800\udc00x\/\b\f"}`))
	f.Add([]byte(`{"msg":"\ud83d\u0041\udc4d"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var want Event
		wantErr := json.Unmarshal(data, &want)
		var got Event
		if decodeEventFast(data, &got) {
			if wantErr != nil {
				t.Fatalf("fast path took %q, encoding/json fails: %v", data, wantErr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("fast path on %q:\n got %#v\nwant %#v", data, got, want)
			}
		}
		checkDecodeEvent(t, data)
		if wantErr != nil {
			return
		}
		for _, html := range []bool{false, true} {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(html)
			if err := enc.Encode(want); err != nil {
				t.Fatal(err)
			}
			if _, fast := decodeBoth(t, buf.Bytes()); !fast {
				t.Fatalf("fast path refused the canonical %s", buf.Bytes())
			}
		}
	})
}

// typicalMessageEvent is an ordinary chat message as the gateway writes it (190 bytes).
const typicalMessageEvent = `{"type":"chat.message.v1","conv":"g:engineering","ts":"2025-03-01T12:00:00.123Z",` +
	`"from":"alice_smith","mid":"Xk3f9QpL2mN8vR4tY7wZ1a","msgType":"text","msg":"Still on for the review at 3pm?"}`

// typicalEscapedEvent is a message with HTML in it, as json.Marshal escapes it.
const typicalEscapedEvent = `{"type":"chat.message.v1","conv":"g:engineering","ts":"2025-03-01T12:00:00.123Z",` +
	`"from":"alice_smith","mid":"Xk3f9QpL2mN8vR4tY7wZ1a","msgType":"text","msg":"Still on for the review at 3pm? ` +
	`\u003cb\u003eyes\u003c/b\u003e \u0026 \"soon\""}`

func BenchmarkDecodeEvent(b *testing.B) {
	data := []byte(typicalMessageEvent)
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var e Event
			if !decodeEventFast(data, &e) {
				b.Fatal("fallback")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var e Event
			if err := json.Unmarshal(data, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A message that json.Marshal escapes: the fast path decodes the escapes.
	escaped := []byte(typicalEscapedEvent)
	b.Run("escaped/fast", func(b *testing.B) {
		b.SetBytes(int64(len(escaped)))
		b.ReportAllocs()
		for b.Loop() {
			var e Event
			if !decodeEventFast(escaped, &e) {
				b.Fatal("fallback")
			}
		}
	})
	b.Run("escaped/encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(escaped)))
		b.ReportAllocs()
		for b.Loop() {
			var e Event
			if err := json.Unmarshal(escaped, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The whole of DecodeEvent: the fast path and the checks.
	b.Run("DecodeEvent", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeEvent(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
