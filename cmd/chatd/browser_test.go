package main

// End-to-end tests of the web client in a real headless Chromium, against the all-in-one: every
// step goes through the page as a user would (the login form, the composer, the attach input),
// and every check reads what the page shows (data-testid attributes) or window.chatDebug.
// The harness is in browser_harness_test.go; these tests fail, never skip, without Chromium.

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Two users in two browser contexts: both register through the UI, one opens a direct
// conversation and they chat both ways. The receiver's list shows the conversation with the
// sender's name, the preview, an unread badge (cleared once read) and a presence dot that follows
// the sender offline and back online. The receiver uses a phone-sized screen.
func TestBrowserTwoUsersChat(t *testing.T) {
	s := newBrowserSession(t)
	const conv = "dm:alice:bob"
	item := convItem(conv)
	bob := s.newPage("bob", pageOptions{width: 390, height: 780})
	alice := s.newPage("alice", pageOptions{})
	bob.open("/")
	bob.register("bob", "Bob Ortiz")
	alice.open("/")
	alice.register("alice", "Alice Liddell")
	for _, p := range []*browserPage{alice, bob} {
		if kind, shown := p.transport(); kind != "ws" || shown != "ws" {
			s.fatalf("%s: transport %q shown as %q, want ws", p.name, kind, shown)
		}
	}

	alice.openDM(conv, "bob")
	alice.typeAndSend("Hello Bob!")
	alice.waitText("Hello Bob!")

	bob.waitFor("the conversation in bob's list with 1 unread", `document.querySelector('`+item+` [data-testid=unread-badge]')?.textContent === '1'`)
	bob.waitFor("the preview of alice's message", `document.querySelector('`+item+` .conv-preview')?.textContent === 'Hello Bob!'`)
	bob.waitFor("the conversation named after alice", `document.querySelector('`+item+` .conv-name')?.textContent === 'Alice Liddell'`)
	bob.waitFor("alice's presence dot online", `document.querySelector('`+item+` [data-testid=presence-dot]')?.dataset.status === 'online'`)
	bob.waitFor("the unread count in the title", `document.title.startsWith('(1)')`)

	bob.openConv(conv)
	bob.waitText("Hello Bob!")
	bob.waitFor("alice's message shown as hers", `document.querySelector('#messages [data-testid=message][data-from=alice]')?.classList.contains('other')`)
	bob.waitFor("the unread badge cleared once read", `!document.querySelector('`+item+` [data-testid=unread-badge]') && !document.title.startsWith('(')`)

	bob.typeAndSend("Hi Alice, good to hear from you")
	bob.waitText("Hi Alice, good to hear from you")
	alice.waitText("Hi Alice, good to hear from you")
	alice.waitFor("bob online in alice's list", `document.querySelector('`+item+` [data-testid=presence-dot]')?.dataset.status === 'online'`)
	alice.waitFor("bob online in the chat header", `document.querySelector('[data-testid=chat-sub]').textContent.endsWith('online')`)
	alice.waitFor("bob's reply in alice's list preview", `document.querySelector('`+item+` .conv-preview')?.textContent === 'Hi Alice, good to hear from you'`)

	want := []string{"Hello Bob!", "Hi Alice, good to hear from you"}
	for _, p := range []*browserPage{alice, bob} {
		if got := p.texts(); !reflect.DeepEqual(got, want) {
			s.fatalf("%s shows %q, want %q", p.name, got, want)
		}
	}

	// Alice goes to another page: her dot goes offline for bob (even if the browser keeps her page
	// in its back/forward cache); she comes back with Back, finds what bob wrote meanwhile, and
	// is online again. Then once more with a fresh load of the conversation's address.
	for round, back := range []string{"Back", "a fresh load"} {
		alice.run("leave the page", chromedp.Navigate("about:blank"))
		bob.waitFor("alice's presence dot offline", `document.querySelector('`+item+` [data-testid=presence-dot]')?.dataset.status === 'offline'`)
		msg := fmt.Sprintf("Are you still there? (%d)", round+1)
		bob.typeAndSend(msg)
		bob.waitText(msg)
		if back == "Back" {
			// Not chromedp.NavigateBack: it waits for a load event, and a page restored from the
			// back/forward cache has none.
			alice.run("go back", chromedp.Evaluate(`history.back()`, nil))
		} else {
			alice.open("/#/c/" + conv)
		}
		alice.waitConnected()
		alice.waitText(msg)
		bob.waitFor("alice's presence dot online again after "+back, `document.querySelector('`+item+` [data-testid=presence-dot]')?.dataset.status === 'online'`)
		reply := fmt.Sprintf("Back again (%d)", round+1)
		alice.typeAndSend(reply)
		bob.waitText(reply)
	}
}

