package main

// The harness of the browser tests (browser_test.go): one headless Chromium for the package,
// started on first use and stopped by TestMain; per test, an all-in-one chatd of its own and one
// browser context (a separate profile: its own localStorage, like an incognito window) per user;
// on failure, screenshots, the console of every page and the server's log in an artifacts
// directory.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	gt "github.com/eventchat/chat/services/gateway/gatewaytest"
	"github.com/eventchat/chat/services/presence"
	"github.com/eventchat/chat/services/unread"
)

const (
	// waitTimeout bounds every wait for a condition in a page; actionTimeout every single action.
	// Generous: CI has two shared cores and Chromium is heavy.
	waitTimeout   = 30 * time.Second
	actionTimeout = 30 * time.Second
	launchTimeout = 60 * time.Second
)

func TestMain(m *testing.M) {
	code := m.Run()
	stopBrowser()
	os.Exit(code)
}

// ---------------------------------------------------------------------------------------------
// The browser: one Chromium for the package.

var browser struct {
	once   sync.Once
	ctx    context.Context // the browser's own first tab; pages are new contexts under it
	cancel func()          // closes the browser (and the allocator)
	out    *lockedBuffer   // Chromium's stdout and stderr
	err    error
}

// chromiumPath finds the browser: $CHAT_CHROMIUM, else chromium on the PATH.
func chromiumPath() (string, error) {
	const install = "install the Debian package `chromium` (apt-get install chromium), or point CHAT_CHROMIUM at a Chromium or Chrome binary"
	if p := os.Getenv("CHAT_CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("the browser tests need Chromium: CHAT_CHROMIUM=%s: %v; %s", p, err, install)
		}
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("the browser tests need Chromium and none was found on the PATH: " + install)
}

// startBrowser starts the package's Chromium once; every browser test calls it and fails (never
// skips) when there is none.
func startBrowser(t *testing.T) {
	t.Helper()
	browser.once.Do(func() {
		path, err := chromiumPath()
		if err != nil {
			browser.err = err
			return
		}
		browser.out = &lockedBuffer{max: 1 << 20}
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(path),
			chromedp.Flag("headless", "new"),
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("no-first-run", true),
			chromedp.WindowSize(1280, 800),
			chromedp.CombinedOutput(browser.out),
		)
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		// chromedp's own complaints (say, an event of a newer protocol it cannot decode) go with
		// Chromium's output into the artifacts.
		ctx, cancelCtx := chromedp.NewContext(alloc, chromedp.WithLogf(func(string, ...any) {}),
			chromedp.WithErrorf(func(f string, args ...any) { fmt.Fprintf(browser.out, "chromedp: "+f+"\n", args...) }))
		browser.ctx = ctx
		browser.cancel = func() { cancelCtx(); cancelAlloc() }
		// The first Run starts the process; it must run on the browser's own context (a timeout
		// context there would end the browser with it), so the deadline is kept here.
		if err := runWithin(ctx, launchTimeout); err != nil {
			browser.cancel()
			browser.err = fmt.Errorf("starting Chromium (%s): %w\n%s", path, err, browser.out.String())
		}
	})
	if browser.err != nil {
		t.Fatal(browser.err)
	}
}

func stopBrowser() {
	if browser.cancel != nil {
		browser.cancel()
	}
}

// runWithin does the first Run of a chromedp context (which allocates the browser or the tab and
// must be given the context itself) within a deadline.
func runWithin(ctx context.Context, d time.Duration, actions ...chromedp.Action) error {
	done := make(chan error, 1)
	go func() { done <- chromedp.Run(ctx, actions...) }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return fmt.Errorf("no answer from the browser in %v", d)
	}
}

// ---------------------------------------------------------------------------------------------
// A session: one test's server and pages.

type browserSession struct {
	t         *testing.T
	url       string // the chatd under test, "http://127.0.0.1:port"
	artifacts string // where a failure leaves screenshots and logs
	serverLog *lockedBuffer

	mu    sync.Mutex
	pages []*browserPage
}

