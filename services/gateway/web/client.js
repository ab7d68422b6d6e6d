// client.js: the chat session over a Transport: requests matched to answers by id, the resume
// cursor (the last seq seen, persisted per user), and the outbox of messages waiting for their ack
// (persisted too, and retried with the same mid after a reconnect, so nothing is lost or doubled).

import { Transport } from './transport.js';
import { newMid } from './dom.js';

export class ProtoError extends Error {
  constructor(code, msg) {
    super(msg || code);
    this.code = code;
  }
}

// Errors after which a message is retried (same mid) rather than given up.
const RETRYABLE = new Set(['offline', 'timeout', 'unavailable', 'rate_limited', 'internal']);

export class Client {
  // handlers: frame(f), state(s), ready(), acked(p, ack), outbox(conv), failed(p, err), unauthorized()
  constructor(session, { forcePoll = false, handlers }) {
    this.me = session.user;
    this.h = handlers;
    this.keySeq = `chat.lastSeq.${this.me}`;
    this.keyOut = `chat.outbox.${this.me}`;
    this.lastSeq = Number(localStorage.getItem(this.keySeq)) || 0;
    this.outbox = new Map();
    try {
      for (const p of JSON.parse(localStorage.getItem(this.keyOut) || '[]')) this.outbox.set(p.mid, p);
    } catch { /* a damaged outbox is dropped */ }
    this.pending = new Map(); // request id -> {resolve, reject, timer}
    this.nextId = 1;
    this.ready = false;
    this.resumeGen = 0;
    const expiresAt = Date.parse(session.expiresAt);
    this.transport = new Transport({
      token: session.token,
      forcePoll,
      getCursor: () => this.lastSeq || null,
      expired: () => Number.isFinite(expiresAt) && Date.now() >= expiresAt,
      onFrame: (f) => this._onFrame(f),
      onCursor: (c) => this._bump(c),
      onOpen: () => this._resume(),
      onState: (s) => this._onState(s),
      onUnauthorized: () => this.h.unauthorized(),
    });
  }

  start() { this.transport.start(); }

  stop() {
    this.transport.stop();
    this._rejectAll();
  }

  get connected() { return this.transport.open; }

  // request sends a frame with a fresh id and resolves with its answer (rejects with a ProtoError).
  request(frame, timeout = 20e3) {
    return new Promise((resolve, reject) => {
      const id = `r${this.nextId++}`;
      if (!this.transport.send({ ...frame, id })) return reject(new ProtoError('offline', 'not connected'));
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ProtoError('timeout', 'no answer from the server'));
      }, timeout);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  // send sends a frame that needs no answer (typing, activity); dropped when offline.
  send(frame) { return this.transport.send(frame); }

  // sendMessage queues a message in the outbox and sends it; it stays there until acked.
  sendMessage({ conv, to, type, msg }) {
    const p = { mid: newMid(), conv, type, msg, ts: new Date().toISOString(), state: 'sending' };
    if (to) p.to = to;
    this.outbox.set(p.mid, p);
    this._saveOutbox();
    this.h.outbox(conv);
    if (this.ready) this._sendOne(p);
    return p;
  }

  pendingFor(conv) { return [...this.outbox.values()].filter((p) => p.conv === conv); }

  discard(mid) {
    const p = this.outbox.get(mid);
    if (!p) return;
    this.outbox.delete(mid);
    this._saveOutbox();
    this.h.outbox(p.conv);
  }

  _saveOutbox() {
    const list = [...this.outbox.values()].map(({ inflight, ...p }) => p);
    try { localStorage.setItem(this.keyOut, JSON.stringify(list)); } catch { /* storage full */ }
  }

  _sendOne(p) {
    if (p.inflight || p.state === 'failed') return;
    p.inflight = true;
    const f = { cmd: 'message', mid: p.mid, type: p.type, msg: p.msg };
    if (p.to) f.to = p.to;
    else f.conv = p.conv;
    this.request(f, 30e3).then((ack) => this._acked(p, ack), (e) => {
      p.inflight = false;
      if (!this.outbox.has(p.mid)) return;
      if (RETRYABLE.has(e.code)) {
        // Offline: the resume resends it. Otherwise try again shortly, with the same mid.
        if (e.code !== 'offline') setTimeout(() => this.ready && this.outbox.has(p.mid) && this._sendOne(p), 3000);
        return;
      }
      p.state = 'failed';
      p.error = e.message;
      this._saveOutbox();
      this.h.outbox(p.conv);
      this.h.failed(p, e);
    });
  }

  _acked(p, ack) {
    if (!this.outbox.has(p.mid)) return;
    this.outbox.delete(p.mid);
    this._saveOutbox();
    this.h.acked(p, ack);
  }

  _bump(seq) {
    if (Number.isInteger(seq) && seq > this.lastSeq) {
      this.lastSeq = seq;
      try { localStorage.setItem(this.keySeq, String(seq)); } catch { /* storage full */ }
    }
  }

  _onFrame(f) {
    // Answers to our requests (events never settle a request, even if they carried its id).
    if (f.id != null && f.cmd !== 'message' && f.cmd !== 'member' && this.pending.has(f.id)) {
      const r = this.pending.get(f.id);
      this.pending.delete(f.id);
      clearTimeout(r.timer);
      if (f.cmd === 'error') r.reject(new ProtoError(f.errCode, f.errMsg));
      else r.resolve(f);
      return;
    }
    if (f.cmd === 'ack' && this.outbox.has(f.mid)) return this._acked(this.outbox.get(f.mid), f);
    if (f.cmd === 'error' && f.id != null) return; // a late answer to a request that timed out
    this.h.frame(f);
    if ((f.cmd === 'message' || f.cmd === 'member') && Number.isInteger(f.seq)) this._bump(f.seq);
  }

  _onState(s) {
    if (s !== 'ws' && s !== 'poll') {
      this.ready = false;
      this._rejectAll();
    }
    this.h.state(s);
  }

  _rejectAll() {
    for (const r of this.pending.values()) {
      clearTimeout(r.timer);
      r.reject(new ProtoError('offline', 'connection lost'));
    }
    this.pending.clear();
  }

  // The head as the conversation list knows it: a fresh client starts from there instead of
  // replaying everything.
  async _head() {
    try {
      const r = await this.request({ cmd: 'conversations' });
      return Math.max(0, ...(r.items || []).map((i) => i.lastSeq || 0));
    } catch (e) {
      if (e.code === 'offline') throw e;
      return 0;
    }
  }

  // _resume runs on every open connection. WebSocket: `sync` after the last seq seen (handled
  // frames arrive before `synced`). Long-poll: the poll cursor already resumed. Then the outbox goes.
  async _resume() {
    const gen = ++this.resumeGen;
    try {
      if (this.transport.kind === 'ws') {
        let after = this.lastSeq || (await this._head());
        let s;
        try {
          s = await this.request({ cmd: 'sync', after }, 120e3);
        } catch (e) {
          if (e.code !== 'unavailable') throw e;
          // Too far behind for the log (retention): restart from the head; the UI reloads.
          after = await this._head();
          this.h.reset?.();
          s = await this.request({ cmd: 'sync', after }, 120e3);
        }
        this._bump(s.seq);
      }
    } catch (e) {
      if (e.code === 'offline') return; // the transport reconnects and resumes again
      console.warn('resume:', e);
    }
    if (gen !== this.resumeGen || !this.transport.open) return;
    this.ready = true;
    this.h.ready();
    for (const p of this.outbox.values()) this._sendOne(p);
  }
}