// Clients without a WebSocket chat over long-poll with a WebSocket user, both ways: one page
// where the browser has no WebSocket at all (deleted before the page's scripts run) and one that
// asks for long-poll with ?transport=poll.
func TestBrowserLongPoll(t *testing.T) {
	s := newBrowserSession(t)
	carol := s.newPage("carol-ws", pageOptions{})
	dave := s.newPage("dave-no-websocket", pageOptions{noWebSocket: true, width: 800, height: 700})
	erin := s.newPage("erin-transport-poll", pageOptions{width: 800, height: 700})
	sockets := map[*browserPage]*int{}
	for _, p := range []*browserPage{carol, dave, erin} {
		n := new(int)
		sockets[p] = n
		p.setListener(func(ev any) {
			if _, ok := ev.(*network.EventWebSocketCreated); ok {
				*n++ // under the page's lock
			}
		})
	}
	carol.open("/")
	carol.register("carol", "Carol")
	dave.open("/")
	dave.register("dave", "Dave")
	erin.open("/?transport=poll")
	erin.register("erin", "Erin")

	var hasWS bool
	dave.eval(`typeof window.WebSocket !== 'undefined'`, &hasWS)
	if hasWS {
		s.fatalf("dave's page still has a WebSocket")
	}
	for p, want := range map[*browserPage]string{carol: "ws", dave: "poll", erin: "poll"} {
		if kind, shown := p.transport(); kind != want || shown != want {
			s.fatalf("%s: chatDebug.transport() %q, shown %q; want %q", p.name, kind, shown, want)
		}
	}

	// Every message arrives well within the server's 25 s poll wait: a poll held with frames in
	// its queue (after a typing frame, which has no reply) would show here.
	const soon = 15 * time.Second
	for _, p := range []*browserPage{dave, erin} {
		user := strings.SplitN(p.name, "-", 2)[0]
		conv := "dm:carol:" + user
		p.openDM(conv, "carol")
		toCarol := "Hi Carol, " + user + " here, over long-poll"
		p.typeAndSend(toCarol)
		p.waitTextWithin(soon, toCarol)
		carol.waitFor("the conversation with "+user+" in carol's list", `document.querySelector('`+convItem(conv)+`')`)
		carol.openConv(conv)
		carol.waitTextWithin(soon, toCarol)
		fromCarol := "Hello " + user + ", this is WebSocket speaking"
		carol.typeAndSend(fromCarol)
		p.waitTextWithin(soon, fromCarol)
		// And more each way, now that both sides have the conversation open (the typing
		// indicator goes out with each).
		for i := 1; i <= 2; i++ {
			m := fmt.Sprintf("Got it (%d)", i)
			p.typeAndSend(m)
			carol.waitTextWithin(soon, m)
			m = fmt.Sprintf("Bye %s (%d)", user, i)
			carol.typeAndSend(m)
			p.waitTextWithin(soon, m)
		}
		if kind, _ := p.transport(); kind != "poll" {
			s.fatalf("%s switched to %q", p.name, kind)
		}
	}

	// The poll pages talked over POST /v1/poll and never opened a WebSocket; carol the reverse.
	polled := `performance.getEntriesByType('resource').some(e => new URL(e.name).pathname === '/v1/poll')`
	for p, wantPoll := range map[*browserPage]bool{carol: false, dave: true, erin: true} {
		var got bool
		p.eval(polled, &got)
		p.mu.Lock()
		n := *sockets[p]
		p.mu.Unlock()
		if got != wantPoll || (n > 0) == wantPoll {
			s.fatalf("%s: polled %v and opened %d WebSockets", p.name, got, n)
		}
	}
}

