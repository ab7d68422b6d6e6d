package main

// The screenshot of the client for the docs: `CHAT_WRITE_SCREENSHOT=1 go test -run TestClientScreenshot
// ./cmd/chatd/` writes docs/img/client.png (desktop, 1280x800) and docs/img/client-phone.png;
// without the variable the test still builds the scene and checks the screenshots.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/eventchat/chat/schemas"
	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
)

func TestClientScreenshot(t *testing.T) {
	s := newBrowserSession(t)
	people := []struct{ user, name string }{
		{"alice", "Alice Liddell"}, {"bob", "Bob Ortiz"}, {"carol", "Carol Diaz"}, {"dan", "Dan Kim"},
	}
	// alice registers in the browser (so the page knows her display name); the others over HTTP.
	desk := s.newPage("alice-client", pageOptions{width: 1280, height: 800})
	desk.open("/")
	desk.register("alice", "Alice Liddell")
	ws := map[string]*client{}
	for _, p := range people {
		if p.user != "alice" {
			st, err := gt.HTTP("POST", s.url+"/v1/register", "", schemas.RegisterRequest{User: p.user, Password: password(p.user), Name: p.name}, nil)
			if err != nil || st != http.StatusCreated {
				s.fatalf("register %s: %d %v", p.user, st, err)
			}
		}
		ws[p.user] = connect(t, s.url, s.token(p.user))
	}
	n := 0
	say := func(from, conv, typ, msg string) uint64 {
		t.Helper()
		n++
		f := map[string]any{"cmd": "message", "type": typ, "msg": msg, "mid": fmt.Sprintf("shot%d", n)}
		if conv[0] == 'g' {
			f["conv"] = conv
		} else {
			f["to"] = conv
		}
		r := ws[from].do(f)
		if r.Cmd() != "ack" {
			s.fatalf("%v: %v", f, r)
		}
		return r.Seq()
	}
	do := func(from string, f map[string]any) {
		t.Helper()
		if r := ws[from].do(f); r.Cmd() == "error" {
			s.fatalf("%v: %v", f, r)
		}
	}

	// The scene, oldest first: dan and carol wrote earlier, the crew's group has news alice has not
	// read, and the conversation with bob is the one open.
	say("dan", "alice", "text", "Thanks for the photos!")
	read := say("alice", "dan", "text", "Any time!")
	do("alice", map[string]any{"cmd": "read", "conv": "dm:alice:dan", "seq": read})
	say("carol", "alice", "text", "Did you get the rope back from Sam?")
	do("carol", map[string]any{"cmd": "create", "conv": "g:climbing", "name": "Climbing crew", "members": []string{"alice", "bob", "dan"}})
	say("carol", "g:climbing", "text", "Who's driving on Saturday?")
	say("dan", "g:climbing", "text", "I can take four people")
	say("carol", "g:climbing", "text", "Perfect, leaving at 7 from the usual spot")
	say("bob", "alice", "text", "Morning! Are we still on for the climb on Saturday?")
	say("alice", "bob", "text", "Yes! The forecast looks perfect ☀️")
	id := uploadAttachment(s, s.token("bob"), "dm:alice:bob", "summit.png", "image/png", encodePNG(t, landscape(480, 300)))
	say("bob", "alice", "image", id)
	say("bob", "alice", "text", "The view from the top last time")
	wow := say("alice", "bob", "text", "Wow. I'm bringing the good camera this time")
	do("bob", map[string]any{"cmd": "react", "conv": "dm:alice:bob", "seq": wow, "emoji": "❤️"})
	say("bob", "alice", "text", "See you at 7 then, details in the crew chat: https://example.org/trip")
	// Presence: bob online, carol away, dan offline; alice herself only in the browser.
	do("carol", map[string]any{"cmd": "activity", "idle": true})
	ws["dan"].Close()
	ws["alice"].Close()

	shots := map[string][]byte{}
	phone := s.newPage("alice-client-phone", pageOptions{width: 390, height: 780})
	phone.open("/")
	phone.login("alice")
	for _, v := range []struct {
		name string
		p    *browserPage
		w, h int64
	}{{"client", desk, 1280, 800}, {"client-phone", phone, 390, 780}} {
		p := v.p
		p.open("/#/c/" + "dm:alice:bob")
		p.waitConnected()
		p.waitText("See you at 7 then, details in the crew chat: https://example.org/trip")
		p.waitFor("a clean scene", `
			document.querySelector('#messages [data-testid=attachment-image]')?.complete &&
			document.querySelector('#messages [data-testid=attachment-image]').naturalWidth === 480 &&
			document.querySelectorAll('#messages [data-testid=reaction]').length === 1 &&
			document.querySelector('`+convItem("dm:alice:bob")+` [data-testid=presence-dot]')?.dataset.status === 'online' &&
			document.querySelector('`+convItem("dm:alice:carol")+` [data-testid=presence-dot]')?.dataset.status === 'away' &&
			document.querySelector('`+convItem("dm:alice:dan")+` [data-testid=presence-dot]')?.dataset.status === 'offline' &&
			document.querySelector('`+convItem("g:climbing")+` [data-testid=unread-badge]')?.textContent === '3' &&
			document.querySelector('`+convItem("dm:alice:carol")+` [data-testid=unread-badge]')?.textContent === '1' &&
			!document.querySelector('`+convItem("dm:alice:dan")+` [data-testid=unread-badge]') &&
			document.querySelector('[data-testid=chat-sub]').textContent.endsWith('online') &&
			!document.querySelector('#messages [data-pending], #messages .loading') &&
			!document.querySelector('[data-testid=notice]')`)
		// The image's bubble fits the image (no blank band beside a scaled-down picture).
		var gap float64
		p.eval(`(() => { const i = document.querySelector('#messages [data-testid=attachment-image]');
			return i.closest('.bubble').getBoundingClientRect().width - i.getBoundingClientRect().width; })()`, &gap)
		if gap > 40 {
			s.fatalf("%s: the image's bubble is %.0fpx wider than the image", v.name, gap)
		}
		var png []byte
		p.run("screenshot",
			chromedp.Evaluate(`(() => { document.activeElement?.blur(); const m = document.getElementById('messages'); m.scrollTop = m.scrollHeight; })()`, nil),
			chromedp.MouseEvent(input.MouseMoved, float64(v.w)-2, 2), // no hover on anything
			chromedp.CaptureScreenshot(&png))
		checkScreenshot(s, v.name, png, int(v.w), int(v.h))
		shots[v.name] = png
	}
	if os.Getenv("CHAT_WRITE_SCREENSHOT") == "1" {
		dir := filepath.Join("..", "..", "docs", "img")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, png := range shots {
			file := filepath.Join(dir, name+".png")
			if err := os.WriteFile(file, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s (%d bytes)", file, len(png))
		}
	}
}

// checkScreenshot: a PNG of the viewport's size with a real picture in it (not one flat colour).
func checkScreenshot(s *browserSession, name string, data []byte, w, h int) {
	s.t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		s.fatalf("screenshot %s: %v", name, err)
	}
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		s.fatalf("screenshot %s is %v, want %dx%d", name, b, w, h)
	}
	colours := map[color.RGBA]bool{}
	for y := 0; y < h; y += 7 {
		for x := 0; x < w; x += 7 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 255}] = true
		}
	}
	if len(colours) < 50 {
		s.fatalf("screenshot %s has only %d colours: an empty page?", name, len(colours))
	}
}

