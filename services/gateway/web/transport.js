// transport.js: one interface over WebSocket and long-poll.
//
//   const t = new Transport({token, forcePoll, getCursor, expired,
//                            onFrame, onCursor, onOpen, onState, onUnauthorized});
//   t.start(); t.send(frame) -> false when not open; t.kind: 'ws'|'poll';
//   t.state: 'connecting'|'ws'|'poll'|'offline'; t.retryAt: when the next attempt is due; t.stop().
//
// A connection is open once authenticated: on a WebSocket when the first-frame `login` is answered
// `ok`; over long-poll when the first poll is answered. onOpen fires once per open connection (the
// caller resumes from there). Failures reconnect with exponential backoff; a WebSocket that never
// manages to open falls back to long-poll for the rest of the page's life.

const LOGIN_ID = '_login';
const KEEPALIVE_ID = '_ka';
const WS_FAILS_BEFORE_POLL = 3;
const POLL_WAIT = 25;            // seconds the server may hold a poll
const PING_EVERY = 20e3;         // a keepalive ping over the WebSocket
const DEAD_AFTER = 50e3;         // nothing heard for this long: the socket is dead

// pollClientId: a random id of this page, sent with every poll ([A-Za-z0-9_-], 22 characters).
function pollClientId() {
  const r = new Uint8Array(16);
  crypto.getRandomValues(r);
  return 'p' + Array.from(r, (b) => 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[b & 63]).join('').slice(0, 21);
}

export class Transport {
  constructor(opts) {
    this.o = opts;
    this.hasWS = typeof window.WebSocket === 'function' && !opts.forcePoll;
    this.kind = this.hasWS ? 'ws' : 'poll';
    this.state = 'connecting';
    this.open = false;
    this.stopped = false;
    this.gen = 0;             // connection generation: callbacks of older connections are ignored
    this.attempt = 0;         // failed attempts in a row (backoff)
    this.wsFails = 0;         // WebSocket attempts in a row that never authenticated
    this.wsEverOpened = false;
    this.queue = [];          // long-poll: frames for the next poll
    this.clientId = pollClientId(); // long-poll: names this page to the server (presence, limits)
    this.retryAt = 0;
    this._cleanup = null;
    this._online = () => { if (!this.open && !this.stopped) { this.attempt = 0; this._connect(); } };
    this._offline = () => { if (this.open) this._fail(this.gen); };
    // A page kept in the back/forward cache keeps its connection open (its user stays online,
    // frozen): close it when the page is hidden that way, connect again when it is shown.
    this._pagehide = (e) => {
      if (!e.persisted || this.stopped) return;
      clearTimeout(this._timer);
      this.gen++;
      this._close();
      this.open = false;
      this.queue = [];
      this._setState('offline');
    };
    this._pageshow = (e) => { if (e.persisted && !this.stopped) { this.attempt = 0; this._connect(); } };
  }

