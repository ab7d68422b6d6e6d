// app.js: the page. Login screen, conversation list and chat view; wires the Client (transport,
// resume, outbox) to the Store (model) and renders. All server data is rendered as text.

import { $, h, icon, avatar, fmtTime, dayKey, dayLabel, listTime, fmtSize, linkify, toast, newMid } from './dom.js';
import * as api from './api.js';
import { Client } from './client.js';
import { Store, USER_RE, CONV_RE, isDM, dmId } from './store.js';

const SESSION_KEY = 'chat.session';
const EMOJI = ['👍', '❤️', '😂', '😮', '😢', '🎉'];
const PAGE = 50;
const MAX_MSG = 16384;

let session = null;   // {user, token, expiresAt, name?}
let client = null;
let store = null;
let openId = null;    // the conversation shown
let editing = null;   // seq of the message being edited
let typingSentAt = 0;
let expiryTimer = 0;
let idleTimer = 0;
let idleSent = false;
let refreshTimer = 0;
let typingTimer = 0;
let listWarned = false;
const nodes = new Map(); // the open conversation's rendered nodes by key

const el = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// Session: login, register, logout, expiry

function loadSession() {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY));
    if (s && s.user && s.token && !(Date.parse(s.expiresAt) <= Date.now())) return s;
  } catch { /* no session */ }
  return null;
}

function showLogin(message = '') {
  el('main').hidden = true;
  el('login-screen').hidden = false;
  el('login-error').textContent = message;
  document.title = 'eventchat';
  el('login-user').focus();
}

async function submitLogin(register) {
  const user = el('login-user').value.trim().toLowerCase();
  const password = el('login-password').value;
  const name = el('login-name').value.trim();
  const err = el('login-error');
  err.textContent = '';
  if (!user || !password) return void (err.textContent = 'Enter your user id and password.');
  if (register && !USER_RE.test(user)) return void (err.textContent = 'User ids use a-z, 0-9, _ and - (at most 64).');
  if (register && password.length < 8) return void (err.textContent = 'Passwords need at least 8 characters.');
  const buttons = el('login-form').querySelectorAll('button');
  buttons.forEach((b) => { b.disabled = true; });
  try {
    if (register) await api.register(user, password, name || undefined);
    const r = await api.login(user, password);
    const s = { user, token: r.token, expiresAt: r.expiresAt };
    if (name) s.name = name;
    localStorage.setItem(SESSION_KEY, JSON.stringify(s));
    el('login-password').value = '';
    startSession(s);
  } catch (e) {
    err.textContent = {
      401: 'Wrong user id or password.',
      409: 'That user id is taken. Choose another, or log in.',
      0: 'The server is not reachable. Try again.',
    }[e.status] || e.message;
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function endSession(message) {
  client?.stop();
  client = null;
  store = null;
  openId = null;
  clearTimeout(expiryTimer);
  localStorage.removeItem(SESSION_KEY);
  api.forgetAttachments();
  nodes.clear();
  el('messages').replaceChildren();
  el('conv-list').replaceChildren();
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  showLogin(message);
}

function startSession(s) {
  session = s;
  store = new Store(s.user);
  el('login-screen').hidden = true;
  el('main').hidden = false;
  el('me-name').textContent = s.name || s.user;
  el('me-avatar').replaceChildren(avatar(s.user, s.name || s.user));
  const forcePoll = new URLSearchParams(location.search).get('transport') === 'poll';
  client = new Client(s, { forcePoll, handlers: { frame: onFrame, state: renderConn, ready: onReady, acked: onAcked, outbox: onOutbox, failed: onFailed, reset: onReset, unauthorized: () => endSession('Your session has ended. Please log in again.') } });
  const left = Date.parse(s.expiresAt) - Date.now();
  if (Number.isFinite(left)) expiryTimer = setTimeout(() => endSession('Your session has expired. Please log in again.'), Math.min(left, 2 ** 31 - 1));
  renderConn('connecting');
  renderList();
  route();
  client.start();
}

// ---------------------------------------------------------------------------------------------
// Events from the client

function onFrame(f) {
  switch (f.cmd) {
    case 'message':
    case 'member': {
      if (typeof f.conv !== 'string' || !Number.isInteger(f.seq)) return;
      const wasKnown = store.convs.get(f.conv)?.known;
      const c = store.live(f);
      if (!c) return;
      if (!wasKnown || c.stale) scheduleRefresh();
      if (f.cmd === 'member' && f.user === session.user && f.action === 'left' && c.id === openId) location.hash = '';
      renderList();
      if (c.id === openId) {
        renderMessages();
        renderTyping();
        maybeMarkRead();
      }
      break;
    }
    case 'unread':
      if (store.unread(f)) renderList();
      break;
    case 'typing': {
      const c = store.typing(f);
      if (c && c.id === openId) renderTyping();
      if (c) renderList();
      break;
    }
    case 'presence':
      store.setPresence(f);
      renderList();
      renderHeader();
      break;
    case 'error':
      toast(f.errMsg || f.errCode);
      break;
  }
}

function onReady() {
  refreshConversations();
  if (openId) {
    const c = store.conv(openId);
    if (!c.loaded) loadHistory(c);
    else maybeMarkRead();
  }
  if (document.hidden) armIdle();
}

function onAcked(p, ack) {
  const c = store.acked(p, ack);
  if (c.id === openId || p.conv === openId) renderMessages(true);
}

function onOutbox(conv) {
  if (conv === openId) renderMessages(true);
}

function onFailed(p, e) {
  toast(`Message not sent: ${e.message}`);
}

function onReset() {
  for (const c of store.convs.values()) store.unload(c);
  nodes.clear();
  if (openId) renderMessages(true);
}

// scheduleRefresh asks for the conversation list soon (names of new conversations, previews).
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshConversations, 300);
}