// uploadAttachment does what the client does: POST /v1/attachments?conv=&name= with the bytes.
func uploadAttachment(s *browserSession, token, conv, name, ct string, data []byte) string {
	s.t.Helper()
	q := url.Values{"conv": {conv}, "name": {name}}
	req, err := http.NewRequest("POST", s.url+"/v1/attachments?"+q.Encode(), bytes.NewReader(data))
	if err != nil {
		s.fatalf("%v", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", ct)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.fatalf("upload: %v", err)
	}
	defer resp.Body.Close()
	var r struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusCreated || r.ID == "" {
		s.fatalf("upload: %s %v %+v", resp.Status, err, r)
	}
	return r.ID
}

func encodePNG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// landscape draws a picture for the screenshot: a sky, a sun and two mountain ridges with snow.
func landscape(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	mix := func(a, b [3]float64, t float64) color.RGBA {
		t = math.Max(0, math.Min(1, t))
		return color.RGBA{uint8(a[0] + (b[0]-a[0])*t), uint8(a[1] + (b[1]-a[1])*t), uint8(a[2] + (b[2]-a[2])*t), 255}
	}
	far := func(x float64) float64 { return 0.42*float64(h) + 40*math.Sin(x/53) + 25*math.Sin(x/17+1) }
	near := func(x float64) float64 { return 0.62*float64(h) + 55*math.Sin(x/71+2) + 12*math.Sin(x/11) }
	peak := 0.42*float64(h) - 65
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			fx, fy := float64(x), float64(y)
			c := mix([3]float64{70, 130, 210}, [3]float64{250, 205, 160}, fy/(0.7*float64(h)))
			if d := math.Hypot(fx-0.75*float64(w), fy-0.3*float64(h)); d < 28 {
				c = color.RGBA{255, 236, 170, 255}
			}
			if fy > far(fx) {
				c = mix([3]float64{95, 110, 150}, [3]float64{60, 70, 105}, (fy-far(fx))/120)
				if fy < far(fx)+14 && far(fx) < peak+30 {
					c = color.RGBA{240, 244, 250, 255}
				}
			}
			if fy > near(fx) {
				c = mix([3]float64{55, 95, 70}, [3]float64{30, 55, 40}, (fy-near(fx))/90)
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}
