package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// clientFixtures are the contents of the client frame fixtures (valid and invalid) by file name.
func clientFixtures(tb testing.TB) map[string][]byte {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(fixturesDir, "client.*", "*", "*.json"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no client fixtures: %v", err)
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

// decodeFrameBoth decodes data with the fast path, with DecodeClientFrame and with json.Unmarshal,
// and fails unless they agree: when the fast path takes the input, encoding/json accepts it and
// gives the same value; DecodeClientFrame gives json.Unmarshal's value and error, whatever its
// frame held before. It reports whether the fast path took the input.
func decodeFrameBoth(t *testing.T, data []byte) (ClientFrame, bool) {
	t.Helper()
	got, want, wantErr, fast := decodeFrameFast(t, data)

	// A frame that held values before, which DecodeClientFrame clears.
	seq, msg := uint64(9), "old"
	dec := ClientFrame{Cmd: "old", Msg: &msg, Seq: &seq, Public: true, Members: []string{"x", "y"},
		Remove: json.RawMessage(`true`)}
	err := DecodeClientFrame(data, &dec)
	if !reflect.DeepEqual(err, wantErr) {
		t.Fatalf("DecodeClientFrame(%q): error %#v, want %#v", data, err, wantErr)
	}
	if !reflect.DeepEqual(dec, want) {
		t.Fatalf("DecodeClientFrame(%q):\n got %s\nwant %s", data, dumpFrame(dec), dumpFrame(want))
	}
	return got, fast
}

// decodeFrameFast decodes data with the fast path and with json.Unmarshal, and fails if the fast
// path takes the input and encoding/json fails or gives another value.
func decodeFrameFast(t *testing.T, data []byte) (got, want ClientFrame, wantErr error, fast bool) {
	t.Helper()
	wantErr = json.Unmarshal(data, &want)
	fast = decodeClientFrameFast(data, &got)
	if fast {
		if wantErr != nil {
			t.Fatalf("fast path took %q, encoding/json fails: %v", data, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("fast path on %q:\n got %s\nwant %s", data, dumpFrame(got), dumpFrame(want))
		}
	}
	return got, want, wantErr, fast
}

// dumpFrame shows a frame with what its pointers point to.
func dumpFrame(f ClientFrame) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%#v", f)
	for name, p := range map[string]*string{"msg": f.Msg, "name": f.Name} {
		if p != nil {
			fmt.Fprintf(&b, " %s=%q", name, *p)
		}
	}
	for name, p := range map[string]*uint64{"seq": f.Seq, "after": f.After, "before": f.Before} {
		if p != nil {
			fmt.Fprintf(&b, " %s=%d", name, *p)
		}
	}
	return b.String()
}

// The client fixtures take the fast path unless they are outside its shape, and give what
// encoding/json gives, pretty-printed as they are and compacted. Every command but activity (idle)
// has valid fixtures that take the fast path.
func TestDecodeClientFrameFixtures(t *testing.T) {
	fastCmds := map[string]bool{}
	for name, data := range clientFixtures(t) {
		rel, err := filepath.Rel(fixturesDir, name)
		if err != nil {
			t.Fatal(err)
		}
		rel = filepath.ToSlash(rel)
		want := inFastShape(data)
		f, fast := decodeFrameBoth(t, data)
		if fast != want {
			t.Errorf("%s: fast path %v, want %v", rel, fast, want)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, data); err != nil {
			t.Fatal(err)
		}
		if _, fast := decodeFrameBoth(t, buf.Bytes()); fast != want {
			t.Errorf("%s compacted: fast path %v, want %v", rel, fast, want)
		}
		if fast && strings.Contains(rel, "/valid/") {
			fastCmds[f.Cmd] = true
		}
	}
	for _, cmd := range []string{CmdLogin, CmdMessage, CmdCreate, CmdJoin, CmdLeave, CmdInvite, CmdEdit,
		CmdDelete, CmdReact, CmdRead, CmdTyping, CmdSync, CmdHistory, CmdConversations, CmdPresence,
		CmdContacts, CmdPing} {
		if !fastCmds[cmd] {
			t.Errorf("no valid %s fixture took the fast path", cmd)
		}
	}
}

// inFastShape reports whether a frame, valid JSON, is in the shape the fast path takes, by way of
// encoding/json's generic decoding: no keys but the fast path's, strings, bools, arrays of strings
// and non-negative integers (below 2^53 and written as plain digits, as in the fixtures) where
// ClientFrame has them, and no escaped surrogates.
func inFastShape(data []byte) bool {
	if bytes.Contains(bytes.ToLower(data), []byte(`\ud`)) {
		return false
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return false
	}
	for k, v := range m {
		if v == nil {
			continue
		}
		switch k {
		case "cmd", "id", "token", "conv", "to", "type", "msg", "mid", "tid", "name", "user", "emoji", "add":
			if _, ok := v.(string); !ok {
				return false
			}
		case "seq", "after", "before":
			if n, ok := v.(float64); !ok || n < 0 || n >= 1<<53 || n != float64(uint64(n)) {
				return false
			}
		case "public":
			if _, ok := v.(bool); !ok {
				return false
			}
		case "members", "users":
			list, ok := v.([]any)
			if !ok {
				return false
			}
			for _, e := range list {
				if _, ok := e.(string); !ok {
					return false
				}
			}
		default:
			return false
		}
	}
	return true
}

// The frames of docs/protocol.md, decoded by the fast path to the values they stand for.
func TestDecodeClientFrameProtocol(t *testing.T) {
	str := func(s string) *string { return &s }
	num := func(n uint64) *uint64 { return &n }
	cases := []struct {
		in   string
		want ClientFrame
	}{
		{`{"cmd":"login","token":"eyJhbGciOiJIUzI1NiJ9.e30.sig","id":"1"}`,
			ClientFrame{Cmd: CmdLogin, Token: "eyJhbGciOiJIUzI1NiJ9.e30.sig", ID: "1"}},
		{`{"cmd":"message","id":"1","to":"bob","type":"text","msg":"hi <b>","mid":"m1"}`,
			ClientFrame{Cmd: CmdMessage, ID: "1", To: "bob", Type: "text", Msg: str("hi <b>"), Mid: "m1"}},
		{`{"cmd":"message","id":"2","conv":"g:team","type":"text","msg":"hi \u003cb\u003e \u0026 \"you\"\n","mid":"m2","tid":"carol"}`,
			ClientFrame{Cmd: CmdMessage, ID: "2", Conv: "g:team", Type: "text", Msg: str("hi <b> & \"you\"\n"),
				Mid: "m2", Tid: "carol"}},
		{`{"cmd":"message","conv":"dm:alice:bob","type":"image","msg":"https:\/\/cdn.example\/x.png","mid":"m3"}`,
			ClientFrame{Cmd: CmdMessage, Conv: "dm:alice:bob", Type: "image", Msg: str("https://cdn.example/x.png"), Mid: "m3"}},
		{`{"cmd":"create","id":"3","conv":"g:team","name":"The team","members":["bob","carol"],"public":true}`,
			ClientFrame{Cmd: CmdCreate, ID: "3", Conv: "g:team", Name: str("The team"), Members: []string{"bob", "carol"},
				Public: true}},
		{`{"cmd":"create","conv":"g:solo","members":[]}`,
			ClientFrame{Cmd: CmdCreate, Conv: "g:solo", Members: []string{}}},
		{`{"cmd":"join","id":"4","conv":"g:team"}`, ClientFrame{Cmd: CmdJoin, ID: "4", Conv: "g:team"}},
		{`{"cmd":"leave","conv":"g:team"}`, ClientFrame{Cmd: CmdLeave, Conv: "g:team"}},
		{`{"cmd":"invite","id":"5","conv":"g:team","user":"dave"}`,
			ClientFrame{Cmd: CmdInvite, ID: "5", Conv: "g:team", User: "dave"}},
		{`{"cmd":"sync","id":"6","after":1234}`, ClientFrame{Cmd: CmdSync, ID: "6", After: num(1234)}},
		{`{"cmd":"sync","after":0}`, ClientFrame{Cmd: CmdSync, After: num(0)}},
		{`{"cmd":"sync"}`, ClientFrame{Cmd: CmdSync}},
		{`{"cmd":"history","id":"7","conv":"g:team","before":100,"after":50}`,
			ClientFrame{Cmd: CmdHistory, ID: "7", Conv: "g:team", Before: num(100), After: num(50)}},
		{`{"cmd":"ping","id":"8"}`, ClientFrame{Cmd: CmdPing, ID: "8"}},
		{`{"cmd":"typing","conv":"g:team"}`, ClientFrame{Cmd: CmdTyping, Conv: "g:team"}},
		{`{"cmd":"presence","id":"9","users":["bob","carol"]}`,
			ClientFrame{Cmd: CmdPresence, ID: "9", Users: []string{"bob", "carol"}}},
		{`{"cmd":"edit","id":"10","conv":"g:team","seq":42,"msg":"fixed","mid":"e1"}`,
			ClientFrame{Cmd: CmdEdit, ID: "10", Conv: "g:team", Seq: num(42), Msg: str("fixed"), Mid: "e1"}},
		{`{"cmd":"delete","id":"11","conv":"g:team","seq":42}`,
			ClientFrame{Cmd: CmdDelete, ID: "11", Conv: "g:team", Seq: num(42)}},
		{`{"cmd":"react","id":"12","conv":"g:team","seq":18446744073709551615,"emoji":"👍"}`,
			ClientFrame{Cmd: CmdReact, ID: "12", Conv: "g:team", Seq: num(18446744073709551615), Emoji: "👍"}},
		{`{"cmd":"read","id":"13","conv":"g:team","seq":0}`,
			ClientFrame{Cmd: CmdRead, ID: "13", Conv: "g:team", Seq: num(0)}},
		{`{"cmd":"conversations","id":"14"}`, ClientFrame{Cmd: CmdConversations, ID: "14"}},
		{`{"cmd":"contacts","id":"15","add":"bob"}`, ClientFrame{Cmd: CmdContacts, ID: "15", Add: "bob"}},
		{`{"cmd":"contacts"}`, ClientFrame{Cmd: CmdContacts}},
		{`{"cmd":"unknown-command","id":"16"}`, ClientFrame{Cmd: "unknown-command", ID: "16"}},
		{`{"id":"17"}`, ClientFrame{ID: "17"}},
		{`{}`, ClientFrame{}},
	}
	for _, c := range cases {
		got, fast := decodeFrameBoth(t, []byte(c.in))
		if !fast {
			t.Errorf("%s: fallback", c.in)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %s\nwant %s", c.in, dumpFrame(got), dumpFrame(c.want))
		}
	}
}

// decodeFrameCases are inputs around the edges of the fast path: fast tells whether it takes them.
var decodeFrameCases = []struct {
	name string
	in   string
	fast bool
}{
	// Every key the fast path takes.
	{"all fast keys", `{"cmd":"x","id":"i","token":"tk","conv":"c","to":"t","type":"ty","msg":"m","mid":"mi",` +
		`"tid":"ti","name":"n","public":true,"members":["a"],"user":"u","users":["b","c"],"seq":1,"emoji":"e",` +
		`"after":2,"before":3,"add":"ad"}`, true},

	// null, and repeated keys: the fast path does as encoding/json does.
	{"null string", `{"cmd":null,"conv":null}`, true},
	{"null pointers", `{"msg":null,"name":null,"seq":null,"after":null,"before":null}`, true},
	{"null bool", `{"public":null}`, true},
	{"null lists", `{"members":null,"users":null}`, true},
	{"string then null", `{"cmd":"ping","cmd":null}`, true},
	{"msg then null", `{"msg":"a","msg":null}`, true},
	{"null then msg", `{"msg":null,"msg":"b"}`, true},
	{"msg twice", `{"msg":"a","msg":"b","name":"c","name":""}`, true},
	{"seq then null", `{"seq":5,"seq":null,"after":1,"after":0,"before":null,"before":7}`, true},
	{"public then null", `{"public":true,"public":null}`, true},
	{"public then false", `{"public":true,"public":false}`, true},
	{"users shorter", `{"users":["a","b","c"],"users":["d"]}`, true},
	{"users longer", `{"users":["a"],"users":["b","c","d"]}`, true},
	{"users then empty", `{"users":["a"],"users":[]}`, true},
	{"users then null", `{"users":["a"],"users":null}`, true},
	{"empty strings", `{"cmd":"","msg":"","name":"","users":[""]}`, true},
	{"max uint64", `{"seq":18446744073709551615,"after":18446744073709551615}`, true},
	{"whitespace", " {\n\t\"cmd\" : \"sync\" ,\r\n \"after\" : 5 , \"users\" : [ \"a\" , \"b\" ] }\n", true},
	{"escapes", `{"cmd":"m\u0065ssage","msg":"\u003c\/b\u003e\t\"\\","name":"\u00e9","users":["\n"]}`, true},
	{"utf8", "{\"msg\":\"é世👍\u007f\u2028\"}", true},

	// What falls back.
	{"limit", `{"cmd":"history","conv":"g:team","limit":20}`, false},
	{"limit null", `{"limit":null}`, false},
	{"idle", `{"cmd":"activity","idle":true}`, false},
	{"remove bool", `{"cmd":"react","remove":true}`, false},
	{"remove string", `{"cmd":"contacts","remove":"bob"}`, false},
	{"remove null", `{"remove":null}`, false},
	{"unknown key", `{"cmd":"ping","extra":1}`, false},
	{"key case", `{"Cmd":"ping"}`, false},
	{"key upper", `{"CMD":"ping"}`, false},
	{"key kelvin", "{\"to\u212a\":\"x\"}", false},
	{"key escape", `{"c\u006dd":"ping"}`, false},
	{"key empty", `{"":"x"}`, false},
	{"escape surrogates", `{"msg":"\ud83d\udc4d"}`, false},
	{"escape lone surrogate", `{"msg":"\ud83d"}`, false},
	{"escape invalid", `{"msg":"\x"}`, false},
	{"invalid utf8", "{\"msg\":\"\xff\"}", false},
	{"raw control", "{\"msg\":\"a\nb\"}", false},
	{"users null element", `{"users":["a",null]}`, false},
	{"users number", `{"users":[1]}`, false},
	{"users string", `{"users":"a"}`, false},
	{"members object", `{"members":{}}`, false},

	// Type errors: encoding/json's *UnmarshalTypeError.
	{"cmd number", `{"cmd":1}`, false},
	{"id number", `{"id":7,"cmd":"ping"}`, false},
	{"msg number", `{"msg":1}`, false},
	{"msg bool", `{"msg":true}`, false},
	{"name array", `{"name":["x"]}`, false},
	{"seq string", `{"seq":"42"}`, false},
	{"seq negative", `{"seq":-1}`, false},
	{"seq fraction", `{"seq":1.5}`, false},
	{"seq exponent", `{"seq":1e3}`, false},
	{"seq overflow", `{"seq":18446744073709551616}`, false},
	{"after bool", `{"after":true}`, false},
	{"public string", `{"public":"true"}`, false},
	{"public number", `{"public":1}`, false},

	// Syntax errors and trailing data.
	{"empty", ``, false},
	{"null", `null`, false},
	{"array", `[{"cmd":"ping"}]`, false},
	{"string", `"ping"`, false},
	{"seq leading zero", `{"seq":01}`, false},
	{"seq minus", `{"seq":-}`, false},
	{"bool truncated", `{"public":tru}`, false},
	{"null truncated", `{"msg":nul}`, false},
	{"null trailing", `{"msg":nullx}`, false},
	{"trailing garbage", `{"cmd":"ping"}x`, false},
	{"two objects", `{"cmd":"ping"}{"cmd":"ping"}`, false},
	{"trailing comma", `{"cmd":"ping",}`, false},
	{"missing comma", `{"cmd":"ping" "id":"1"}`, false},
	{"missing colon", `{"cmd" "ping"}`, false},
	{"missing value", `{"cmd":}`, false},
	{"open", `{`, false},
	{"open value", `{"cmd":"ping"`, false},
	{"open string", `{"cmd":"ping`, false},
	{"open users", `{"users":["a"`, false},
	{"users trailing comma", `{"users":["a",]}`, false},
	{"single quotes", `{'cmd':'ping'}`, false},
	{"bom", "\xef\xbb\xbf{\"cmd\":\"ping\"}", false},
}

func TestDecodeClientFrameEdges(t *testing.T) {
	for _, c := range decodeFrameCases {
		t.Run(c.name, func(t *testing.T) {
			if _, fast := decodeFrameBoth(t, []byte(c.in)); fast != c.fast {
				t.Errorf("%q: fast path %v, want %v", c.in, fast, c.fast)
			}
		})
	}
}

// The errors are encoding/json's own: the gateway tells type errors from the others.
func TestDecodeClientFrameErrors(t *testing.T) {
	var f ClientFrame
	for _, in := range []string{`{"seq":"42"}`, `{"seq":-1}`, `{"limit":"x"}`, `{"cmd":1}`, `{"public":"yes"}`,
		`{"users":[1]}`} {
		err := DecodeClientFrame([]byte(in), &f)
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			t.Errorf("%s: %#v, want a *json.UnmarshalTypeError", in, err)
		}
	}
	for _, in := range []string{``, `{`, `{"cmd":"ping"}x`, `{"seq":01}`, `{"msg":"\x"}`} {
		err := DecodeClientFrame([]byte(in), &f)
		var se *json.SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: %#v, want a *json.SyntaxError", in, err)
		}
	}
	// A nil frame: encoding/json's error too.
	err := DecodeClientFrame([]byte(`{"cmd":"ping"}`), nil)
	var ie *json.InvalidUnmarshalError
	if !errors.As(err, &ie) {
		t.Errorf("nil frame: %#v", err)
	}
}