  start() {
    window.addEventListener('online', this._online);
    window.addEventListener('offline', this._offline);
    window.addEventListener('pagehide', this._pagehide);
    window.addEventListener('pageshow', this._pageshow);
    this._connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this._online);
    window.removeEventListener('offline', this._offline);
    window.removeEventListener('pagehide', this._pagehide);
    window.removeEventListener('pageshow', this._pageshow);
    clearTimeout(this._timer);
    this.gen++;
    this._close();
    this.open = false;
    this._setState('offline');
  }

  send(frame) {
    if (!this.open) return false;
    if (this.kind === 'ws') {
      if (this.ws?.readyState !== WebSocket.OPEN) return false;
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    this.queue.push(frame);
    if (this.pollIdle) this.pollAbort?.(); // a poll that only waits: end it so the frame leaves now
    return true;
  }

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.o.onState?.(s);
  }

  _close() {
    const c = this._cleanup;
    this._cleanup = null;
    c?.();
  }

  _connect() {
    clearTimeout(this._timer);
    if (this.stopped) return;
    this._close();
    const gen = ++this.gen;
    this.open = false;
    this._setState('connecting');
    if (this.kind === 'ws') this._ws(gen);
    else this._poll(gen);
  }

  _opened() {
    this.open = true;
    this.attempt = 0;
    this._setState(this.kind);
    this.o.onOpen?.();
  }

  // _fail ends connection gen and schedules the next attempt (or gives up when unauthorized).
  _fail(gen, unauthorized = false) {
    if (gen !== this.gen || this.stopped) return;
    this.gen++;
    this._close();
    this.open = false;
    this.queue = [];
    if (unauthorized || this.o.expired?.()) {
      this.stopped = true;
      this._setState('offline');
      this.o.onUnauthorized?.();
      return;
    }
    const base = Math.min(30e3, 500 * 2 ** Math.min(this.attempt, 6));
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.attempt++;
    this.retryAt = Date.now() + delay;
    this._setState('offline');
    this._timer = setTimeout(() => this._connect(), delay);
  }

  _ws(gen) {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`;
    let ws, authed = false, unauthorized = false, lastRx = Date.now();
    try {
      ws = new WebSocket(url);
    } catch {
      this.wsFails++;
      return this._fail(gen);
    }
    this.ws = ws;
    const ping = setInterval(() => {
      if (Date.now() - lastRx > DEAD_AFTER) return this._fail(gen);
      if (authed && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ cmd: 'ping', id: KEEPALIVE_ID }));
    }, PING_EVERY);
    this._cleanup = () => {
      clearInterval(ping);
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000); } catch { /* already closed */ }
      if (this.ws === ws) this.ws = null;
    };
    ws.onopen = () => ws.send(JSON.stringify({ cmd: 'login', token: this.o.token, id: LOGIN_ID }));
    ws.onmessage = (ev) => {
      lastRx = Date.now();
      let f;
      try { f = JSON.parse(ev.data); } catch { return; }
      if (!f || typeof f !== 'object') return;
      if (f.cmd === 'error' && f.errCode === 'unauthorized') unauthorized = true;
      if (!authed && f.id === LOGIN_ID) {
        if (f.cmd === 'ok') {
          authed = true;
          this.wsFails = 0;
          this.wsEverOpened = true;
          this._opened();
        }
        return;
      }
      if (f.id === KEEPALIVE_ID) return;
      this.o.onFrame(f);
    };
    ws.onclose = (ev) => {
      if (gen !== this.gen) return;
      if (!authed) this.wsFails++;
      // 1008 after `error unauthorized` (or a refused login) means the token is no good.
      if (unauthorized || (ev.code === 1008 && !authed)) return this._fail(gen, true);
      if (!this.wsEverOpened && this.wsFails >= WS_FAILS_BEFORE_POLL) this.kind = 'poll';
      this._fail(gen);
    };
  }

  // _poll: POST /v1/poll?wait= {cursor?, frames} -> {cursor, frames}, in a loop. The first poll
  // asks wait=0 so the connection opens at once, and so does a poll that carries frames (one
  // without a reply, like typing, would otherwise hold the frames queued after it until the wait
  // ends); the others wait for something to deliver, and a frame queued meanwhile ends them.
  async _poll(gen) {
    let cursor = this.o.getCursor?.() || null; // none: the server answers with the current head
    let first = true;
    while (gen === this.gen && !this.stopped) {
      const frames = this.queue.splice(0);
      const body = { frames };
      if (cursor != null) body.cursor = cursor;
      const ctl = new AbortController();
      let timedOut = false;
      const wait = first || frames.length ? 0 : POLL_WAIT;
      const timer = setTimeout(() => { timedOut = true; ctl.abort(); }, (wait + 20) * 1000);
      this.pollIdle = !first && frames.length === 0;
      this.pollAbort = () => ctl.abort();
      this._cleanup = () => { clearTimeout(timer); ctl.abort(); };
      const started = Date.now();
      let res, data;
      try {
        res = await fetch(`/v1/poll?wait=${wait}`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${this.o.token}`, 'X-Chat-Client-Id': this.clientId },
          body: JSON.stringify(body),
          signal: ctl.signal,
          cache: 'no-store',
          credentials: 'omit',
        });
        if (res.ok) data = await res.json();
      } catch {
        clearTimeout(timer);
        if (gen !== this.gen) return;
        if (ctl.signal.aborted && !timedOut) continue; // ended to send queued frames: poll again now
        return this._fail(gen);
      } finally {
        this.pollIdle = false;
        this.pollAbort = null;
      }
      clearTimeout(timer);
      if (gen !== this.gen) return;
      if (res.status === 401) return this._fail(gen, true);
      if (!res.ok || !data || !Array.isArray(data.frames)) return this._fail(gen);
      for (const f of data.frames) {
        try { this.o.onFrame(f); } catch (e) { console.error(e); }
      }
      if (Number.isInteger(data.cursor)) {
        cursor = data.cursor;
        this.o.onCursor?.(cursor);
      }
      if (first) {
        first = false;
        this._opened();
      } else if (!frames.length && !data.frames.length && Date.now() - started < 500) {
        await new Promise((r) => setTimeout(r, 1000)); // a server answering empty at once: don't spin
      }
    }
  }
}