// newBrowserSession starts a chatd (as start() in main_test.go, with its log kept for the
// artifacts) and registers the cleanup that, on failure, saves what every page shows.
func newBrowserSession(t *testing.T) *browserSession {
	t.Helper()
	startBrowser(t)
	s := &browserSession{t: t, artifacts: artifactsDir(t), serverLog: &lockedBuffer{max: 16 << 20}}
	s.url = startServerWithLog(t, t.TempDir(), s.serverLog)
	t.Cleanup(s.finish)
	return s
}

// startServerWithLog runs the all-in-one like start() does (short presence timings, fsync on)
// with its log in buf; the server stops when the test ends.
func startServerWithLog(t *testing.T, dir string, buf *lockedBuffer) string {
	t.Helper()
	cfg := config{DataDir: dir, Gateway: gt.TestConfig(), Presence: presence.Defaults(), Unread: unread.Defaults()}
	cfg.Presence.Grace, cfg.Presence.Sweep = time.Second, 50*time.Millisecond
	cfg.Gateway.PresenceHeartbeat = 300 * time.Millisecond
	cfg.Topology.PresenceConnTTL = 2 * time.Second
	cfg.NATS = platform.EmbeddedNATS{SyncAlways: true}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { errc <- run(ctx, cfg, log, func(a, _ string) { addrc <- a }) }()
	select {
	case a := <-addrc:
		t.Cleanup(func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("chatd stopped with %v", err)
			}
		})
		return "http://" + a
	case err := <-errc:
		cancel()
		t.Fatalf("chatd did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("chatd did not start in 30s")
	}
	return ""
}

// artifactsDir is $CHAT_TEST_ARTIFACTS/<test>, or <tmp>/browser-artifacts/<test>.
func artifactsDir(t *testing.T) string {
	base := os.Getenv("CHAT_TEST_ARTIFACTS")
	if base == "" {
		base = filepath.Join(os.TempDir(), "browser-artifacts")
	}
	return filepath.Join(base, regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_"))
}

// fatalf ends the test with a message that says where the artifacts are.
func (s *browserSession) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf(format+"\n(screenshots, page consoles and the server log: %s)", append(args, s.artifacts)...)
}

// finish checks that no page had an uncaught exception or a JavaScript dialog, saves the
// artifacts if the test failed, and closes the pages.
func (s *browserSession) finish() {
	s.mu.Lock()
	pages := append([]*browserPage(nil), s.pages...)
	s.mu.Unlock()
	for _, p := range pages {
		p.mu.Lock()
		exc, dlg := append([]string(nil), p.exceptions...), append([]string(nil), p.dialogs...)
		p.mu.Unlock()
		if len(exc) > 0 {
			s.t.Errorf("page %s had uncaught exceptions:\n  %s", p.name, strings.Join(exc, "\n  "))
		}
		if len(dlg) > 0 {
			s.t.Errorf("page %s opened JavaScript dialogs: %s", p.name, strings.Join(dlg, "; "))
		}
	}
	if s.t.Failed() {
		s.saveArtifacts(pages)
	}
	for _, p := range pages {
		p.close()
	}
}

func (s *browserSession) saveArtifacts(pages []*browserPage) {
	_ = os.RemoveAll(s.artifacts)
	if err := os.MkdirAll(s.artifacts, 0o755); err != nil {
		s.t.Logf("artifacts: %v", err)
		return
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(s.artifacts, name), data, 0o644); err != nil {
			s.t.Logf("artifacts: %v", err)
		}
	}
	for _, p := range pages {
		p.mu.Lock()
		console := strings.Join(p.console, "\n") + "\n"
		closed := p.closed
		p.mu.Unlock()
		write(p.name+"-console.log", []byte(console))
		if closed {
			continue
		}
		ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
		var png []byte
		var html string
		if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
			s.t.Logf("screenshot of %s: %v", p.name, err)
		} else {
			write(p.name+".png", png)
		}
		if err := chromedp.Run(ctx, chromedp.OuterHTML("html", &html, chromedp.ByQuery)); err == nil {
			write(p.name+".html", []byte(html))
		}
		cancel()
	}
	write("server.log", []byte(s.serverLog.String()))
	write("chromium.log", []byte(browser.out.String()))
	s.t.Logf("browser test artifacts (screenshots, page consoles, server log): %s", s.artifacts)
}