// The decoded strings are copies: reusing the input buffer does not change them.
func TestDecodeClientFrameCopies(t *testing.T) {
	data := []byte(`{"cmd":"create","id":"c1","conv":"g:team","name":"The \u003cteam\u003e","public":true,` +
		`"members":["alice","bob"],"users":["carol"],"msg":"hello","seq":3}`)
	var f ClientFrame
	if !decodeClientFrameFast(data, &f) {
		t.Fatal("fallback")
	}
	want := f
	want.Members = append([]string(nil), f.Members...)
	want.Users = append([]string(nil), f.Users...)
	name, msg := *f.Name, *f.Msg
	for i := range data {
		data[i] = 'x'
	}
	if !reflect.DeepEqual(f, want) || f.Conv != "g:team" || f.ID != "c1" || f.Members[1] != "bob" ||
		f.Users[0] != "carol" || *f.Name != name || name != "The <team>" || *f.Msg != msg || msg != "hello" {
		t.Fatalf("decoded frame changed with its input: %s", dumpFrame(f))
	}
}

// FuzzDecodeClientFrame compares DecodeClientFrame and its fast path with json.Unmarshal: whenever
// the fast path takes an input, encoding/json accepts it and gives the same value; DecodeClientFrame
// gives the same value and the same error as json.Unmarshal. It also checks that the fast path
// takes the canonical forms (json.Marshal, with and without HTML escaping) of every frame without
// limit, idle or remove.
func FuzzDecodeClientFrame(f *testing.F) {
	for _, data := range clientFixtures(f) {
		// Not the 16 KiB message: the fuzzer's minimization of what it finds from such an input
		// is quadratic in its length and holds up the workers for a minute.
		if len(data) > 1024 {
			continue
		}
		f.Add(data)
		var buf bytes.Buffer
		if err := json.Compact(&buf, data); err == nil {
			f.Add(buf.Bytes())
		}
	}
	for _, c := range decodeFrameCases {
		f.Add([]byte(c.in))
	}
	for _, in := range []string{
		`{"cmd":"message","id":"1","to":"bob","type":"text","msg":"hi <b>","mid":"m1"}`,
		`{"cmd":"message","id":"2","conv":"g:team","type":"text","msg":"a \u003cb\u003e \u0026 \"q\" \\ \n\t\u00e9","mid":"m2","tid":"carol"}`,
		`{"cmd":"create","id":"3","conv":"g:team","name":"R\u0026D","members":["bob","carol"],"public":true}`,
		`{"cmd":"sync","id":"6","after":1234}`,
		`{"cmd":"history","id":"7","conv":"g:team","before":100,"after":50,"limit":20}`,
		`{"cmd":"presence","id":"9","users":["bob","carol"]}`,
		`{"cmd":"react","id":"12","conv":"g:team","seq":42,"emoji":"👍","remove":true}`,
		`{"cmd":"edit","id":"10","conv":"g:team","seq":42,"msg":"fixed","mid":"e1"}`,
		`{"cmd":"activity","idle":false}`,
		`{"cmd":"contacts","remove":"bob"}`,
		`{"cmd":"message","msg":"\ud83d\udc4d \ud800 \u0000"}`,
		typicalMessageFrame,
	} {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, want, wantErr, _ := decodeFrameFast(t, data)
		var dec ClientFrame
		if err := DecodeClientFrame(data, &dec); !reflect.DeepEqual(err, wantErr) {
			t.Fatalf("DecodeClientFrame(%q): error %#v, want %#v", data, err, wantErr)
		}
		if !reflect.DeepEqual(dec, want) {
			t.Fatalf("DecodeClientFrame(%q):\n got %s\nwant %s", data, dumpFrame(dec), dumpFrame(want))
		}
		if wantErr != nil || want.Limit != nil || want.Idle != nil || want.Remove != nil {
			return
		}
		for _, html := range []bool{false, true} {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(html)
			if err := enc.Encode(want); err != nil {
				t.Fatal(err)
			}
			if _, _, _, fast := decodeFrameFast(t, buf.Bytes()); !fast {
				t.Fatalf("fast path refused the canonical %s", buf.Bytes())
			}
		}
	})
}

// typicalMessageFrame is an ordinary message as a browser sends it (JSON.stringify, 132 bytes).
const typicalMessageFrame = `{"cmd":"message","id":"17","conv":"g:engineering","type":"text",` +
	`"msg":"Still on for the review at 3pm? <b>yes</b>","mid":"Xk3f9QpL2mN8vR4tY7wZ1a"}`

// typicalEscapedFrame is the same message as json.Marshal writes it: < and > escaped.
const typicalEscapedFrame = `{"cmd":"message","id":"17","conv":"g:engineering","type":"text",` +
	`"msg":"Still on for the review at 3pm? \u003cb\u003eyes\u003c/b\u003e","mid":"Xk3f9QpL2mN8vR4tY7wZ1a"}`

func BenchmarkDecodeClientFrame(b *testing.B) {
	for _, in := range []struct{ name, data string }{
		{"plain", typicalMessageFrame},
		{"escaped", typicalEscapedFrame},
	} {
		data := []byte(in.data)
		b.Run(in.name+"/fast", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				var f ClientFrame
				if err := DecodeClientFrame(data, &f); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(in.name+"/encoding-json", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				var f ClientFrame
				if err := json.Unmarshal(data, &f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