async function refreshConversations() {
  if (!client?.ready) return;
  try {
    const r = await client.request({ cmd: 'conversations' });
    store.applyList(r.items || []);
    for (const c of store.convs.values()) c.stale = false;
    renderList();
    renderHeader();
    queryPresence();
  } catch (e) {
    if (e.code !== 'offline' && !listWarned) toast(`The conversation list is not available (${e.message}).`);
    listWarned = e.code !== 'offline';
  }
}

async function queryPresence() {
  const users = [...new Set(store.list().filter((c) => c.peer).map((c) => c.peer))].slice(0, 200);
  if (!users.length) return;
  try {
    const r = await client.request({ cmd: 'presence', users });
    (r.items || []).forEach((p) => store.setPresence(p));
    renderList();
    renderHeader();
  } catch { /* presence is a nicety */ }
}

// ---------------------------------------------------------------------------------------------
// Connection state

function renderConn(state) {
  const box = el('conn-state');
  box.dataset.state = state;
  el('conn-label').textContent = {
    ws: 'Online',
    poll: 'Online · long-poll',
    connecting: 'Connecting…',
    offline: 'Offline · reconnecting…',
  }[state] || state;
  box.title = state === 'offline' && client ? `Next attempt ${new Date(client.transport.retryAt).toLocaleTimeString()}` : '';
  el('offline-banner').hidden = state !== 'offline';
  renderHeader();
}

// ---------------------------------------------------------------------------------------------
// Routing: #/c/<conv> shows a conversation; anything else the list.

function route() {
  if (!store) return;
  const m = /^#\/c\/(.+)$/.exec(location.hash);
  let id = null;
  try { id = m ? decodeURIComponent(m[1]) : null; } catch { /* bad hash */ }
  if (id && CONV_RE.test(id) && (!isDM(id) || id.split(':').includes(session.user))) showChat(id);
  else showList();
}

const convHref = (id) => `#/c/${encodeURIComponent(id)}`;

function openConv(id) {
  if (location.hash === convHref(id)) route();
  else location.hash = convHref(id);
}

// dropDraft removes a draft DM that was opened but never used.
function dropDraft(id) {
  const c = id && store.convs.get(id);
  if (c && !c.known && !c.msgs.size && !client.pendingFor(id).length) store.convs.delete(id);
}

function showList() {
  if (openId) dropDraft(openId);
  openId = null;
  cancelEdit();
  el('main').dataset.view = 'list';
  el('chat-pane').hidden = true;
  el('chat-empty').hidden = false;
  renderList();
}

function showChat(id) {
  if (openId !== id) {
    if (openId) dropDraft(openId);
    openId = id;
    cancelEdit();
    nodes.clear();
    el('messages').replaceChildren();
    el('invite-form').hidden = true;
    el('composer-input').value = '';
    autosize();
    typingSentAt = 0;
  }
  const c = store.conv(id);
  el('main').dataset.view = 'chat';
  el('chat-empty').hidden = true;
  el('chat-pane').hidden = false;
  autosize();
  renderHeader();
  renderMessages(true);
  renderTyping();
  renderList();
  if (!c.loaded && client?.ready) loadHistory(c);
  maybeMarkRead();
  if (matchMedia('(min-width: 721px)').matches) el('composer-input').focus();
}

