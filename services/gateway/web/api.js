// api.js: the HTTP side of the protocol: register, login, and attachments (upload, download with
// the Bearer header into blob URLs; the token never goes into a URL).

export class ApiError extends Error {
  constructor(status, code, msg) {
    super(msg || code);
    this.status = status;
    this.code = code;
  }
}

const CODES = { 400: 'bad_request', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found', 409: 'conflict',
  413: 'too_large', 415: 'unsupported_type', 429: 'rate_limited', 503: 'unavailable' };

async function call(path, { method = 'GET', json, body, headers = {}, token } = {}) {
  const hdrs = { ...headers };
  if (json !== undefined) {
    hdrs['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  if (token) hdrs.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, { method, headers: hdrs, body, cache: 'no-store', credentials: 'omit' });
  } catch {
    throw new ApiError(0, 'offline', 'The server is not reachable.');
  }
  if (res.ok) return res;
  let data = null;
  try { data = await res.json(); } catch { /* not JSON */ }
  throw new ApiError(res.status, data?.errCode || CODES[res.status] || 'internal', data?.errMsg || res.statusText);
}

export async function register(user, password, name) {
  const json = name ? { user, password, name } : { user, password };
  return (await call('/v1/register', { method: 'POST', json })).json();
}

export async function login(user, password) {
  return (await call('/v1/login', { method: 'POST', json: { user, password } })).json();
}

// uploadAttachment: POST /v1/attachments?conv=&name= with the raw bytes and the file's type;
// answers 201 {id, contentType, size, name}.
export async function uploadAttachment(token, conv, file) {
  const q = new URLSearchParams({ conv, name: file.name || 'file' });
  const res = await call(`/v1/attachments?${q}`, {
    method: 'POST', token, body: file,
    headers: { 'Content-Type': file.type || 'application/octet-stream' },
  });
  const meta = await res.json();
  info.set(meta.id, Promise.resolve({ type: meta.contentType, size: meta.size, name: meta.name || file.name }));
  return meta;
}

// The file name of a Content-Disposition header (RFC 6266: filename* first).
function dispositionName(v) {
  if (!v) return '';
  let m = /filename\*\s*=\s*[\w-]+'[^']*'([^;]+)/i.exec(v);
  if (m) try { return decodeURIComponent(m[1].trim()); } catch { /* fall through */ }
  m = /filename\s*=\s*"((?:[^"\\]|\\.)*)"/i.exec(v) || /filename\s*=\s*([^;]+)/i.exec(v);
  return m ? m[1].replace(/\\(.)/g, '$1').trim() : '';
}

const metaOf = (res) => ({
  type: res.headers.get('Content-Type') || '',
  size: Number(res.headers.get('Content-Length') ?? NaN),
  name: dispositionName(res.headers.get('Content-Disposition')),
});

const blobs = new Map(); // id -> Promise<{url, type, size, name}>
const info = new Map();  // id -> Promise<{type, size, name}>

const path = (id) => `/v1/attachments/${encodeURIComponent(id)}`;

// attachment fetches an attachment once per page and answers a blob: URL for it.
export function attachment(token, id) {
  if (!blobs.has(id)) {
    const p = call(path(id), { token }).then(async (res) => {
      const meta = metaOf(res);
      const blob = await res.blob();
      return { ...meta, size: blob.size, url: URL.createObjectURL(blob) };
    });
    p.catch(() => blobs.delete(id)); // a failure can be retried later
    blobs.set(id, p);
  }
  return blobs.get(id);
}

// attachmentInfo answers name, type and size without downloading (HEAD).
export function attachmentInfo(token, id) {
  if (!info.has(id)) {
    const p = call(path(id), { method: 'HEAD', token }).then(metaOf);
    p.catch(() => info.delete(id));
    info.set(id, p);
  }
  return info.get(id);
}

// forgetAttachments releases every blob URL (on logout).
export function forgetAttachments() {
  for (const p of blobs.values()) p.then((a) => URL.revokeObjectURL(a.url), () => {});
  blobs.clear();
  info.clear();
}

// A readable sentence for an upload or download failure.
export function attachmentError(e) {
  switch (e.status) {
    case 413: return 'That file is too large to send.';
    case 415: return 'That type of file cannot be sent.';
    case 403: return 'You cannot share files in this conversation.';
    case 404: return 'That attachment no longer exists.';
    case 401: return 'Your session has expired.';
    case 0: return 'The server is not reachable. Try again.';
    default: return `The file could not be sent (${e.message}).`;
  }
}
