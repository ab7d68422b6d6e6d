// store.js: the client's model. Conversations (the list: name, last message, unread) and, for the
// conversations that were opened, their events by seq. Every event is keyed by its seq, so one seen
// twice (resume, history and live overlapping, an ack and its message) is applied once.

export const USER_RE = /^[a-z0-9_-]{1,64}$/;
export const CONV_RE = /^(dm:[a-z0-9_-]{1,64}:[a-z0-9_-]{1,64}|g:[a-z0-9_-]{1,64})$/;
export const isDM = (id) => id.startsWith('dm:');
export const dmId = (a, b) => (a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`);
export function dmPeer(conv, me) {
  const [, a, b] = conv.split(':');
  return a === me ? b : a;
}

const isMember = (f) => f.cmd === 'member' || (!f.cmd && f.action);

function newConv(id, me) {
  const peer = isDM(id) ? dmPeer(id, me) : null;
  return {
    id, peer,
    name: peer || id.slice(2),
    known: false,        // the server has told us about it (list or events); else a draft DM
    gone: false,         // left, or no longer listed
    lastSeq: 0, lastTs: null, lastMessage: null, unread: 0,
    base: 0,             // the lastSeq of the last list snapshot: unread already counts up to it
    incoming: [],        // seqs of messages from others seen live after the snapshot
    seen: new Set(),     // seqs already applied to the list entry
    loaded: false,       // its events are kept (opened at least once)
    hasMore: true, loadingOlder: false, loadError: false,
    msgs: new Map(),     // seq -> message or member event
    applied: new Set(),  // seqs applied to msgs (including edits, deletes, reactions)
    orphans: new Map(),  // ref -> edits/deletes/reactions whose message is not loaded yet
    typers: new Map(),   // user -> typing until (ms)
    readSent: 0,
  };
}

export class Store {
  constructor(me) {
    this.me = me;
    this.convs = new Map();
    this.presence = new Map(); // user -> {status, lastSeen}
  }

  conv(id) {
    let c = this.convs.get(id);
    if (!c) this.convs.set(id, (c = newConv(id, this.me)));
    return c;
  }

  // The list: drafts first, then most recent activity first.
  list() {
    const key = (c) => (c.known ? c.lastSeq : Infinity);
    return [...this.convs.values()].filter((c) => !c.gone).sort((a, b) => key(b) - key(a) || (a.id < b.id ? -1 : 1));
  }

  totalUnread() {
    let n = 0;
    for (const c of this.convs.values()) if (!c.gone) n += c.unread;
    return n;
  }

  // applyList takes a `conversations` answer. Messages seen live after the snapshot are kept
  // (and still counted as unread).
  applyList(items) {
    const listed = new Set();
    let head = 0;
    for (const it of items) {
      listed.add(it.conv);
      head = Math.max(head, it.lastSeq || 0);
      const c = this.conv(it.conv);
      c.known = true;
      c.gone = false;
      if (it.name) c.name = it.name;
      const later = c.incoming.filter((s) => s > it.lastSeq);
      if (c.lastSeq > it.lastSeq) {
        c.unread = it.unread + later.length;
      } else {
        c.lastSeq = it.lastSeq;
        c.lastTs = it.lastTs;
        c.lastMessage = it.lastMessage || null;
        c.unread = it.unread;
      }
      c.base = Math.max(c.base, it.lastSeq);
      c.incoming = later;
    }
    // Known conversations the server no longer lists (and nothing newer): we left them.
    for (const c of this.convs.values()) if (c.known && !listed.has(c.id) && c.lastSeq > 0 && c.lastSeq <= head) c.gone = true;
  }

  // live applies a pushed event (message or member) to the list and, if loaded, to the content.
  // It answers the conversation, or null for a repeat.
  live(f) {
    const c = this.conv(f.conv);
    if (c.seen.has(f.seq)) return null;
    c.seen.add(f.seq);
    c.known = true;
    c.gone = false;
    if (f.seq > c.lastSeq) {
      c.lastSeq = f.seq;
      if (f.ts) c.lastTs = f.ts;
    }
    if (isMember(f)) {
      if (f.user === this.me && f.action === 'left') c.gone = true;
    } else if (!f.kind) {
      if (!c.lastMessage || f.seq >= c.lastMessage.seq) c.lastMessage = f;
      if (f.from !== this.me && f.seq > c.base) {
        c.incoming.push(f.seq);
        c.unread++;
      }
      c.typers.delete(f.from);
    } else if (f.kind === 'delete') {
      c.incoming = c.incoming.filter((s) => s !== f.ref); // the server sends the new count
      if (c.lastMessage?.seq === f.ref) {
        const prev = this._lastVisible(c, f.ref);
        c.lastMessage = prev;
        c.stale = !prev; // ask the server for the one before
      }
    } else if (f.kind === 'edit' && c.lastMessage?.seq === f.ref) {
      c.lastMessage = { ...c.lastMessage, msg: f.msg };
    }
    this.content(c, f);
    return c;
  }

  _lastVisible(c, before) {
    const seqs = [...c.msgs.keys()].filter((s) => s < before).sort((a, b) => b - a);
    for (const s of seqs) {
      const m = c.msgs.get(s);
      if (m.kind !== 'member' && !m.deleted) return { cmd: 'message', conv: c.id, seq: s, from: m.from, type: m.type, msg: m.msg, ts: m.ts };
    }
    return null;
  }

  // content applies an event to a loaded conversation's messages.
  content(c, f) {
    if (!c.loaded || c.applied.has(f.seq)) return;
    c.applied.add(f.seq);
    if (isMember(f)) {
      c.msgs.set(f.seq, { seq: f.seq, kind: 'member', user: f.user, action: f.action, by: f.by, ts: f.ts, v: 0 });
    } else if (!f.kind) {
      const m = { seq: f.seq, mid: f.mid, from: f.from, type: f.type || 'text', msg: f.msg ?? '', ts: f.ts, tid: f.tid,
        edited: false, editSeq: 0, deleted: false, reactions: new Map(), v: 0 };
      c.msgs.set(f.seq, m);
      const waiting = c.orphans.get(f.seq);
      if (waiting) {
        c.orphans.delete(f.seq);
        waiting.sort((a, b) => a.seq - b.seq).forEach((e) => applyRef(m, e));
      }
    } else {
      const m = c.msgs.get(f.ref);
      if (m && m.kind !== 'member') applyRef(m, f);
      else if (!m) c.orphans.set(f.ref, [...(c.orphans.get(f.ref) || []), f]);
    }
  }

  // history applies a `history` answer (oldest first) and answers how many events it had.
  history(c, events) {
    for (const f of events) if (f && Number.isInteger(f.seq)) this.content(c, { ...f, conv: c.id });
    return events.length;
  }

  // acked shows an acked message at once, before its `message` frame arrives.
  acked(p, ack) {
    const c = this.conv(ack.conv || p.conv);
    this.content(c, { cmd: 'message', conv: c.id, seq: ack.seq, mid: p.mid, from: this.me, type: p.type, msg: p.msg, ts: ack.ts || p.ts });
    return c;
  }

  // unload forgets a conversation's events (they are fetched again when it is opened).
  unload(c) {
    Object.assign(c, { loaded: false, hasMore: true, msgs: new Map(), applied: new Set(), orphans: new Map() });
  }

  unread(f) {
    const c = this.convs.get(f.conv);
    if (!c) return null;
    c.unread = Math.max(0, f.count | 0);
    c.incoming = c.incoming.filter((s) => s > f.readSeq);
    return c;
  }

  typing(f) {
    const c = this.convs.get(f.conv);
    if (!c || f.user === this.me) return null;
    c.typers.set(f.user, Date.now() + 5000);
    return c;
  }

  typers(c) {
    const now = Date.now();
    for (const [u, until] of c.typers) if (until <= now) c.typers.delete(u);
    return [...c.typers.keys()];
  }

  setPresence(p) {
    if (p && p.user) this.presence.set(p.user, { status: p.status || 'offline', lastSeen: p.lastSeen || null });
  }

  status(user) { return this.presence.get(user)?.status || 'offline'; }
}

// applyRef applies an edit, delete or reaction to its message (in seq order).
function applyRef(m, e) {
  if (e.kind === 'edit' && e.seq > m.editSeq && !m.deleted) {
    m.msg = e.msg ?? m.msg;
    m.edited = true;
    m.editSeq = e.seq;
  } else if (e.kind === 'delete') {
    m.deleted = true;
    m.msg = '';
    m.reactions.clear();
  } else if (e.kind === 'react' && e.emoji && !m.deleted) {
    const users = m.reactions.get(e.emoji) || new Set();
    if (e.remove) users.delete(e.from);
    else users.add(e.from);
    if (users.size) m.reactions.set(e.emoji, users);
    else m.reactions.delete(e.emoji);
  }
  m.v++;
}