// ---------------------------------------------------------------------------------------------
// A page: one tab in a browser context of its own.

type browserPage struct {
	s      *browserSession
	name   string
	ctx    context.Context
	cancel func()

	mu         sync.Mutex
	console    []string // console messages, exceptions, browser log entries, dialogs
	exceptions []string
	dialogs    []string
	closed     bool
	onEvent    func(ev any) // an extra listener a test may set (under mu)
}

type pageOptions struct {
	width, height int64
	noWebSocket   bool // delete window.WebSocket before the page's scripts run
	bypassCSP     bool // ignore the page's Content-Security-Policy (so an injection would run)
}

// newPage opens a tab in a new browser context, sized w x h.
func (s *browserSession) newPage(name string, o pageOptions) *browserPage {
	s.t.Helper()
	if o.width == 0 {
		o.width, o.height = 1280, 800
	}
	ctx, cancel := chromedp.NewContext(browser.ctx, chromedp.WithNewBrowserContext())
	p := &browserPage{s: s, name: name, ctx: ctx, cancel: cancel}
	s.mu.Lock()
	s.pages = append(s.pages, p)
	s.mu.Unlock()
	chromedp.ListenTarget(ctx, p.listen)
	setup := []chromedp.Action{chromedp.EmulateViewport(o.width, o.height)}
	if o.noWebSocket {
		setup = append(setup, chromedp.ActionFunc(func(ctx context.Context) error {
			_, err := page.AddScriptToEvaluateOnNewDocument(`delete window.WebSocket;`).Do(ctx)
			return err
		}))
	}
	if o.bypassCSP {
		setup = append(setup, page.SetBypassCSP(true))
	}
	if err := runWithin(ctx, launchTimeout, setup...); err != nil {
		s.fatalf("opening page %s: %v", name, err)
	}
	return p
}

func (p *browserPage) logf(format string, args ...any) {
	line := time.Now().Format("15:04:05.000") + " " + fmt.Sprintf(format, args...)
	p.console = append(p.console, line)
}

// listen records the page's console, exceptions and log entries, and answers dialogs (dismissed,
// so that a page never hangs on one) while recording them as failures.
func (p *browserPage) listen(ev any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e := ev.(type) {
	case *cdpruntime.EventConsoleAPICalled:
		var parts []string
		for _, a := range e.Args {
			if len(a.Value) > 0 {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		p.logf("console.%s %s", e.Type, strings.Join(parts, " "))
	case *cdpruntime.EventExceptionThrown:
		msg := e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil {
			msg += " " + e.ExceptionDetails.Exception.Description
		}
		msg += fmt.Sprintf(" (%s:%d)", e.ExceptionDetails.URL, e.ExceptionDetails.LineNumber+1)
		p.exceptions = append(p.exceptions, msg)
		p.logf("EXCEPTION %s", msg)
	case *cdplog.EventEntryAdded:
		p.logf("log.%s [%s] %s %s", e.Entry.Level, e.Entry.Source, e.Entry.Text, e.Entry.URL)
	case *page.EventJavascriptDialogOpening:
		p.dialogs = append(p.dialogs, fmt.Sprintf("%s %q", e.Type, e.Message))
		p.logf("DIALOG %s %q", e.Type, e.Message)
		go func() { _ = chromedp.Run(p.ctx, page.HandleJavaScriptDialog(false)) }()
	case *page.EventFrameNavigated:
		if e.Frame.ParentID == "" {
			p.logf("navigated to %s", e.Frame.URL)
		}
	}
	if p.onEvent != nil {
		p.onEvent(ev)
	}
}

func (p *browserPage) setListener(fn func(ev any)) {
	p.mu.Lock()
	p.onEvent = fn
	p.mu.Unlock()
}

func (p *browserPage) dialogCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.dialogs)
}

