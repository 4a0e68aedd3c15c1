// The console's only way to the gateway: the documented JSON API, with the officer's token
// in an Authorization header. The token is held in this module's memory only: never in web
// storage, a cookie or the address bar.

let token = null;
/** The last 401 that signed the officer out, to explain why. */
export let expiredNotice = null;
let expiresAt = null; // seconds since 1970, from the token's `exp` (for display only)
const listeners = new Set();

/** An error answer of the API (or a network failure), with what to show the officer. */
export class ApiError extends Error {
  constructor(status, code, message, requestId, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.details = details;
  }
}

function decodeExp(t) {
  try {
    const part = t.split('.')[1];
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const exp = JSON.parse(json).exp;
    return Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}

/** Signs in with `t` (kept in memory only). */
export function setToken(t) {
  token = t ? t.trim() : null;
  expiresAt = token ? decodeExp(token) : null;
  listeners.forEach((f) => f());
}

/** Forgets the token. */
export function signOut() {
  setToken(null);
}

/** Whether a token is held. */
export function signedIn() {
  return token !== null;
}

/** Seconds until the token expires (null: unknown). */
export function secondsLeft() {
  return expiresAt === null ? null : Math.floor(expiresAt - Date.now() / 1000);
}

/** Calls `f` whenever the token changes. */
export function onTokenChange(f) {
  listeners.add(f);
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

async function call(method, path, { params, body, accept = 'application/json' } = {}) {
  if (!token) throw new ApiError(401, 'token_missing', 'Sign in with a compliance officer\'s token first.', null);
  const headers = { Authorization: `Bearer ${token}`, Accept: accept };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path + query(params), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      redirect: 'error',
      referrerPolicy: 'no-referrer',
    });
  } catch (e) {
    throw new ApiError(0, 'network_error', `The gateway could not be reached (${e.message}).`, null);
  }
  const requestId = res.headers.get('Request-Id');
  if (!res.ok) {
    let code = `http_${res.status}`;
    let message = res.statusText || 'request failed';
    let details;
    try {
      const b = await res.json();
      code = b.code || code;
      message = b.message || message;
      details = b.details;
    } catch { /* not JSON */ }
    const err = new ApiError(res.status, code, message, requestId, details);
    if (res.status === 401) {
      // An expired or refused token is dropped: the officer signs in again.
      expiredNotice = err;
      setToken(null);
    }
    throw err;
  }
  return { res, requestId };
}

/** Clears the sign-out notice. */
export function clearExpiredNotice() {
  expiredNotice = null;
}

async function getJson(path, params) {
  const { res } = await call('GET', path, { params });
  return res.json();
}

async function postJson(path, body) {
  const { res } = await call('POST', path, { body });
  return res.json();
}

async function getText(path, params, accept = 'text/csv') {
  const { res } = await call('GET', path, { params, accept });
  return res.text();
}

const enc = encodeURIComponent;

// Every API path the console calls is below, each a documented route (a test checks these
// literals against the OpenAPI document).
export const api = {
  whoami: () => getJson('/v1/whoami'),
  overview: (params) => getJson('/v1/audit/overview', params),
  disclosures: (params) => getJson('/v1/disclosures', params),
  entry: (seq) => getJson(`/v1/disclosures/${enc(seq)}`),
  verify: () => getJson('/v1/audit/verify'),
  checkpoints: () => getJson('/v1/audit/checkpoints'),
  treeHead: () => getText('/v1/audit/checkpoint', undefined, 'text/plain'),
  accounting: (system, value) => getJson(`/v1/subjects/${enc(system)}/${enc(value)}/accounting`, { format: 'json' }),
  accountingCsv: (system, value) => getText(`/v1/subjects/${enc(system)}/${enc(value)}/accounting`, { format: 'csv' }),
  suspensions: () => getJson('/v1/accounting-suspensions'),
  reviews: (state) => getJson('/v1/reviews', { state }),
  review: (id) => getJson(`/v1/reviews/${enc(id)}`),
  closeReview: (id, outcome, note) => postJson(`/v1/reviews/${enc(id)}`, { outcome, note }),
  coverage: (system, value, params) => getJson(`/v1/subjects/${enc(system)}/${enc(value)}/coverage`, params),
  reports: () => getJson('/v1/reports'),
  report: (id, from, to) => getJson(`/v1/reports/${enc(id)}`, { from, to }),
  reportCsv: (id, from, to) => getText(`/v1/reports/${enc(id)}`, { from, to, format: 'csv' }),
};