// An image uploaded through the attach input is shown inline to the other user: a blob: URL of
// the downloaded bytes, decoded with the size and colours of the file that was sent.
func TestBrowserImageUpload(t *testing.T) {
	s := newBrowserSession(t)
	const conv = "dm:alice:bob"
	alice, bob := aliceAndBob(s, conv)
	alice.typeAndSend("A picture for you")
	alice.waitText("A picture for you")

	img, file := quadrantPNG(t, 96, 64)
	alice.run("attach the image", chromedp.SetUploadFiles(tid("attach-input"), []string{file}, chromedp.ByQuery))
	loaded := `[...document.querySelectorAll('#messages [data-seq] [data-testid=attachment-image]')].some(i =>
		i.src.startsWith('blob:') && i.complete && i.naturalWidth === 96 && i.naturalHeight === 64)`
	alice.waitFor("alice's own image, stored and shown", loaded)

	bob.waitFor("the photo preview in bob's list", `document.querySelector('`+convItem(conv)+` .conv-preview')?.textContent === '📷 Photo'`)
	bob.openConv(conv)
	bob.waitFor("the image shown to bob", loaded)

	// The pixels are the file's: draw the image and read a point in each quadrant.
	var px [][]int
	bob.eval(`(() => {
		const i = [...document.querySelectorAll('#messages [data-testid=attachment-image]')].find(i => i.naturalWidth === 96);
		const c = document.createElement('canvas');
		c.width = i.naturalWidth; c.height = i.naturalHeight;
		const g = c.getContext('2d');
		g.drawImage(i, 0, 0);
		return [[10, 10], [80, 10], [10, 50], [80, 50]].map(([x, y]) => Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3)));
	})()`, &px)
	for k, pt := range [][2]int{{10, 10}, {80, 10}, {10, 50}, {80, 50}} {
		want := img.RGBAAt(pt[0], pt[1])
		if len(px) != 4 || !near(px[k], want) {
			s.fatalf("pixel %v shown to bob: %v, want %v", pt, px, want)
		}
	}

	// The message is an image message on the server too, and the attachment id is the one shown.
	var shown string
	bob.eval(`document.querySelector('#messages [data-testid=attachment-image]').dataset.att`, &shown)
	var found bool
	for _, f := range s.history("bob", conv) {
		if f.Str("type") == "image" && f.Str("msg") == shown && f.Str("from") == "alice" {
			found = true
		}
	}
	if !found {
		s.fatalf("no image message with attachment %q in the history", shown)
	}
}

// A message that looks like HTML is shown as text: the receiver's page (with the page's CSP
// bypassed, so that an injected handler would run) shows the literal string, has no extra
// element, never requests the injected image and never opens a dialog; the sender's page (CSP in
// force) reports no blocked inline script. The sender's display name carries markup too.
func TestBrowserMessageShownAsText(t *testing.T) {
	s := newBrowserSession(t)
	const conv = "dm:alice:bob"
	const name = `<i>Al</i><img src=y onerror=alert(2)>`
	payloads := []string{`<img src=x onerror=alert(1)>`, `<script>alert(3)</script><b>bold</b> & "quotes"`}
	alice := s.newPage("alice", pageOptions{})
	bob := s.newPage("bob", pageOptions{bypassCSP: true})
	var requested []string
	bob.setListener(func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			requested = append(requested, e.Request.URL) // under the page's lock
		}
	})
	bob.open("/")
	bob.register("bob", "Bob")
	alice.open("/")
	alice.register("alice", name)
	alice.openDM(conv, "bob")
	for _, m := range payloads {
		alice.typeAndSend(m)
		alice.waitText(m)
	}

	item := convItem(conv)
	bob.waitFor("the conversation named with the literal name", `document.querySelector('`+item+` .conv-name')?.textContent === `+jsString(name))
	bob.waitFor("the literal preview", `document.querySelector('`+item+` .conv-preview')?.textContent === `+jsString(payloads[1]))
	bob.openConv(conv)
	for _, m := range payloads {
		bob.waitText(m)
	}
	bob.waitFor("the literal name in the chat header", `document.querySelector('[data-testid=chat-title]').textContent === `+jsString(name))

	// Each message text is one text node whose markup is the escaped string.
	var html []string
	bob.eval(`[...document.querySelectorAll('#messages [data-testid=message-text]')].map(e =>
		e.childNodes.length === 1 && e.firstChild.nodeType === Node.TEXT_NODE ? e.innerHTML : 'not one text node: ' + e.innerHTML)`, &html)
	esc := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	var want []string
	for _, m := range payloads {
		want = append(want, esc.Replace(m))
	}
	if !reflect.DeepEqual(html, want) {
		s.fatalf("bob's message markup %q, want %q", html, want)
	}
	injected := `['#messages', '#conv-list', '.chat-head'].map(r => document.querySelector(r).querySelectorAll('img, script, b, i, svg:not(.icon)').length).reduce((a, b) => a + b)`
	for _, p := range []*browserPage{alice, bob} {
		var n int
		p.eval(injected, &n)
		if n != 0 {
			s.fatalf("%s's page has %d elements that came from message or name markup", p.name, n)
		}
	}

	// A round trip later (any image would have loaded or failed by now): no request for the
	// injected images' URLs, no dialog, and no inline script that CSP had to block.
	bob.typeAndSend("All text, no tricks")
	alice.waitText("All text, no tricks")
	bob.mu.Lock()
	urls := append([]string(nil), requested...)
	bob.mu.Unlock()
	for _, u := range urls {
		if strings.HasSuffix(u, "/x") || strings.HasSuffix(u, "/y") {
			s.fatalf("bob's page requested %s: markup from a message became an element", u)
		}
	}
	for _, p := range []*browserPage{alice, bob} {
		if n := p.dialogCount(); n > 0 {
			s.fatalf("%s's page opened %d JavaScript dialogs", p.name, n)
		}
		if l := p.consoleMatching("Content Security Policy"); len(l) > 0 {
			s.fatalf("%s's page had CSP violations (markup became script):\n%s", p.name, strings.Join(l, "\n"))
		}
	}
}