// ---------------------------------------------------------------------------------------------
// Conversation list

function preview(m) {
  if (!m) return '';
  const label = { image: '📷 Photo', audio: '🎤 Audio', file: '📎 File' }[m.type] || m.msg || '';
  if (m.from === session.user) return `You: ${label}`;
  return m.conv?.startsWith('g:') ? `${m.from}: ${label}` : label;
}

function convItem(c) {
  const typers = store.typers(c);
  const kids = [avatar(c.id, c.name)];
  if (c.peer) {
    const st = store.status(c.peer);
    kids.push(h('span', { class: 'presence-dot', 'data-testid': 'presence-dot', 'data-status': st, title: st }));
  }
  const badge = c.unread > 0 ? h('span', { class: 'unread-badge', 'data-testid': 'unread-badge', 'aria-label': `${c.unread} unread` }, c.unread > 99 ? '99+' : String(c.unread)) : null;
  const prev = typers.length ? h('span', { class: 'conv-preview typing-text' }, 'typing…')
    : h('span', { class: 'conv-preview' }, c.known ? preview(c.lastMessage) || (c.id.startsWith('g:') ? 'Group' : 'No messages yet') : 'New conversation');
  return h('li', null, h('a', {
    class: `conv-item${c.id === openId ? ' active' : ''}${c.unread ? ' has-unread' : ''}`,
    href: convHref(c.id), 'data-testid': 'conv-item', 'data-conv': c.id,
  },
  h('span', { class: 'conv-avatar' }, kids),
  h('span', { class: 'conv-main' },
    h('span', { class: 'conv-top' }, h('span', { class: 'conv-name' }, c.name), h('span', { class: 'conv-time' }, listTime(c.lastTs))),
    h('span', { class: 'conv-bottom' }, prev, badge))));
}

function renderList() {
  if (!store) return;
  const items = store.list();
  el('conv-list').replaceChildren(...items.map(convItem));
  el('conv-empty').hidden = items.length > 0;
  const n = store.totalUnread();
  document.title = n ? `(${n}) eventchat` : 'eventchat';
}

// ---------------------------------------------------------------------------------------------
// Chat header, typing indicator

function renderHeader() {
  if (!openId || !store) return;
  const c = store.conv(openId);
  el('chat-name').textContent = c.name;
  el('chat-avatar').replaceChildren(avatar(c.id, c.name));
  let sub;
  if (!client?.connected) sub = 'Connecting…';
  else if (c.peer) {
    const p = store.presence.get(c.peer);
    sub = p?.status === 'online' ? 'online' : p?.status === 'away' ? 'away'
      : p?.lastSeen ? `last seen ${listTime(p.lastSeen)}` : 'offline';
    sub = `@${c.peer} · ${sub}`;
  } else sub = `Group · ${c.id}`;
  el('chat-sub').textContent = sub;
  el('chat-sub').dataset.status = c.peer ? store.status(c.peer) : '';
  el('group-actions').hidden = !c.id.startsWith('g:') || !c.known;
}

function renderTyping() {
  clearTimeout(typingTimer);
  const box = el('typing');
  const c = openId && store.convs.get(openId);
  const users = c ? store.typers(c) : [];
  const name = (u) => (c.peer === u ? c.name : u);
  box.textContent = !users.length ? ''
    : users.length === 1 ? `${name(users[0])} is typing…`
      : users.length === 2 ? `${name(users[0])} and ${name(users[1])} are typing…`
        : `${users.length} people are typing…`;
  if (users.length) typingTimer = setTimeout(() => { renderTyping(); renderList(); }, 1000);
}

// ---------------------------------------------------------------------------------------------
// Messages: history, rendering (keyed, so media elements survive updates), read markers

async function loadHistory(c) {
  if (c.loading) return;
  c.loading = true;
  c.loaded = true; // live events from now on are kept; history fills in before them
  renderMessages(true);
  try {
    const r = await client.request({ cmd: 'history', conv: c.id, limit: PAGE });
    c.hasMore = store.history(c, r.messages || []) >= PAGE;
    if (c.msgs.size) c.known = true;
  } catch (e) {
    if ((e.code === 'forbidden' || e.code === 'not_found') && c.peer && !c.known) c.hasMore = false; // a new direct conversation
    else {
      store.unload(c);
      if (e.code !== 'offline') toast(`Could not load messages: ${e.message}`);
    }
  } finally {
    c.loading = false;
  }
  if (c.id === openId) {
    renderMessages(true);
    fillScreen(c);
    maybeMarkRead();
  }
}

