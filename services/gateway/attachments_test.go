package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/gateway"
	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
	"github.com/nats-io/nats.go/jetstream"
)

func pngBytes(t *testing.T, size int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	for i := 0; i < size; i++ {
		img.Set(i, i, color.RGBA{R: uint8(i), G: 100, B: 200, A: 255})
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func jpegBytes(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, image.NewRGBA(image.Rect(0, 0, 4, 4)), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type uploadAns struct {
	status      int
	ID          string `json:"id"`
	ContentType string `json:"contentType"`
	Size        int64  `json:"size"`
	Name        string `json:"name"`
	ErrCode     string `json:"errCode"`
	ErrMsg      string `json:"errMsg"`
}

// upload posts data as an attachment of conv; chunked sends it without a Content-Length.
func upload(t *testing.T, base, token, conv, name, ctype string, data []byte, chunked bool) uploadAns {
	t.Helper()
	q := url.Values{"conv": {conv}, "name": {name}}
	var body io.Reader = bytes.NewReader(data)
	if chunked {
		body = io.MultiReader(bytes.NewReader(data)) // a reader of unknown length
	}
	req, err := http.NewRequest("POST", base+"/v1/attachments?"+q.Encode(), body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := uploadAns{status: resp.StatusCode}
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("upload answer %d %q: %v", resp.StatusCode, raw, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("upload answer Content-Type %q", ct)
	}
	return a
}

func mustUpload(t *testing.T, base, token, conv, name, ctype string, data []byte) uploadAns {
	t.Helper()
	a := upload(t, base, token, conv, name, ctype, data, false)
	if a.status != http.StatusCreated || !schemas.ValidAttachmentID(a.ID) {
		t.Fatalf("upload to %s: %d %s %s (id %q)", conv, a.status, a.ErrCode, a.ErrMsg, a.ID)
	}
	return a
}

// download GETs (or HEADs) an attachment.
func download(t *testing.T, method, base, token, id string) (int, http.Header, []byte) {
	t.Helper()
	return httpRaw(t, method, base+"/v1/attachments/"+id, token, nil, nil)
}

func attachmentStore(t *testing.T, e *env) jetstream.ObjectStore {
	t.Helper()
	js, err := jetstream.New(e.natsConn())
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(context.Background(), schemas.AttachmentsBucket)
	if err != nil {
		t.Fatal(err)
	}
	return obs
}

func TestAttachmentRoundTrip(t *testing.T) {
	e := newEnv(t, 1, nil)
	base := e.gws[0].URL
	ann, ben := e.user("ann", 0), e.user("ben", 0)
	c := dm("ann", "ben")
	data := pngBytes(t, 64)
	sum := sha256.Sum256(data)
	a := mustUpload(t, base, ann.token, c, "../holiday\x01 photo.png", "image/png", data)
	if a.ContentType != "image/png" || a.Size != int64(len(data)) || a.Name != "holiday photo.png" {
		t.Fatalf("upload answer %+v", a)
	}
	// The other member downloads the same bytes.
	st, hdr, body := download(t, "GET", base, ben.token, a.ID)
	if st != 200 || sha256.Sum256(body) != sum {
		t.Fatalf("download: %d, %d bytes (sha256 differs: %v)", st, len(body), sha256.Sum256(body) != sum)
	}
	want := map[string]string{
		"Content-Type":           "image/png",
		"Content-Length":         fmt.Sprint(len(data)),
		"Content-Disposition":    "inline; filename*=UTF-8''holiday%20photo.png",
		"X-Content-Type-Options": "nosniff",
		"Cache-Control":          "private, max-age=86400",
	}
	for k, v := range want {
		if hdr.Get(k) != v {
			t.Errorf("%s: %q, want %q", k, hdr.Get(k), v)
		}
	}
	// HEAD: the same headers, no body.
	st, hdr2, body := download(t, "HEAD", base, ben.token, a.ID)
	if st != 200 || len(body) != 0 || hdr2.Get("Content-Length") != fmt.Sprint(len(data)) || hdr2.Get("Content-Type") != "image/png" {
		t.Fatalf("HEAD: %d %v %d bytes", st, hdr2, len(body))
	}
	// Stored with its description.
	info, err := attachmentStore(t, e).GetInfo(context.Background(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"conv": c, "uploader": "ann", "contentType": "image/png",
		"size": fmt.Sprint(len(data)), "name": "holiday photo.png", "sha256": hex.EncodeToString(sum[:])} {
		if info.Metadata[k] != v {
			t.Errorf("metadata %s: %q, want %q", k, info.Metadata[k], v)
		}
	}
	// A file that is not an image downloads as an attachment, its name escaped.
	pdf := []byte("%PDF-1.4\n% a tiny test file\n")
	f := mustUpload(t, base, ben.token, c, "résumé; 1.pdf", "application/pdf", pdf)
	st, hdr, body = download(t, "GET", base, ann.token, f.ID)
	if st != 200 || !bytes.Equal(body, pdf) || hdr.Get("Content-Disposition") != "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9%3B%201.pdf" {
		t.Fatalf("pdf: %d %q %q", st, body, hdr.Get("Content-Disposition"))
	}
	// A message refers to it; the other member gets it.
	ack := ann.msg(map[string]any{"conv": c, "type": "image"}, a.ID, "i1")
	got := event(t, ben.c, func(f gt.Frame) bool { return f.Str("mid") == "i1" })
	if got.Str("msg") != a.ID || got.Str("type") != "image" || got.Seq() != ack.Seq() {
		t.Fatalf("image message: %v", got)
	}
	ann.msg(map[string]any{"conv": c, "type": "file"}, a.ID, "f1") // any attachment is a file
	ben.msg(map[string]any{"to": "ann", "type": "file"}, f.ID, "f2")
	// Long names are cut to 255 bytes, the extension kept.
	long := mustUpload(t, base, ann.token, c, strings.Repeat("é", 200)+".txt", "text/plain; charset=utf-8", []byte("hello"))
	if len(long.Name) > 255 || !strings.HasSuffix(long.Name, ".txt") || long.ContentType != "text/plain" {
		t.Fatalf("long name: %d bytes %q, type %q", len(long.Name), long.Name, long.ContentType)
	}
	for name, labels := range map[string]map[string]string{
		"chat_gateway_attachment_uploads_total":        {"result": "ok"},
		"chat_gateway_attachment_upload_bytes_total":   nil,
		"chat_gateway_attachment_downloads_total":      nil,
		"chat_gateway_attachment_download_bytes_total": nil,
	} {
		if v := metricValue(t, e.gws[0], name, labels); v < 1 {
			t.Errorf("metric %s%v = %v", name, labels, v)
		}
	}
	// No Content-Type: application/octet-stream.
	if o := mustUpload(t, base, ann.token, c, "", "", []byte{0, 1, 2}); o.ContentType != "application/octet-stream" || o.Name != "file" {
		t.Fatalf("untyped: %+v", o)
	}
}

func TestAttachmentOnlyForMembers(t *testing.T) {
	e := newEnv(t, 1, nil)
	base := e.gws[0].URL
	ann, ben, cat := e.user("ann", 0), e.user("ben", 0), e.user("cat", 0)
	ann.ok(map[string]any{"cmd": "create", "conv": "g:team", "members": []string{"ben"}})
	data := pngBytes(t, 8)
	a := mustUpload(t, base, ann.token, "g:team", "x.png", "image/png", data)
	d := mustUpload(t, base, ann.token, dm("ann", "ben"), "y.png", "image/png", data)
	refused := func(name string, got uploadAns, status int, code string) {
		t.Helper()
		if got.status != status || got.ErrCode != code {
			t.Fatalf("%s: %d %s %s, want %d %s", name, got.status, got.ErrCode, got.ErrMsg, status, code)
		}
	}
	refused("non-member upload to a group", upload(t, base, cat.token, "g:team", "x.png", "image/png", data, false), 403, "forbidden")
	refused("upload to a group that does not exist", upload(t, base, cat.token, "g:nope", "x.png", "image/png", data, false), 403, "forbidden")
	refused("upload to others' conversation", upload(t, base, cat.token, dm("ann", "ben"), "x.png", "image/png", data, false), 403, "forbidden")
	refused("upload to a user who does not exist", upload(t, base, cat.token, dm("cat", "nobody"), "x.png", "image/png", data, false), 404, "not_found")
	refused("no token", upload(t, base, "", "g:team", "x.png", "image/png", data, false), 401, "unauthorized")
	refused("bad conv", upload(t, base, ann.token, "team", "x.png", "image/png", data, false), 400, "bad_request")
	for _, id := range []string{a.ID, d.ID} {
		for _, m := range []string{"GET", "HEAD"} {
			if st, _, body := download(t, m, base, cat.token, id); st != 403 || (m == "GET" && !strings.Contains(string(body), `"forbidden"`)) {
				t.Fatalf("%s by a non-member: %d %s", m, st, body)
			}
		}
	}
	if st, _, body := download(t, "GET", base, ben.token, a.ID); st != 200 || !bytes.Equal(body, data) {
		t.Fatalf("member: %d", st)
	}
	if st, _, _ := download(t, "GET", base, "", a.ID); st != 401 {
		t.Fatalf("no token: %d", st)
	}
	if st, _, _ := download(t, "GET", base, ben.token, "a"+strings.Repeat("Z", 22)); st != 404 {
		t.Fatalf("unknown id: %d", st)
	}
	for _, bad := range []string{"x", "a" + strings.Repeat("Z", 21) + ".", "..%2Fsecret", "b" + strings.Repeat("Z", 22)} {
		if st, _, _ := download(t, "GET", base, ben.token, bad); st != 400 {
			t.Fatalf("malformed id %q: %d", bad, st)
		}
	}
	// Who leaves the group loses its attachments; who joins later gets them.
	ben.ok(map[string]any{"cmd": "leave", "conv": "g:team"})
	if st, _, _ := download(t, "GET", base, ben.token, a.ID); st != 403 {
		t.Fatalf("after leaving: %d", st)
	}
	ann.ok(map[string]any{"cmd": "invite", "conv": "g:team", "user": "cat"})
	if st, _, body := download(t, "GET", base, cat.token, a.ID); st != 200 || !bytes.Equal(body, data) {
		t.Fatalf("after joining: %d", st)
	}
}

func TestAttachmentSizeAndTypeChecks(t *testing.T) {
	e := newEnv(t, 1, func(c *gateway.Config) { c.AttachmentMaxBytes = 4096 })
	base := e.gws[0].URL
	ann, _ := e.user("ann", 0), e.user("ben", 0)
	c := dm("ann", "ben")
	refused := func(name string, got uploadAns, status int, code, msgPart string) {
		t.Helper()
		if got.status != status || got.ErrCode != code || !strings.Contains(got.ErrMsg, msgPart) {
			t.Fatalf("%s: %d %s %q, want %d %s with %q", name, got.status, got.ErrCode, got.ErrMsg, status, code, msgPart)
		}
	}
	big := bytes.Repeat([]byte("x"), 5000)
	refused("too large", upload(t, base, ann.token, c, "big.txt", "text/plain", big, false), 413, "too_large", "larger")
	refused("too large, chunked", upload(t, base, ann.token, c, "big.txt", "text/plain", big, true), 413, "too_large", "larger")
	mustUpload(t, base, ann.token, c, "limit.txt", "text/plain", big[:4096])
	if a := upload(t, base, ann.token, c, "limit.txt", "text/plain", big[:4096], true); a.status != 201 {
		t.Fatalf("chunked at the limit: %d %s", a.status, a.ErrMsg)
	}
	refused("type not accepted", upload(t, base, ann.token, c, "x.exe", "application/x-msdownload", []byte("MZ"), false), 415, "bad_request", "not accepted")
	refused("svg", upload(t, base, ann.token, c, "x.svg", "image/svg+xml", []byte("<svg/>"), false), 415, "bad_request", "not accepted")
	refused("text as png", upload(t, base, ann.token, c, "x.png", "image/png", []byte("<script>alert(1)</script>"), false), 415, "bad_request", "not an image of type image/png")
	refused("png as jpeg", upload(t, base, ann.token, c, "x.jpg", "image/jpeg", pngBytes(t, 4), false), 415, "bad_request", "image/png")
	refused("bad content type", upload(t, base, ann.token, c, "x", "image/", []byte("x"), false), 415, "bad_request", "Content-Type")
	refused("empty", upload(t, base, ann.token, c, "x.txt", "text/plain", nil, false), 400, "bad_request", "empty")
	j := mustUpload(t, base, ann.token, c, "x.jpg", "image/jpeg", jpegBytes(t))
	if j.ContentType != "image/jpeg" {
		t.Fatalf("jpeg: %+v", j)
	}
	// Nothing of the refused uploads stayed in the store: the two at the limit and the jpeg.
	objs, err := attachmentStore(t, e).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 {
		var names []string
		for _, o := range objs {
			names = append(names, o.Name+" "+o.Metadata["name"])
		}
		t.Fatalf("objects stored: %v", names)
	}
}

func TestAttachmentTypesAreConfigurable(t *testing.T) {
	e := newEnv(t, 1, func(c *gateway.Config) { c.AttachmentTypes = []string{"image/png", "text/csv"} })
	base := e.gws[0].URL
	ann, _ := e.user("ann", 0), e.user("ben", 0)
	c := dm("ann", "ben")
	mustUpload(t, base, ann.token, c, "a.csv", "text/csv", []byte("a,b\n"))
	if a := upload(t, base, ann.token, c, "a.pdf", "application/pdf", []byte("%PDF-1.4"), false); a.status != 415 {
		t.Fatalf("pdf with types png,csv: %d", a.status)
	}
	cfg := gateway.Defaults()
	cfg.AttachmentTypes = []string{"image/png; q=1"}
	if _, err := gateway.New(cfg, gateway.Deps{}); err == nil || !strings.Contains(err.Error(), "attachment-types") {
		t.Fatalf("a type with parameters: %v", err)
	}
}

// Messages refer to attachments of their own conversation, of a type that fits.
func TestAttachmentMessageRules(t *testing.T) {
	e := newEnv(t, 1, nil)
	base := e.gws[0].URL
	ann, ben := e.user("ann", 0), e.user("ben", 0)
	ann.ok(map[string]any{"cmd": "create", "conv": "g:team", "members": []string{"ben"}})
	img := mustUpload(t, base, ann.token, dm("ann", "ben"), "x.png", "image/png", pngBytes(t, 4))
	pdf := mustUpload(t, base, ann.token, dm("ann", "ben"), "x.pdf", "application/pdf", []byte("%PDF-1.4"))
	teamImg := mustUpload(t, base, ben.token, "g:team", "t.png", "image/png", pngBytes(t, 4))
	send := func(target map[string]any, typ, msg, mid string) gt.Frame {
		f := map[string]any{"cmd": "message", "type": typ, "msg": msg, "mid": mid}
		for k, v := range target {
			f[k] = v
		}
		return ann.do(f)
	}
	bad := func(name string, r gt.Frame, part string) {
		t.Helper()
		if r["cmd"] != "error" || r["errCode"] != "bad_request" || !strings.Contains(fmt.Sprint(r["errMsg"]), part) {
			t.Fatalf("%s: %v", name, r)
		}
	}
	bad("another conversation's attachment", send(conv("g:team"), "image", img.ID, "b1"), "another conversation")
	bad("by to", send(to("ben"), "image", teamImg.ID, "b2"), "another conversation")
	bad("a pdf as image", send(to("ben"), "image", pdf.ID, "b3"), "image/*")
	bad("an image as audio", send(to("ben"), "audio", img.ID, "b4"), "audio/*")
	bad("unknown attachment", send(to("ben"), "image", "a"+strings.Repeat("Q", 22), "b5"), "no such attachment")
	bad("neither id nor URL", send(to("ben"), "image", "cat.png", "b6"), "attachment id or an http(s) URL")
	bad("javascript URL", send(to("ben"), "file", "javascript:alert(1)", "b7"), "http(s) URL")
	// URLs stay allowed; text is text, whatever it looks like.
	for i, r := range []gt.Frame{
		send(to("ben"), "image", "https://example.com/cat.png", "u1"),
		send(to("ben"), "audio", "http://example.com/a.mp3", "u2"),
		send(to("ben"), "text", teamImg.ID, "u3"),
		send(conv("g:team"), "image", teamImg.ID, "u4"),
	} {
		if r["cmd"] != "ack" {
			t.Fatalf("%d: %v", i, r)
		}
	}
	// An edit of an image message follows the same rule; a text message's edit is free text.
	ack := ann.msg(map[string]any{"to": "ben", "type": "image"}, img.ID, "e1")
	r := ann.do(map[string]any{"cmd": "edit", "conv": dm("ann", "ben"), "seq": ack.Seq(), "msg": teamImg.ID})
	bad("edit to another conversation's attachment", r, "another conversation")
	img2 := mustUpload(t, base, ann.token, dm("ann", "ben"), "y.png", "image/png", pngBytes(t, 5))
	if r := ann.do(map[string]any{"cmd": "edit", "conv": dm("ann", "ben"), "seq": ack.Seq(), "msg": img2.ID}); r.Cmd() != "ack" {
		t.Fatalf("edit to another image: %v", r)
	}
}