// A reload resumes the conversation without losing or repeating a message: bob sends a message
// and reloads at once, and his reload is held (the app's script does not load) while alice sends
// messages; later he switches to long-poll by navigation while alice keeps writing. Each time the
// rendered seqs equal the server's history exactly, in order.
func TestBrowserReloadResumes(t *testing.T) {
	s := newBrowserSession(t)
	const conv = "dm:alice:bob"
	alice, bob := aliceAndBob(s, conv)
	for i := 1; i <= 3; i++ {
		alice.send(fmt.Sprintf("before the reload %d", i))
	}
	bob.waitFor("the conversation in bob's list", `document.querySelector('`+convItem(conv)+`')`)
	bob.openConv(conv)
	bob.waitText("before the reload 3")
	bob.send("bob is here")
	alice.waitText("bob is here")
	sameAsServer(s, bob, "bob", conv)

	// Round 1: hold bob's reload at the app's script, so that nothing of the old page runs and
	// nothing of the new one yet, and have alice write meanwhile.
	paused := make(chan fetch.RequestID, 8)
	bob.setListener(func(ev any) {
		if e, ok := ev.(*fetch.EventRequestPaused); ok {
			select {
			case paused <- e.RequestID:
			default:
			}
		}
	})
	bob.run("hold app.js", network.SetCacheDisabled(true),
		fetch.Enable().WithPatterns([]*fetch.RequestPattern{{URLPattern: "*/app.js*"}}))
	// Sent and reloaded at once: if its ack has not come, the message waits in the outbox
	// (localStorage) and is sent again, with the same mid, by the new page.
	bob.send("sent as the page reloads")
	reloaded := make(chan error, 1)
	go func() { reloaded <- bob.try(2*waitTimeout, chromedp.Reload()) }()
	var held fetch.RequestID
	select {
	case held = <-paused:
	case err := <-reloaded:
		s.fatalf("bob's reload ended (%v) before its script was held", err)
	case <-time.After(waitTimeout):
		s.fatalf("bob's reload did not request app.js in %v", waitTimeout)
	}
	var running bool
	bob.eval(`typeof window.chatDebug !== 'undefined'`, &running)
	if running {
		s.fatalf("bob's app is running while its script is held")
	}
	var during []string
	for i := 1; i <= 4; i++ {
		m := fmt.Sprintf("while bob reloads %d", i)
		during = append(during, m)
		alice.send(m)
	}
	for _, m := range during {
		alice.waitText(m)
	}
	bob.run("release app.js", fetch.ContinueRequest(held))
	select {
	case err := <-reloaded:
		if err != nil {
			s.fatalf("bob's reload: %v", err)
		}
	case <-time.After(2 * waitTimeout):
		s.fatalf("bob's reload did not finish")
	}
	bob.setListener(nil)
	bob.run("stop holding", fetch.Disable(), network.SetCacheDisabled(false))
	bob.waitConnected()
	for _, m := range append(during, "sent as the page reloads") {
		bob.waitText(m)
	}
	alice.waitText("sent as the page reloads")
	sameAsServer(s, bob, "bob", conv)
	sameAsServer(s, alice, "alice", conv)

	// Round 2: bob switches to long-poll mid-conversation (a navigation) while alice writes.
	navigated := make(chan error, 1)
	go func() { navigated <- bob.try(2*waitTimeout, chromedp.Navigate(s.url+"/?transport=poll#/c/"+conv)) }()
	during = nil
	for i := 1; i <= 4; i++ {
		m := fmt.Sprintf("while bob switches to long-poll %d", i)
		during = append(during, m)
		alice.send(m)
	}
	if err := <-navigated; err != nil {
		s.fatalf("bob's navigation: %v", err)
	}
	bob.waitConnected()
	if kind, _ := bob.transport(); kind != "poll" {
		s.fatalf("bob's transport after ?transport=poll: %q", kind)
	}
	for _, m := range during {
		alice.waitText(m)
		bob.waitText(m)
	}
	bob.send("bob over long-poll")
	alice.waitText("bob over long-poll")
	bob.waitText("bob over long-poll")
	sameAsServer(s, bob, "bob", conv)
	sameAsServer(s, alice, "alice", conv)
}