// fillScreen loads older pages while the messages do not fill the pane (nothing to scroll yet).
function fillScreen(c) {
  const box = el('messages');
  if (c.id === openId && c.hasMore && box.scrollHeight <= box.clientHeight + 10) loadOlder(c);
}

async function loadOlder(c) {
  if (!c.loaded || c.loading || c.loadingOlder || !c.hasMore || !client?.ready) return;
  const seqs = [...c.msgs.keys()];
  if (!seqs.length) return;
  c.loadingOlder = true;
  const box = el('messages');
  try {
    const r = await client.request({ cmd: 'history', conv: c.id, before: Math.min(...seqs), limit: PAGE });
    const fromBottom = box.scrollHeight - box.scrollTop;
    c.hasMore = store.history(c, r.messages || []) >= PAGE;
    if (c.id === openId) {
      renderMessages();
      box.scrollTop = box.scrollHeight - fromBottom; // keep what the reader was looking at
      setTimeout(() => fillScreen(c), 0);
    }
  } catch (e) {
    if (e.code !== 'offline') toast(`Could not load older messages: ${e.message}`);
  } finally {
    c.loadingOlder = false;
  }
}

function cached(key, make) {
  let n = nodes.get(key);
  if (!n) nodes.set(key, (n = make()));
  return n;
}