// consoleMatching answers the recorded console lines containing sub.
func (p *browserPage) consoleMatching(sub string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, l := range p.console {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

func (p *browserPage) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
}

// run does actions within actionTimeout, ending the test on an error.
func (p *browserPage) run(what string, actions ...chromedp.Action) {
	p.s.t.Helper()
	if err := p.try(actionTimeout, actions...); err != nil {
		p.s.fatalf("[%s] %s: %v", p.name, what, err)
	}
}

func (p *browserPage) try(d time.Duration, actions ...chromedp.Action) error {
	ctx, cancel := context.WithTimeout(p.ctx, d)
	defer cancel()
	return chromedp.Run(ctx, actions...)
}

func awaitPromise(p *cdpruntime.EvaluateParams) *cdpruntime.EvaluateParams {
	return p.WithAwaitPromise(true)
}

// eval evaluates a JavaScript expression (awaiting a promise) into out.
func (p *browserPage) eval(expr string, out any) {
	p.s.t.Helper()
	if err := p.try(actionTimeout, chromedp.Evaluate(expr, out, awaitPromise)); err != nil {
		p.s.fatalf("[%s] evaluating %s: %v", p.name, expr, err)
	}
}

// waitFor polls a JavaScript condition (an exception counts as false) until it holds.
func (p *browserPage) waitFor(what, cond string) {
	p.s.t.Helper()
	p.waitForWithin(waitTimeout, what, cond)
}

func (p *browserPage) waitForWithin(d time.Duration, what, cond string) {
	p.s.t.Helper()
	expr := `(() => { try { return !!(` + cond + `); } catch (e) { return false; } })()`
	start := time.Now()
	deadline := start.Add(d)
	var lastErr error
	for {
		var ok bool
		// Each try is short: an evaluation during a navigation may hang until the new document.
		lastErr = p.try(5*time.Second, chromedp.Evaluate(expr, &ok))
		if lastErr == nil && ok {
			if took := time.Since(start); took > 5*time.Second {
				p.s.t.Logf("[%s] slow: %v until %s", p.name, took.Round(time.Millisecond), what)
			}
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.s.fatalf("[%s] timed out after %v waiting for %s\n  condition: %s\n  last error: %v\n  page: %s",
		p.name, d, what, cond, lastErr, p.summary())
}

// summary describes the page's state for a failure message.
func (p *browserPage) summary() string {
	var s string
	err := p.try(5*time.Second, chromedp.Evaluate(`JSON.stringify({
		url: location.href,
		state: window.chatDebug ? chatDebug.state() : null,
		transport: window.chatDebug ? chatDebug.transport() : null,
		lastSeq: window.chatDebug ? chatDebug.lastSeq() : null,
		login: document.getElementById('login-screen')?.hidden === false ? (document.getElementById('login-error')?.textContent || 'shown') : null,
		list: [...document.querySelectorAll('[data-testid=conv-item]')].map(e => e.dataset.conv + ' ' + e.textContent.replace(/\s+/g, ' ').trim()),
		messages: [...document.querySelectorAll('#messages [data-testid=message]')].map(e => (e.dataset.seq || 'pending') + ' ' + e.dataset.from + ': ' + (e.querySelector('[data-testid=message-text]')?.textContent ?? '[' + (e.querySelector('[data-testid^=attachment]')?.dataset.testid || 'no text') + ']')),
		notices: [...document.querySelectorAll('[data-testid=notice]')].map(e => e.textContent),
	})`, &s))
	if err != nil {
		return fmt.Sprintf("(not readable: %v)", err)
	}
	if len(s) > 4000 {
		s = s[:4000] + "…"
	}
	return s
}

// ---------------------------------------------------------------------------------------------
// The client's UI, through its data-testid attributes.

func tid(id string) string { return `[data-testid="` + id + `"]` }

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func password(user string) string { return "password-" + user }

// open loads the client at path (e.g. "/", "/?transport=poll").
func (p *browserPage) open(path string) {
	p.s.t.Helper()
	p.run("open "+path, chromedp.Navigate(p.s.url+path))
}

// register creates an account through the login screen and waits until the client is connected.
func (p *browserPage) register(user, name string) {
	p.s.t.Helper()
	p.waitFor("the login screen", `document.getElementById('login-screen').hidden === false && document.activeElement`)
	p.run("fill the registration form",
		chromedp.SetValue(tid("login-user"), user, chromedp.ByQuery),
		chromedp.SetValue(tid("login-password"), password(user), chromedp.ByQuery),
		chromedp.SetValue(tid("login-name"), name, chromedp.ByQuery),
		chromedp.Click(tid("register-submit"), chromedp.ByQuery))
	p.waitConnected()
}

// login logs in through the login screen.
func (p *browserPage) login(user string) {
	p.s.t.Helper()
	p.waitFor("the login screen", `document.getElementById('login-screen').hidden === false`)
	p.run("fill the login form",
		chromedp.SetValue(tid("login-user"), user, chromedp.ByQuery),
		chromedp.SetValue(tid("login-password"), password(user), chromedp.ByQuery),
		chromedp.Click(tid("login-submit"), chromedp.ByQuery))
	p.waitConnected()
}

func (p *browserPage) waitConnected() {
	p.s.t.Helper()
	p.waitFor("the chat screen, connected", `document.getElementById('main').hidden === false &&
		['ws', 'poll'].includes(document.querySelector('[data-testid=conn-state]').dataset.state)`)
}

// transport answers window.chatDebug.transport() and the connection state shown.
func (p *browserPage) transport() (kind, shown string) {
	p.s.t.Helper()
	var r []string
	p.eval(`[chatDebug.transport(), document.querySelector('[data-testid=conn-state]').dataset.state]`, &r)
	return r[0], r[1]
}

// openDM starts (or opens) the direct conversation with user from the sidebar form.
func (p *browserPage) openDM(conv, user string) {
	p.s.t.Helper()
	p.run("open a direct conversation with "+user,
		chromedp.SetValue(tid("new-dm-user"), user, chromedp.ByQuery),
		chromedp.Click(tid("new-dm-open"), chromedp.ByQuery))
	p.waitFor("the conversation with "+user+" open", `decodeURIComponent(location.hash).endsWith(`+jsString(conv)+`) &&
		document.getElementById('chat-pane').hidden === false`)
}

// openConv clicks a conversation in the list.
func (p *browserPage) openConv(conv string) {
	p.s.t.Helper()
	p.run("click conversation "+conv, chromedp.Click(convItem(conv), chromedp.ByQuery))
	p.waitFor("conversation "+conv+" open", `decodeURIComponent(location.hash).endsWith(`+jsString(conv)+`) &&
		document.getElementById('chat-pane').hidden === false`)
}

func convItem(conv string) string { return `[data-testid="conv-item"][data-conv="` + conv + `"]` }

// typeAndSend types text into the composer key by key and presses Enter. The keys are real key
// events for the focused element (no DOM query: chromedp's view of the DOM goes stale when a page
// comes back from the back/forward cache).
func (p *browserPage) typeAndSend(text string) {
	p.s.t.Helper()
	p.run("type and send "+text,
		chromedp.Evaluate(`document.querySelector('[data-testid=composer-input]').focus()`, nil),
		chromedp.KeyEvent(text+"\r"))
}

// send puts text into the composer and presses Enter (quicker than typing it).
func (p *browserPage) send(text string) {
	p.s.t.Helper()
	p.run("send "+text,
		chromedp.Evaluate(`(() => { const c = document.querySelector('[data-testid=composer-input]'); c.value = `+jsString(text)+`; c.focus(); })()`, nil),
		chromedp.KeyEvent("\r"))
}

// hasText is a condition: a message in the open conversation shows exactly text (acked when
// stored is set: it has a seq, not only the pending copy).
func hasText(text string, stored bool) string {
	sel := `#messages [data-testid=message]`
	if stored {
		sel += `[data-seq]`
	}
	return `[...document.querySelectorAll('` + sel + `')].some(m => m.querySelector('[data-testid=message-text]')?.textContent === ` + jsString(text) + `)`
}

// waitText waits until a stored message shows text.
func (p *browserPage) waitText(text string) {
	p.s.t.Helper()
	p.waitFor("the message "+jsString(text), hasText(text, true))
}

// waitTextWithin waits at most d for a stored message showing text.
func (p *browserPage) waitTextWithin(d time.Duration, text string) {
	p.s.t.Helper()
	p.waitForWithin(d, "the message "+jsString(text), hasText(text, true))
}

// texts answers the texts of the open conversation's messages, in order.
func (p *browserPage) texts() []string {
	p.s.t.Helper()
	var out []string
	p.eval(`[...document.querySelectorAll('#messages [data-testid=message-text]')].map(e => e.textContent)`, &out)
	return out
}

// renderedSeqs answers the data-seq of every event rendered in the open conversation, in order.
func (p *browserPage) renderedSeqs() []uint64 {
	p.s.t.Helper()
	var out []uint64
	p.eval(`[...document.querySelectorAll('#messages [data-seq]')].map(e => Number(e.dataset.seq))`, &out)
	return out
}

// ---------------------------------------------------------------------------------------------
// The server side of a check.

// token logs user in over HTTP.
func (s *browserSession) token(user string) string {
	s.t.Helper()
	var lr schemas.LoginResponse
	st, err := gt.HTTP("POST", s.url+"/v1/login", "", schemas.LoginRequest{User: user, Password: password(user)}, &lr)
	if err != nil || st != http.StatusOK {
		s.fatalf("login %s: %d %v", user, st, err)
	}
	return lr.Token
}

// history answers the conversation's events as the server has them (up to 200).
func (s *browserSession) history(user, conv string) []gt.Frame {
	s.t.Helper()
	req, err := http.NewRequest("GET", s.url+"/v1/conversations/"+url.PathEscape(conv)+"/messages?limit=200", nil)
	if err != nil {
		s.fatalf("%v", err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token(user))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.fatalf("history of %s: %v", conv, err)
	}
	defer resp.Body.Close()
	var r struct {
		Messages []gt.Frame `json:"messages"`
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber() // as gt.Frame wants
	if err := dec.Decode(&r); err != nil || resp.StatusCode != http.StatusOK {
		s.fatalf("history of %s: %s %v", conv, resp.Status, err)
	}
	return r.Messages
}

// shownSeqs is what the client renders of a history: member events and ordinary messages (edits,
// deletes and reactions change the message they refer to).
func shownSeqs(events []gt.Frame) (seqs []uint64, texts map[uint64]string) {
	texts = map[uint64]string{}
	for _, f := range events {
		if f.Cmd() == "member" || (f.Cmd() == "message" && f.Str("kind") == "") {
			seqs = append(seqs, f.Seq())
			texts[f.Seq()] = f.Str("msg")
		}
	}
	return seqs, texts
}

// ---------------------------------------------------------------------------------------------

// lockedBuffer is an io.Writer safe for concurrent use that keeps at most max bytes.
type lockedBuffer struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	max       int
	truncated bool
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len()+len(p) > b.max {
		b.truncated = true
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.truncated {
		return b.buf.String() + "\n[truncated]\n"
	}
	return b.buf.String()
}