// sameAsServer checks that p renders exactly the conversation's events the server has: the
// data-seq of the rendered messages strictly increasing, nothing missing, nothing repeated, with
// the server's texts; and no message still pending.
func sameAsServer(s *browserSession, p *browserPage, user, conv string) {
	s.t.Helper()
	want, texts := shownSeqs(s.history(user, conv))
	// The page may be a moment behind the server for the newest events: wait for the count.
	p.waitFor(fmt.Sprintf("%d events rendered and nothing pending", len(want)),
		fmt.Sprintf(`document.querySelectorAll('#messages [data-seq]').length >= %d && !document.querySelector('#messages [data-pending]')`, len(want)))
	got := p.renderedSeqs()
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			s.fatalf("%s renders seqs %v: not strictly increasing at %d", p.name, got, i)
		}
	}
	if !slices.Equal(got, want) {
		s.fatalf("%s renders seqs %v, the server has %v", p.name, got, want)
	}
	var shown []string
	p.eval(`[...document.querySelectorAll('#messages [data-seq]')].map(e => e.querySelector('[data-testid=message-text]')?.textContent ?? '')`, &shown)
	for i, seq := range want {
		if shown[i] != texts[seq] {
			s.fatalf("%s shows %q at seq %d, the server has %q", p.name, shown[i], seq, texts[seq])
		}
	}
}

// quadrantPNG writes a w x h PNG with four solid quadrants (red, green, blue, yellow).
func quadrantPNG(t *testing.T, w, h int) (*image.RGBA, string) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	cols := []color.RGBA{{220, 40, 40, 255}, {40, 180, 60, 255}, {40, 80, 220, 255}, {240, 200, 40, 255}}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			q := 0
			if x >= w/2 {
				q++
			}
			if y >= h/2 {
				q += 2
			}
			img.SetRGBA(x, y, cols[q])
		}
	}
	file := filepath.Join(t.TempDir(), "quadrants.png")
	writePNG(t, file, img)
	return img, file
}

func writePNG(t *testing.T, file string, img image.Image) {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func near(got []int, want color.RGBA) bool {
	if len(got) != 3 {
		return false
	}
	for i, w := range []uint8{want.R, want.G, want.B} {
		if d := got[i] - int(w); d < -3 || d > 3 {
			return false
		}
	}
	return true
}

// aliceAndBob opens two pages with WebSocket, registers alice and bob through the UI, and opens
// their direct conversation conv on alice's.
func aliceAndBob(s *browserSession, conv string) (alice, bob *browserPage) {
	alice = s.newPage("alice", pageOptions{})
	bob = s.newPage("bob", pageOptions{})
	alice.open("/")
	alice.register("alice", "Alice")
	bob.open("/")
	bob.register("bob", "Bob")
	alice.openDM(conv, "bob")
	return alice, bob
}