function renderMessages(toBottom = false) {
  if (!openId || !store) return;
  const c = store.conv(openId);
  const box = el('messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const msgs = [...c.msgs.values()].sort((a, b) => a.seq - b.seq);
  const pending = client ? client.pendingFor(c.id) : [];
  const want = [];
  if (c.loaded && !c.hasMore && msgs.length) want.push(cached('start', () => h('div', { class: 'system start' }, 'This is the beginning of the conversation.')));
  if (c.loadingOlder || c.loading) want.push(cached('loading', () => h('div', { class: 'system loading' }, 'Loading…')));
  if (!msgs.length && !pending.length && !c.loading) {
    want.push(cached(`empty:${c.loaded}`, () => h('div', { class: 'empty-chat' },
      h('p', null, c.loaded ? 'No messages yet.' : 'Connecting…'), h('p', { class: 'muted' }, 'Say hello 👋'))));
  }
  let day = null, prev = null;
  for (const m of msgs) {
    const d = dayKey(m.ts);
    if (d !== day) {
      day = d;
      prev = null;
      want.push(cached(`day:${d}`, () => h('div', { class: 'day-sep' }, h('span', null, dayLabel(m.ts)))));
    }
    want.push(m.kind === 'member' ? cached(`s${m.seq}`, () => memberNode(m)) : msgNode(c, m, prev));
    prev = m;
  }
  for (const p of pending) want.push(pendingNode(p));
  // Reconcile: move or insert the wanted nodes in order, drop the rest.
  let cur = box.firstChild;
  for (const n of want) {
    if (n === cur) cur = cur.nextSibling;
    else box.insertBefore(n, cur);
  }
  while (cur) {
    const next = cur.nextSibling;
    cur.remove();
    cur = next;
  }
  if (toBottom || atBottom) box.scrollTop = box.scrollHeight;
}

function memberNode(m) {
  const who = m.user === session.user ? 'You' : m.user;
  const by = m.by === session.user ? 'You' : m.by;
  let text;
  if (m.action === 'left') text = `${who} left`;
  else if (m.action === 'invited') text = by && m.by !== m.user ? `${by} invited ${m.user === session.user ? 'you' : m.user}` : `${who} joined`;
  else text = by && m.by !== m.user ? `${by} added ${m.user === session.user ? 'you' : m.user}` : `${who} joined`;
  return h('div', { class: 'system member', 'data-testid': 'member-event', 'data-seq': m.seq }, text);
}

function msgNode(c, m, prev) {
  const key = `m${m.seq}`;
  let n = nodes.get(key);
  if (!n) {
    n = buildMsg(c, m);
    nodes.set(key, n);
  }
  if (n._v !== m.v) {
    updateMsg(n, m);
    n._v = m.v;
  }
  const cont = prev && prev.kind !== 'member' && prev.from === m.from && Date.parse(m.ts) - Date.parse(prev.ts) < 5 * 60e3;
  n.classList.toggle('cont', !!cont);
  return n;
}

function buildMsg(c, m) {
  const own = m.from === session.user;
  const n = h('div', { class: `msg ${own ? 'own' : 'other'}`, 'data-testid': 'message', 'data-seq': m.seq, 'data-from': m.from, 'data-mid': m.mid });
  const body = h('div', { class: 'body' });
  const edited = h('span', { class: 'edited' });
  const bubble = h('div', { class: 'bubble' },
    !own && !isDM(c.id) ? h('div', { class: 'sender' }, m.from) : null,
    body,
    h('div', { class: 'meta' },
      m.tid ? h('span', { class: 'private' }, `private · ${m.from === session.user ? m.tid : 'to you'}`) : null,
      edited,
      h('time', { datetime: m.ts, title: new Date(m.ts).toLocaleString() }, fmtTime(m.ts))));
  const reactions = h('div', { class: 'reactions' });
  const actions = h('div', { class: 'actions' },
    actionBtn('react-menu', 'smile', 'React', 'msg-react'),
    own && m.type === 'text' ? actionBtn('edit', 'edit', 'Edit', 'msg-edit') : null,
    own ? actionBtn('delete', 'trash', 'Delete', 'msg-delete') : null);
  n.append(bubble, reactions, actions);
  n._parts = { body, edited, reactions, actions };
  return n;
}

function actionBtn(action, ic, label, testid) {
  return h('button', { type: 'button', class: 'act', 'data-action': action, title: label, 'aria-label': label, 'data-testid': testid }, icon(ic, 18));
}

function updateMsg(n, m) {
  const { body, edited, reactions, actions } = n._parts;
  if (m.deleted) {
    n.classList.add('deleted');
    body.replaceChildren(h('span', { class: 'text', 'data-testid': 'message-text' }, 'message deleted'));
    edited.textContent = '';
    reactions.replaceChildren();
    actions.remove();
    return;
  }
  if (m.type === 'text' || !['image', 'audio', 'file'].includes(m.type)) {
    body.replaceChildren(h('span', { class: 'text', 'data-testid': 'message-text' }, linkify(m.msg)));
  } else if (!body.firstChild) {
    body.append(attachmentNode(m));
  }
  edited.textContent = m.edited ? '(edited)' : '';
  reactions.replaceChildren(...[...m.reactions].map(([emoji, users]) => {
    const mine = users.has(session.user);
    return h('button', {
      type: 'button', class: `chip${mine ? ' mine' : ''}`, 'data-action': 'react', 'data-emoji': emoji,
      'data-mine': String(mine), 'data-testid': 'reaction', title: [...users].join(', '),
      'aria-label': mine ? `Remove your ${emoji} reaction` : `React with ${emoji}`,
    }, emoji, h('span', { class: 'count' }, String(users.size)));
  }));
}

function pendingNode(p) {
  return cached(`p${p.mid}:${p.state}`, () => {
    const failed = p.state === 'failed';
    const body = p.type === 'text' ? h('span', { class: 'text', 'data-testid': 'message-text' }, p.msg)
      : h('span', { class: 'text muted' }, { image: '📷 Photo', audio: '🎤 Audio', file: '📎 File' }[p.type]);
    return h('div', { class: `msg own pending${failed ? ' failed' : ''}`, 'data-testid': 'message', 'data-pending': 'true', 'data-from': session.user, 'data-mid': p.mid },
      h('div', { class: 'bubble' }, h('div', { class: 'body' }, body),
        h('div', { class: 'meta' }, failed
          ? [h('span', { class: 'status' }, `not sent: ${p.error || 'error'}`), h('button', { type: 'button', class: 'link', 'data-action': 'discard', 'data-mid': p.mid }, 'dismiss')]
          : h('span', { class: 'status', 'data-testid': 'sending' }, 'sending…'))));
  });
}

// Attachments: images inline, audio with a player, files as a download button with name and size.
function attachmentNode(m) {
  const id = m.msg;
  if (/^https?:\/\//i.test(id)) return h('a', { href: id, target: '_blank', rel: 'noopener noreferrer nofollow', class: 'att-link' }, id);
  if (m.type === 'image') {
    const img = h('img', { class: 'att-image', alt: 'Image', 'data-testid': 'attachment-image', 'data-att': id });
    const wrap = h('button', { type: 'button', class: 'att-image-wrap loading', 'data-action': 'view-image', 'aria-label': 'Open image' }, img);
    api.attachment(session.token, id).then((a) => {
      img.addEventListener('load', () => wrap.classList.remove('loading'), { once: true });
      img.src = a.url;
    }, (e) => wrap.replaceWith(h('span', { class: 'att-error' }, `Image unavailable (${api.attachmentError(e)})`)));
    return wrap;
  }
  if (m.type === 'audio') {
    const audio = h('audio', { controls: true, preload: 'metadata', class: 'att-audio', 'data-testid': 'attachment-audio' });
    api.attachment(session.token, id).then((a) => { audio.src = a.url; },
      (e) => audio.replaceWith(h('span', { class: 'att-error' }, `Audio unavailable (${api.attachmentError(e)})`)));
    return audio;
  }
  const name = h('span', { class: 'att-name' }, 'File');
  const size = h('span', { class: 'att-size' });
  api.attachmentInfo(session.token, id).then((i) => {
    name.textContent = i.name || 'File';
    size.textContent = fmtSize(i.size);
  }, () => { size.textContent = 'unavailable'; });
  return h('button', { type: 'button', class: 'att-file', 'data-action': 'download', 'data-att': id, 'data-testid': 'attachment-file' },
    icon('file', 22), h('span', { class: 'att-info' }, name, size));
}

async function download(id) {
  try {
    const a = await api.attachment(session.token, id);
    const link = h('a', { href: a.url, download: a.name || 'download' });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (e) {
    toast(api.attachmentError(e));
  }
}

// maybeMarkRead sends `read` for the newest event when the conversation is open, scrolled to the
// bottom and the page visible.
function maybeMarkRead() {
  if (!openId || !client?.ready || document.visibilityState !== 'visible') return;
  const c = store.conv(openId);
  if (!c.loaded || !c.known || c.loading) return;
  const box = el('messages');
  if (box.scrollHeight - box.scrollTop - box.clientHeight > 120) return;
  const top = Math.max(0, ...c.msgs.keys());
  if (c.unread) {
    c.unread = 0;
    c.incoming = [];
    renderList();
  }
  if (top <= c.readSent) return;
  c.readSent = top;
  client.request({ cmd: 'read', conv: c.id, seq: top }).catch(() => { c.readSent = 0; });
}

// ---------------------------------------------------------------------------------------------
// Composer: send, edit, typing, attachments

function autosize() {
  const t = el('composer-input');
  t.style.height = 'auto';
  // Hidden (scrollHeight 0): leave the stylesheet's height; else fit the text, borders included.
  t.style.height = t.scrollHeight ? `${Math.min(t.scrollHeight + t.offsetHeight - t.clientHeight, 160)}px` : '';
}

function startEdit(seq) {
  const m = store.conv(openId).msgs.get(seq);
  if (!m || m.deleted || m.from !== session.user) return;
  editing = seq;
  el('edit-banner').hidden = false;
  el('composer').classList.add('editing');
  const t = el('composer-input');
  t.value = m.msg;
  autosize();
  t.focus();
  t.setSelectionRange(t.value.length, t.value.length);
}

function cancelEdit() {
  if (editing == null) return;
  editing = null;
  el('edit-banner').hidden = true;
  el('composer').classList.remove('editing');
  el('composer-input').value = '';
  autosize();
}

function submitComposer() {
  const t = el('composer-input');
  const text = t.value.replace(/^\s*\n/, '').trimEnd(); // no blank lines around a message
  if (!openId || !text.trim()) return;
  if (new TextEncoder().encode(text).length > MAX_MSG) return toast('That message is too long (16 KiB at most).');
  const c = store.conv(openId);
  if (editing != null) {
    const seq = editing, old = c.msgs.get(seq);
    cancelEdit();
    if (old && old.msg !== text) {
      client.request({ cmd: 'edit', conv: c.id, seq, msg: text, mid: newMid() }).catch((e) => toast(`Could not edit: ${e.message}`));
    }
    return;
  }
  client.sendMessage({ conv: c.id, to: c.known ? undefined : c.peer || undefined, type: 'text', msg: text });
  t.value = '';
  autosize();
  typingSentAt = 0;
}

function onComposerInput() {
  autosize();
  const c = openId && store.convs.get(openId);
  if (!c || !c.known || editing != null || !el('composer-input').value) return;
  if (Date.now() - typingSentAt > 3000) {
    typingSentAt = Date.now();
    client.send({ cmd: 'typing', conv: c.id });
  }
}

async function uploadFiles(files) {
  const c = openId && store.conv(openId);
  if (!c) return;
  for (const file of files) {
    try {
      const a = await api.uploadAttachment(session.token, c.id, file);
      const ct = a.contentType || file.type || '';
      const type = ct.startsWith('image/') ? 'image' : ct.startsWith('audio/') ? 'audio' : 'file';
      client.sendMessage({ conv: c.id, to: c.known ? undefined : c.peer || undefined, type, msg: a.id });
    } catch (e) {
      toast(`${file.name}: ${api.attachmentError(e)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Actions on messages, groups and new conversations

function onMessagesClick(ev) {
  const act = ev.target.closest('[data-action]');
  const msgEl = ev.target.closest('.msg');
  if (!act) {
    // Touch screens have no hover: a tap on a message shows its actions.
    if (msgEl && !msgEl.classList.contains('pending') && !matchMedia('(hover: hover)').matches) {
      for (const o of el('messages').querySelectorAll('.msg.show-actions')) if (o !== msgEl) o.classList.remove('show-actions');
      msgEl.classList.toggle('show-actions');
    }
    return;
  }
  const seq = Number(msgEl?.dataset.seq);
  const conv = openId;
  switch (act.dataset.action) {
    case 'react-menu': {
      const open = msgEl.querySelector('.picker');
      if (open) return open.remove();
      msgEl.append(h('div', { class: 'picker', role: 'menu' }, EMOJI.map((e) => h('button', {
        type: 'button', class: 'emoji', 'data-action': 'react', 'data-emoji': e, 'data-testid': 'react-option', 'aria-label': `React with ${e}`,
      }, e))));
      return;
    }
    case 'react': {
      const m = store.conv(conv).msgs.get(seq);
      const remove = !!m?.reactions.get(act.dataset.emoji)?.has(session.user);
      msgEl.querySelector('.picker')?.remove();
      const f = { cmd: 'react', conv, seq, emoji: act.dataset.emoji, mid: newMid() };
      if (remove) f.remove = true;
      client.request(f).catch((e) => toast(`Could not react: ${e.message}`));
      return;
    }
    case 'edit':
      return startEdit(seq);
    case 'delete':
      // Two taps: the first arms the button for 3 s.
      if (!act.classList.contains('confirm')) {
        act.classList.add('confirm');
        act.title = 'Tap again to delete';
        setTimeout(() => act.classList.remove('confirm'), 3000);
        return;
      }
      if (editing === seq) cancelEdit();
      client.request({ cmd: 'delete', conv, seq, mid: newMid() }).catch((e) => toast(`Could not delete: ${e.message}`));
      return;
    case 'view-image': {
      const img = act.querySelector('img');
      if (!img?.src) return;
      el('lightbox-img').src = img.src;
      el('lightbox').hidden = false;
      return;
    }
    case 'download':
      return download(act.dataset.att);
    case 'discard':
      return client.discard(act.dataset.mid);
  }
}

function openDM(ev) {
  ev.preventDefault();
  const input = el('new-dm-user');
  const user = input.value.trim().toLowerCase();
  if (!USER_RE.test(user)) return toast('User ids use a-z, 0-9, _ and - (at most 64).');
  if (user === session.user) return toast('That is you. Message someone else.');
  input.value = '';
  const id = dmId(session.user, user);
  store.conv(id);
  openConv(id);
}

async function createGroup(ev) {
  ev.preventDefault();
  const gid = el('new-group-id').value.trim().toLowerCase();
  const name = el('new-group-name').value.trim();
  const members = [...new Set(el('new-group-members').value.toLowerCase().split(/[\s,;]+/).filter(Boolean))].filter((u) => u !== session.user);
  if (!USER_RE.test(gid)) return toast('Group ids use a-z, 0-9, _ and - (at most 64).');
  const bad = members.find((u) => !USER_RE.test(u));
  if (bad) return toast(`"${bad}" is not a valid user id.`);
  const conv = `g:${gid}`;
  const f = { cmd: 'create', conv, members };
  if (name) f.name = name;
  try {
    await client.request(f);
    const c = store.conv(conv);
    c.known = true;
    if (name) c.name = name;
    el('new-group-form').reset();
    el('new-group').open = false;
    openConv(conv);
    scheduleRefresh();
  } catch (e) {
    toast(e.code === 'conflict' ? 'That group id is taken.' : `Could not create the group: ${e.message}`);
  }
}

async function invite(ev) {
  ev.preventDefault();
  const user = el('invite-user').value.trim().toLowerCase();
  if (!USER_RE.test(user)) return toast('Enter a valid user id.');
  try {
    await client.request({ cmd: 'invite', conv: openId, user });
    el('invite-user').value = '';
    el('invite-form').hidden = true;
    toast(`${user} was invited.`, 'info');
  } catch (e) {
    toast(`Could not invite ${user}: ${e.message}`);
  }
}

async function leaveGroup() {
  const btn = el('leave-group');
  if (!btn.classList.contains('confirm')) {
    btn.classList.add('confirm');
    btn.title = 'Click again to leave the group';
    setTimeout(() => { btn.classList.remove('confirm'); btn.title = 'Leave group'; }, 3000);
    return;
  }
  btn.classList.remove('confirm');
  const conv = openId;
  try {
    await client.request({ cmd: 'leave', conv });
    const c = store.conv(conv);
    c.gone = true;
    store.unload(c);
    location.hash = '';
    toast('You left the group.', 'info');
  } catch (e) {
    toast(`Could not leave: ${e.message}`);
  }
}

// Away after two minutes with the page hidden (the `activity` extension); active again when seen.
function armIdle() {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    if (document.hidden && client?.ready) {
      idleSent = true;
      client.request({ cmd: 'activity', idle: true }).catch(() => {});
    }
  }, 120e3);
}

function onVisibility() {
  if (document.hidden) return armIdle();
  clearTimeout(idleTimer);
  if (idleSent && client?.ready) client.request({ cmd: 'activity', idle: false }).catch(() => {});
  idleSent = false;
  maybeMarkRead();
}

// ---------------------------------------------------------------------------------------------
// Wiring

function bind() {
  for (const n of document.querySelectorAll('[data-icon]')) n.prepend(icon(n.dataset.icon));
  el('login-form').addEventListener('submit', (e) => { e.preventDefault(); submitLogin(false); });
  el('register-submit').addEventListener('click', () => submitLogin(true));
  el('logout').addEventListener('click', () => endSession(''));
  el('new-dm-form').addEventListener('submit', openDM);
  el('new-group-form').addEventListener('submit', createGroup);
  el('invite-toggle').addEventListener('click', () => {
    const f = el('invite-form');
    f.hidden = !f.hidden;
    if (!f.hidden) el('invite-user').focus();
  });
  el('invite-form').addEventListener('submit', invite);
  el('leave-group').addEventListener('click', leaveGroup);
  el('composer').addEventListener('submit', (e) => { e.preventDefault(); submitComposer(); });
  const input = el('composer-input');
  let enterAt = 0;
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      enterAt = Date.now();
      submitComposer();
    } else if (e.key === 'Escape' && editing != null) {
      e.preventDefault();
      cancelEdit();
    }
  });
  // Some input paths (automation, IMEs) deliver the Enter's line break apart from its keydown.
  input.addEventListener('keypress', (e) => { if (e.key === 'Enter' && !e.shiftKey) e.preventDefault(); });
  input.addEventListener('beforeinput', (e) => {
    if ((e.inputType === 'insertLineBreak' || e.inputType === 'insertParagraph') && Date.now() - enterAt < 500) e.preventDefault();
  });
  input.addEventListener('input', onComposerInput);
  el('edit-cancel').addEventListener('click', cancelEdit);
  el('attach-input').addEventListener('change', (e) => {
    const files = [...e.target.files];
    e.target.value = '';
    uploadFiles(files);
  });
  const box = el('messages');
  box.addEventListener('click', onMessagesClick);
  let ticking = false;
  box.addEventListener('scroll', () => {
    if (ticking) return;
    ticking = true;
    requestAnimationFrame(() => {
      ticking = false;
      const c = openId && store?.convs.get(openId);
      if (c && box.scrollTop < 120) loadOlder(c);
      maybeMarkRead();
    });
  });
  el('lightbox').addEventListener('click', () => { el('lightbox').hidden = true; });
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') el('lightbox').hidden = true; });
  document.addEventListener('visibilitychange', onVisibility);
  window.addEventListener('hashchange', route);
}

window.chatDebug = {
  transport: () => client?.transport.kind ?? null,
  lastSeq: () => client?.lastSeq ?? 0,
  state: () => client?.transport.state ?? 'offline',
};

bind();
const saved = loadSession();
if (saved) startSession(saved);
else showLogin(localStorage.getItem(SESSION_KEY) ? 'Your session has expired. Please log in again.' : '');
