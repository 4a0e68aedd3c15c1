// The console's pages. Each states what it shows and when it was loaded, reads through the
// documented API only (api.js), and shows API errors with their message and Request-Id.

import { api, ApiError } from './api.js';
import { h, append, clear, table, field, time, shortHex } from './dom.js';
import { stackedBars, dayRange } from './charts.js';

/** The page frame: heading (focused for screen readers), what it shows, when it was loaded. */
function page(main, title, what) {
  clear(main);
  const heading = h('h1', { tabindex: '-1' }, title);
  const loaded = h('p', { class: 'loaded' }, 'Loading…');
  main.append(heading, h('p', { class: 'what' }, what), loaded);
  heading.focus();
  document.title = `${title} · compliance console`;
  return {
    done() {
      loaded.textContent = '';
      loaded.append('Loaded at ', time(new Date().toISOString()), ' (UTC).');
    },
  };
}

/** An error box: the API's message, its code and the Request-Id to quote. */
export function errorBox(e) {
  const box = h('div', { class: 'error', role: 'alert' });
  if (e instanceof ApiError) {
    append(box, [
      h('p', {}, h('strong', {}, `Error ${e.status || ''} `), h('code', {}, e.code), ': ', e.message),
      e.requestId ? h('p', {}, 'Request-Id: ', h('code', { class: 'request-id' }, e.requestId), ' (quote it when reporting a problem)') : null,
    ]);
  } else {
    box.append(h('p', {}, String(e && e.message ? e.message : e)));
  }
  return box;
}

async function guarded(main, f) {
  try {
    await f();
  } catch (e) {
    // A refused token signs out: the sign-in page says why (app.js).
    if (e instanceof ApiError && e.status === 401) return;
    main.append(errorBox(e));
  }
}

function basisText(b) {
  if (!b) return '';
  if (b.type === 'mou') return `MOU ${b.mou_id} rule ${b.rule}`;
  if (b.type === 'consent') return `consent ${b.consent_id}`;
  if (b.type === 'emergency') return `emergency (${b.stated_basis})`;
  return JSON.stringify(b);
}

function fieldsText(e) {
  return (e.fields_disclosed || []).map((f) => (f.transform === 'reveal' ? f.field : `${f.field} (${f.transform})`)).join(', ');
}

function outcomeCell(e) {
  return h('span', { class: `outcome outcome-${e.outcome}` }, e.outcome === 'deny' ? `deny: ${e.reason || ''}` : 'permit');
}

function entryRows(entries) {
  return entries.map((e) => [
    h('a', { href: `#/entry/${e.seq}`, 'aria-label': `entry ${e.seq}` }, String(e.seq)),
    time(e.at),
    e.recipient_partner || '',
    e.recipient_user || '',
    e.purpose || '',
    basisText(e.basis),
    outcomeCell(e),
    e.record ? `${e.record.kind} ${e.record.id}` : '',
    fieldsText(e),
  ]);
}

const ENTRY_HEADERS = ['#', 'time (UTC)', 'recipient', 'user', 'purpose', 'basis', 'outcome', 'record', 'fields disclosed'];

// ---------------------------------------------------------------------------------------
// Overview

export async function overview(main, params) {
  const p = page(main, 'Overview', 'Disclosures per day by recipient, purpose and outcome over the chosen period; denials; emergency accesses and open reviews; the size of the disclosure log and its last verification. Counts only: no person is named here.');
  const days = Number(params.get('days') || 30);
  const form = h('form', { class: 'inline', 'aria-label': 'period' });
  const select = h('select', { name: 'days' },
    [7, 30, 90, 365].map((d) => h('option', { value: d, selected: d === days }, `last ${d} days`)));
  form.append(field('Period', select), h('button', { type: 'submit' }, 'Show'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = `#/overview?days=${select.value}`;
  });
  main.append(form);
  await guarded(main, async () => {
    const until = new Date();
    const since = new Date(until.getTime() - days * 86400000);
    const o = await api.overview({ since: since.toISOString(), until: until.toISOString() });
    const t = o.totals;
    main.append(h('ul', { class: 'tiles', 'aria-label': 'totals' },
      h('li', {}, h('span', { class: 'n', id: 'tile-disclosures' }, t.disclosures), ' disclosures'),
      h('li', {}, h('span', { class: 'n', id: 'tile-denials' }, t.denials), ' denials'),
      h('li', {}, h('span', { class: 'n' }, t.emergency_accesses), ' emergency accesses'),
      h('li', {}, h('a', { href: '#/reviews' }, h('span', { class: 'n', id: 'tile-open-reviews' }, o.reviews.open), ' open reviews')),
      h('li', {}, h('span', { class: 'n', id: 'tile-log-size' }, o.log.entries), ' log entries'),
      h('li', {}, o.last_verification
        ? [h('a', { href: `#/entry/${o.last_verification.seq}` }, o.last_verification.ok ? 'chain verified' : 'chain FAILED'), ' ', time(o.last_verification.at)]
        : h('a', { href: '#/verify' }, 'never verified: verify now'))));
    const range = dayRange(o.period.from, o.period.to);
    const by = (key) => {
      const data = {};
      const series = new Set();
      for (const d of o.days) {
        if (key !== 'outcome' && d.outcome !== 'permit') continue;
        const k = d[key] || '(none)';
        series.add(k);
        data[d.day] = data[d.day] || {};
        data[d.day][k] = (data[d.day][k] || 0) + d.count;
      }
      return { data, series: [...series].sort() };
    };
    const rec = by('recipient');
    main.append(stackedBars({ id: 'chart-recipient', title: 'Disclosures per day by recipient', description: `Permitted disclosures per UTC day from ${o.period.from} to ${o.period.to}, stacked by recipient partner.`, days: range, ...rec }));
    const pur = by('purpose');
    main.append(stackedBars({ id: 'chart-purpose', title: 'Disclosures per day by purpose', description: 'Permitted disclosures per UTC day, stacked by purpose of use.', days: range, ...pur }));
    const out = by('outcome');
    main.append(stackedBars({ id: 'chart-outcome', title: 'Requests per day by outcome (permits and denials)', description: 'Disclosure requests per UTC day, stacked by outcome: permit or deny.', days: range, ...out }));
    p.done();
  });
}

// ---------------------------------------------------------------------------------------
// Search

const SEARCH_FIELDS = [
  ['subject_system', 'Subject identifier system', 'e.g. metro-pd or county-mh; turned into its pseudonym by the gateway'],
  ['subject_value', 'Subject identifier value', 'e.g. P-2231'],
  ['recipient', 'Recipient partner', 'e.g. county-mh'],
  ['user', 'User', 'the recipient user id'],
  ['purpose', 'Purpose', 'e.g. treatment'],
];

export async function search(main, params) {
  const p = page(main, 'Search the disclosure log', 'Entries of the disclosure log that match every filter given, newest first. A subject\'s identifier is turned into its pseudonym by the gateway; the log never holds it.');
  const form = h('form', { class: 'search', 'aria-label': 'filters' });
  const inputs = {};
  for (const [name, label, hint] of SEARCH_FIELDS) {
    inputs[name] = h('input', { name, value: params.get(name) || '', autocomplete: 'off' });
    form.append(field(label, inputs[name], hint));
  }
  const sel = (name, label, options) => {
    inputs[name] = h('select', { name }, options.map(([v, t]) => h('option', { value: v, selected: (params.get(name) || '') === v }, t)));
    form.append(field(label, inputs[name]));
  };
  sel('basis', 'Legal basis', [['', 'any'], ['mou', 'MOU'], ['consent', 'consent'], ['emergency', 'emergency']]);
  sel('outcome', 'Outcome', [['', 'any'], ['permit', 'permit'], ['deny', 'deny']]);
  sel('kind', 'Entry kind', [['', 'disclosures'], ['all', 'all kinds'], ['log_read', 'log reads'], ['log_verified', 'verifications'], ['consent_changed', 'consent changes'], ['consent_read', 'consent reads'], ['record_changed', 'record writes'], ['emergency_reviewed', 'review outcomes'], ['authentication_failed', 'failed authentications'], ['handshake_refused', 'refused handshakes']]);
  for (const [name, label] of [['since', 'From (UTC)'], ['until', 'To (UTC)']]) {
    const v = params.get(name) || '';
    inputs[name] = h('input', { name, type: 'datetime-local', step: '1', value: v ? v.replace(/Z$/, '').slice(0, 19) : '' });
    form.append(field(label, inputs[name], 'in UTC'));
  }
  form.append(h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Search')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, el] of Object.entries(inputs)) {
      let v = el.value.trim();
      if (!v) continue;
      if (el.type === 'datetime-local') v = `${v.length === 16 ? `${v}:00` : v}Z`;
      q.set(k, v);
    }
    location.hash = `#/search?${q}`;
  });
  main.append(form);
  const results = h('section', { 'aria-labelledby': 'results-h', id: 'results' }, h('h2', { id: 'results-h' }, 'Results'));
  main.append(results);
  await guarded(results, async () => {
    const q = {};
    for (const [k, v] of params) if (v) q[k] = v;
    q.limit = q.limit || '50';
    const r = await api.disclosures(q);
    results.append(table(`${r.entries.length} entr${r.entries.length === 1 ? 'y' : 'ies'}`, ENTRY_HEADERS, entryRows(r.entries), { class: 'entries' }));
    if (r.next_cursor) {
      const next = new URLSearchParams(params);
      next.set('cursor', r.next_cursor);
      results.append(h('p', {}, h('a', { href: `#/search?${next}`, rel: 'next' }, 'Older entries')));
    }
    p.done();
  });
}

// ---------------------------------------------------------------------------------------
// One entry

function dl(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

export async function entry(main, seq) {
  const p = page(main, `Log entry ${seq}`, 'One entry of the disclosure log: what it records, every field it disclosed with its transform and the reasons (MOU rule and legal basis, consent, hard limit), the decision, the policy set, and its place in the hash chain.');
  await guarded(main, async () => {
    const e = await api.entry(seq);
    main.append(dl([
      ['sequence number', String(e.seq)],
      ['time (UTC)', time(e.at)],
      ['kind', e.kind],
      ['outcome', outcomeCell(e)],
      ['recipient partner', e.recipient_partner],
      ['user', e.recipient_user],
      ['role', e.recipient_role],
      ['purpose', e.purpose],
      ['legal basis', basisText(e.basis)],
      ['justification', e.justification],
      ['subject (pseudonym)', e.subject ? h('code', { class: 'hex' }, e.subject) : ''],
      ['record', e.record ? `${e.record.kind} ${e.record.id}` : ''],
      ['fields withheld', String(e.fields_withheld)],
      ['decision id', e.decision_id ? h('code', {}, e.decision_id) : ''],
      ['policy-set hash', e.policy_hash ? h('code', { class: 'hex' }, e.policy_hash) : ''],
      ['request id', e.request_id ? h('code', {}, e.request_id) : ''],
      ['source address', e.source_addr],
      ['client certificate SHA-256', e.cert_sha256 ? h('code', { class: 'hex' }, e.cert_sha256) : ''],
      ['detail', e.field_reasons ? '' : e.detail],
    ]));
    const reasons = {};
    for (const g of e.field_reasons || []) for (const f of g.fields) reasons[f] = g.reasons;
    if ((e.fields_disclosed || []).length) {
      main.append(table('Fields disclosed, with their transform and reasons', ['field', 'transform', 'reasons'],
        e.fields_disclosed.map((f) => [h('code', {}, f.field), f.transform,
          (reasons[f.field] || ['(not recorded for this entry)']).length
            ? h('ul', { class: 'reasons' }, (reasons[f.field] || ['(not recorded for this entry)']).map((r) => h('li', {}, r)))
            : '']), { class: 'fields' }));
    }
    main.append(h('h2', {}, 'Place in the chain'), dl([
      ['previous hash', h('code', { class: 'hex' }, e.prev_hash)],
      ['entry hash', h('code', { class: 'hex' }, e.hash)],
    ]), h('p', {}, h('a', { href: `#/entry/${e.seq - 1}` }, 'previous entry'), ' · ', h('a', { href: `#/entry/${e.seq + 1}` }, 'next entry'), ' · ', h('a', { href: '#/verify' }, 'verify the chain')));
    p.done();
  });
}

// ---------------------------------------------------------------------------------------
// Verify

function hexBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i += 1) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** The signed bytes of a checkpoint (see the export's `message`). */
function checkpointMessage(c) {
  const prefix = new TextEncoder().encode('coresponse-gateway/audit-checkpoint/v1');
  const m = new Uint8Array(prefix.length + 48);
  m.set(prefix, 0);
  const v = new DataView(m.buffer);
  v.setBigUint64(prefix.length, BigInt(c.seq));
  m.set(hexBytes(c.head_hash), prefix.length + 8);
  v.setBigInt64(prefix.length + 40, BigInt(c.at_us));
  return m;
}

/** Checks a checkpoint's Ed25519 signature in the browser (WebCrypto), independently. */
async function checkSignature(key, c) {
  try {
    return await crypto.subtle.verify('Ed25519', key, hexBytes(c.signature), checkpointMessage(c));
  } catch {
    return null;
  }
}

/** The first line of a signed note's signature (C2SP signed-note): an em dash and a space. */
const NOTE_SIG_PREFIX = '\u2014 ';

function b64Bytes(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i += 1) out[i] = bin.charCodeAt(i);
  return out;
}

function bytesB64(b) {
  let bin = '';
  for (const x of b) bin += String.fromCharCode(x);
  return btoa(bin);
}

function bytesHex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * Parses a C2SP signed note: its text (up to and including the newline before the last empty
 * line) and its signature lines `— <key name> base64(key id (4 bytes) || signature)`. A
 * checkpoint's text is its origin, tree size and base64 root hash, one per line. Null when the
 * note is malformed.
 */
export function parseNote(text) {
  const split = text.lastIndexOf('\n\n');
  if (split < 0 || !text.endsWith('\n')) return null;
  const body = text.slice(0, split + 1);
  const signatures = [];
  for (const line of text.slice(split + 2, -1).split('\n')) {
    if (!line.startsWith(NOTE_SIG_PREFIX)) return null;
    const parts = line.slice(NOTE_SIG_PREFIX.length).split(' ');
    if (parts.length !== 2 || !parts[0]) return null;
    let raw;
    try { raw = b64Bytes(parts[1]); } catch { return null; }
    if (raw.length < 5) return null;
    signatures.push({ name: parts[0], id: bytesHex(raw.slice(0, 4)), signature: raw.slice(4) });
  }
  if (signatures.length === 0) return null;
  const [origin, size, root] = body.split('\n');
  if (!origin || !/^[0-9]+$/.test(size || '') || !root) return null;
  return { body, origin, size, root, signatures };
}

/**
 * Checks the gateway's signature on a signed tree head (a C2SP checkpoint) in the browser:
 * the note key is named by the checkpoint's origin, its id is
 * `SHA-256(name || "\n" || 0x01 || public key)[:4]`, and the signature is Ed25519 over the
 * note's text (c2sp.org/signed-note). Returns the parsed note, the log's verifier key
 * (`vkey`, as partners pin it) and `valid`: true, false (missing or bad signature, or a
 * malformed note), or null when this browser cannot check Ed25519.
 */
export async function checkTreeHead(text, publicKeyHex) {
  const note = parseNote(text);
  if (!note) return { note: null, vkey: null, valid: false };
  const pub = hexBytes(publicKeyHex);
  const name = new TextEncoder().encode(`${note.origin}\n`);
  const keyed = new Uint8Array(name.length + 1 + pub.length);
  keyed.set(name, 0);
  keyed[name.length] = 0x01;
  keyed.set(pub, name.length + 1);
  const id = bytesHex(new Uint8Array(await crypto.subtle.digest('SHA-256', keyed)).slice(0, 4));
  const typed = new Uint8Array(1 + pub.length);
  typed[0] = 0x01;
  typed.set(pub, 1);
  const vkey = `${note.origin}+${id}+${bytesB64(typed)}`;
  const mine = note.signatures.filter((s) => s.name === note.origin && s.id === id && s.signature.length === 64);
  if (mine.length === 0) return { note, vkey, valid: false };
  let key;
  try {
    key = await crypto.subtle.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
  } catch {
    return { note, vkey, valid: null };
  }
  const message = new TextEncoder().encode(note.body);
  for (const s of mine) {
    try {
      if (await crypto.subtle.verify('Ed25519', key, s.signature, message)) return { note, vkey, valid: true };
    } catch {
      return { note, vkey, valid: null };
    }
  }
  return { note, vkey, valid: false };
}

/** The latest signed tree head, its gateway signature checked here, and its cosigners. */
async function treeHead(main, publicKeyHex) {
  main.append(h('h2', {}, 'Signed tree head'));
  const box = h('section', { id: 'tree-head' });
  main.append(box);
  let text;
  try {
    text = await api.treeHead();
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      box.append(h('p', {}, `No signed tree head: ${e.message}`));
      return;
    }
    throw e;
  }
  const { note, vkey, valid } = await checkTreeHead(text, publicKeyHex);
  const status = h('span', { class: valid === true ? 'ok' : valid === false ? 'bad' : 'unknown', id: 'tree-head-signature' },
    valid === true ? 'valid (checked here)' : valid === false ? 'INVALID' : 'not checked by this browser');
  if (!note) {
    box.append(h('p', {}, 'The gateway\'s signed tree head is not a well-formed signed note: ', status));
    return;
  }
  const cosigners = note.signatures.filter((s) => s.name !== note.origin).map((s) => s.name);
  box.append(
    h('p', {}, 'The Merkle tree of the log as last signed (a C2SP checkpoint). Witnesses keep it and check that each new one extends it; the proofs are at /v1/audit/proof/inclusion and /v1/audit/proof/consistency.'),
    dl([
      ['origin', h('code', {}, note.origin)],
      ['tree size', note.size],
      ['root hash', h('code', { class: 'hex' }, note.root)],
      ['gateway signature (Ed25519 over the note text)', status],
      ['log verifier key', h('code', { class: 'hex' }, vkey)],
      ['witness cosignatures', cosigners.length ? cosigners.join(', ') : 'none yet'],
    ]),
    h('pre', { class: 'note' }, text),
  );
}

export async function verify(main) {
  const p = page(main, 'Verify the chain', 'Recomputes every hash and link of the disclosure log and checks every signed checkpoint; a failure names the first bad entry. Below, the signed checkpoints of the chain and the latest signed tree head of the Merkle tree, each signature also checked by this browser.');
  const result = h('section', { id: 'verify-result', 'aria-live': 'polite' });
  const button = h('button', { type: 'button', id: 'verify-button' }, 'Verify the chain now');
  button.addEventListener('click', async () => {
    button.disabled = true;
    clear(result).append(h('p', {}, 'Verifying…'));
    try {
      const r = await api.verify();
      const rep = r.report;
      clear(result).append(r.ok
        ? h('p', { class: 'ok', id: 'verify-ok' }, `The chain verifies: ${rep.entries_checked} entries checked up to entry ${rep.last_seq}, ${rep.checkpoints_checked} checkpoint(s)${rep.signatures_checked ? ' with signatures' : ''}.`)
        : h('div', { class: 'error', role: 'alert', id: 'verify-failed' },
          h('p', {}, 'The chain FAILS at ', h('a', { href: `#/entry/${rep.failure.seq}` }, `entry ${rep.failure.seq}`), ` (${rep.failure.kind}): ${rep.failure.message}`)));
      result.append(h('p', { class: 'loaded' }, 'Verified at ', time(new Date().toISOString()), ' (UTC).'));
    } catch (e) {
      clear(result).append(errorBox(e));
    } finally {
      button.disabled = false;
    }
  });
  main.append(button, result, h('h2', {}, 'Signed checkpoints'));
  await guarded(main, async () => {
    const x = await api.checkpoints();
    let key = null;
    try {
      key = await crypto.subtle.importKey('raw', hexBytes(x.public_key), { name: 'Ed25519' }, false, ['verify']);
    } catch { key = null; }
    main.append(dl([
      ['algorithm', x.algorithm],
      ['public key', h('code', { class: 'hex' }, x.public_key)],
      ['key id', h('code', {}, x.key_id)],
      ['signed message', x.message],
    ]));
    const recent = x.checkpoints.slice(-50).reverse();
    const rows = [];
    for (const c of recent) {
      const ok = key ? await checkSignature(key, c) : null;
      rows.push([
        h('a', { href: `#/entry/${c.seq}` }, String(c.seq)),
        time(new Date(Number(c.at_us) / 1000).toISOString()),
        shortHex(c.head_hash),
        h('code', {}, c.key_id),
        h('span', { class: ok === true ? 'ok' : ok === false ? 'bad' : 'unknown' },
          ok === true ? 'valid (checked here)' : ok === false ? 'INVALID' : 'not checked by this browser'),
      ]);
    }
    main.append(table(`${x.checkpoints.length} checkpoint(s), newest first${x.checkpoints.length > 50 ? ' (50 shown)' : ''}`,
      ['entry', 'signed at (UTC)', 'head hash', 'key id', 'signature'], rows, { class: 'checkpoints' }));
    await treeHead(main, x.public_key);
    p.done();
  });
}

// ---------------------------------------------------------------------------------------
// Accounting

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name, class: 'hidden' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function subjectForm(params, onto, route, extra = []) {
  const form = h('form', { class: 'search', 'aria-label': 'subject' });
  const sys = h('input', { name: 'system', value: params.get('system') || '', required: true, autocomplete: 'off' });
  const val = h('input', { name: 'value', value: params.get('value') || '', required: true, autocomplete: 'off' });
  form.append(field('Identifier system', sys, 'e.g. metro-pd or county-mh'), field('Identifier value', val, 'e.g. P-2231 or MRN-1001'));
  for (const [name, el, label, hint] of extra) form.append(field(label, el, hint));
  form.append(h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Show')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams({ system: sys.value.trim(), value: val.value.trim() });
    for (const [name, el] of extra) if (el.value.trim()) q.set(name, el.value.trim());
    location.hash = `${route}?${q}`;
  });
  onto.append(form);
}

export async function accounting(main, params) {
  const p = page(main, 'Accounting of disclosures', 'A subject\'s accounting of disclosures (HIPAA 164.528) over the last six years, as the individual would receive it, with CSV and JSON downloads; and the accounting suspensions in force (164.528(a)(2)).');
  subjectForm(params, main, '#/accounting');
  const system = params.get('system');
  const value = params.get('value');
  if (system && value) {
    const sec = h('section', { 'aria-labelledby': 'acc-h' }, h('h2', { id: 'acc-h' }, `Accounting for ${system} ${value}`));
    main.append(sec);
    await guarded(sec, async () => {
      const a = await api.accounting(system, value);
      // `append` (not the DOM's own, which prints null as the text "null") skips what is absent.
      append(sec, [h('p', {}, 'Period ', time(a.period.from), ' to ', time(a.period.to), '. Subject pseudonym ', shortHex(a.subject), '.'),
        a.suspended_disclosures ? h('p', { class: 'notice' }, `${a.suspended_disclosures} disclosure(s) are left out under a suspension in force (the CSV for the individual does not say so).`) : null]);
      const csvButton = h('button', { type: 'button', id: 'download-csv' }, 'Download CSV');
      csvButton.addEventListener('click', async () => {
        try {
          download('accounting-of-disclosures.csv', 'text/csv', await api.accountingCsv(system, value));
        } catch (e) { sec.append(errorBox(e)); }
      });
      const jsonButton = h('button', { type: 'button', id: 'download-json' }, 'Download JSON');
      jsonButton.addEventListener('click', () => download('accounting-of-disclosures.json', 'application/json', JSON.stringify(a, null, 2)));
      sec.append(h('div', { class: 'actions' }, csvButton, ' ', jsonButton));
      sec.append(table(`${a.disclosures.length} line(s)`, ['date (UTC)', 'recipient', 'address', 'what was disclosed', 'purpose and basis', 'count', 'last', 'entries'],
        a.disclosures.map((l) => [time(l.date), l.recipient.name, l.recipient.address || '', l.description, [l.purpose, l.emergency ? ' (emergency)' : ''],
          String(l.count), time(l.last_date), [h('a', { href: `#/entry/${l.first_seq}` }, String(l.first_seq)), l.last_seq !== l.first_seq ? ['…', h('a', { href: `#/entry/${l.last_seq}` }, String(l.last_seq))] : null]]), { class: 'accounting' }));
    });
  }
  const sus = h('section', { 'aria-labelledby': 'sus-h' }, h('h2', { id: 'sus-h' }, 'Suspensions in force'));
  main.append(sus);
  await guarded(sus, async () => {
    const s = await api.suspensions();
    sus.append(table(`${s.suspensions.length} suspension(s)`, ['agency', 'subject', 'until (UTC)', 'statement', 'recorded by'],
      s.suspensions.map((x) => [x.recipient, x.subject ? shortHex(x.subject) : 'every subject', time(x.ends_at), x.statement, `${x.recorded_by_user} (${x.recorded_by_partner})`])));
    p.done();
  });
}

// ---------------------------------------------------------------------------------------
// Reviews

export async function reviews(main, params) {
  const state = params.get('state') || 'open';
  const p = page(main, 'Emergency review queue', 'Emergency (break-glass, HIPAA 164.512(j)) accesses awaiting review, with the stated basis, its source and the threat described. Open one to see the disclosures in its window and close it with an outcome and a note.');
  const nav = h('p', {}, ['open', 'closed', 'all'].map((s, i) => [i ? ' · ' : '', s === state ? h('strong', { 'aria-current': 'true' }, s) : h('a', { href: `#/reviews?state=${s}` }, s)]));
  main.append(nav);
  await guarded(main, async () => {
    const r = await api.reviews(state);
    main.append(table(`${r.reviews.length} ${state} review(s)`, ['opened (UTC)', 'partner', 'user', 'stated basis', 'threat', 'accesses', 'state', ''],
      r.reviews.map((v) => [time(v.opened_at), v.partner, v.user, v.stated_basis || '', v.threat || '', String(v.accesses), v.outcome ? `${v.state}: ${v.outcome}` : v.state,
        h('a', { href: `#/review/${encodeURIComponent(v.id)}`, 'aria-label': `open review of ${v.user} at ${v.opened_at}` }, 'Open')]), { class: 'reviews' }));
    p.done();
  });
}

export async function review(main, id) {
  const p = page(main, 'Emergency review', 'One emergency-access review: the stated basis and threat, the disclosures counted in its window, and (while open) the form to close it.');
  await guarded(main, async () => {
    const r = await api.review(id);
    const v = r.review;
    main.append(dl([
      ['review id', h('code', {}, v.id)],
      ['state', v.outcome ? `${v.state}: ${v.outcome}` : v.state],
      ['partner', v.partner],
      ['user', v.user],
      ['stated basis', v.stated_basis],
      ['threat described', v.threat],
      ['window', [time(v.opened_at), ' to ', time(v.window_until)]],
      ['accesses', String(v.accesses)],
      ['subject (pseudonym)', shortHex(v.subject)],
      ['note', v.note],
      ['reviewed by', v.reviewed_by_user ? `${v.reviewed_by_user} (${v.reviewed_by_partner}) at ${v.reviewed_at}` : ''],
    ]));
    main.append(table('Disclosures in the window', ENTRY_HEADERS, entryRows(r.disclosures), { class: 'entries' }));
    if (v.state === 'open') {
      const form = h('form', { class: 'close-review', 'aria-labelledby': 'close-h' });
      const note = h('textarea', { name: 'note', rows: 3, required: true, maxlength: 4000 });
      const radios = h('fieldset', {}, h('legend', {}, 'Outcome'),
        [['justified', 'Justified'], ['not-justified', 'Not justified']].map(([val, label]) => h('label', { class: 'radio' },
          h('input', { type: 'radio', name: 'outcome', value: val, required: true }), ` ${label}`)));
      const status = h('div', { 'aria-live': 'polite' });
      form.append(h('h2', { id: 'close-h' }, 'Close this review'), radios, field('Note (why)', note, 'required; kept in the disclosure log'), h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Close the review')), status);
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const outcome = form.querySelector('input[name=outcome]:checked');
        try {
          await api.closeReview(v.id, outcome ? outcome.value : '', note.value);
          clear(status).append(h('p', { class: 'ok', id: 'review-closed' }, 'The review is closed.'));
          setTimeout(() => review(main, id), 0);
        } catch (e) {
          clear(status).append(errorBox(e));
        }
      });
      main.append(form);
    }
    p.done();
  });
}

// ---------------------------------------------------------------------------------------
// Coverage

export async function coverage(main, params) {
  const p = page(main, 'Consent coverage', 'Which consents and MOU rules would let each field of a subject\'s records flow to a recipient for a purpose, field by field, or why not.');
  const recipient = h('input', { name: 'recipient', value: params.get('recipient') || '', autocomplete: 'off' });
  const purpose = h('input', { name: 'purpose', value: params.get('purpose') || '', autocomplete: 'off' });
  const role = h('input', { name: 'role', value: params.get('role') || '', autocomplete: 'off' });
  subjectForm(params, main, '#/coverage', [
    ['recipient', recipient, 'Recipient partner', 'e.g. metro-pd'],
    ['purpose', purpose, 'Purpose', 'e.g. crisis-response'],
    ['role', role, 'Role (optional)', 'e.g. officer; default: each role'],
  ]);
  const system = params.get('system');
  const value = params.get('value');
  if (!(system && value && params.get('recipient') && params.get('purpose'))) return;
  await guarded(main, async () => {
    const c = await api.coverage(system, value, { recipient: params.get('recipient'), purpose: params.get('purpose'), role: params.get('role') });
    main.append(h('p', {}, `Decided at ${c.at} under policy set `, shortHex(c.policy_set), `; subject pseudonym `, shortHex(c.subject), '.'));
    main.append(table('Consents taken into account', ['consent', 'status', 'names this recipient and purpose'],
      (c.consents || []).map((x) => [x.id, x.status, x.names_recipient_and_purpose ? 'yes' : 'no'])));
    for (const f of c.flows) {
      const rows = (f.fields || []).map((x) => [h('code', {}, x.field), x.flows ? 'flows' : 'does not flow', x.transform, (x.consents || []).join(', '), (x.mou_rules || []).join(', '), (x.reasons || []).join('; ')]);
      main.append(h('section', { class: 'flow' },
        h('h2', {}, `${f.kind} held by ${f.holder}, as ${f.role}: ${f.decision}`),
        f.decision === 'deny' ? h('p', {}, `Why: ${(f.reasons || []).join('; ')}`) : null,
        rows.length ? table(`${f.kind}: field by field`, ['field', 'flows', 'transform', 'consents', 'MOU rules', 'reasons'], rows) : null));
    }
    p.done();
  });
}

// ---------------------------------------------------------------------------------------
// Reports

function numberCell(v) {
  return v === null || v === undefined ? h('span', { title: 'withheld by disclosure control' }, '*') : String(v);
}

/** A rate or statistic: `*` when withheld, empty when the row has no units. */
function derivedCell(v, withheld) {
  if (withheld) return h('span', { title: 'withheld with a count it would give away' }, '*');
  return v === null || v === undefined ? '' : String(v);
}

function reportTable(t) {
  const cols = t.columns.labels;
  const twoWay = Array.isArray(t.row_totals);
  const headers = [t.rows.dimension, ...cols, twoWay ? 'total' : null, ...t.rates.map((r) => `${r.title} (%)`)].filter((x) => x !== null);
  const rows = t.rows.labels.map((label, i) => [label, ...t.cells[i].map(numberCell), twoWay ? numberCell(t.row_totals[i]) : null,
    ...t.rates.map((r) => derivedCell(r.rows[i], r.withheld[i]))].filter((x) => x !== null));
  if (twoWay) {
    rows.push(['total', ...t.column_totals.map(numberCell), numberCell(t.total), ...t.rates.map((r) => derivedCell(r.total, r.total_withheld))]);
  }
  const s = t.suppression;
  const sec = h('section', { 'aria-label': t.title }, h('h3', {}, t.title));
  sec.append(table(`${t.title} (${t.unit}; ${s.primary + s.complementary} of ${s.counts} counts withheld)`, headers, rows, { class: 'report' }));
  if (t.durations) {
    const d = t.durations;
    sec.append(table(`${d.measure} (${d.unit}): median and 90th percentile`, [t.rows.dimension, 'median', '90th percentile'],
      t.rows.labels.map((label, i) => [label, derivedCell(d.median[i], d.withheld[i]), derivedCell(d.p90[i], d.withheld[i])])));
  }
  return sec;
}

export async function reports(main, params) {
  const p = page(main, 'Reports', 'The program outcome reports you may run: aggregates computed inside the gateway and released only after disclosure control (CMS cell-size suppression: counts from 1 to 10, and what would give them away, show as *). Each run is a report_generated entry in the log.');
  await guarded(main, async () => {
    const list = await api.reports();
    main.append(table(`${list.reports.length} report(s) you may run`, ['report', 'release', 'tables', 'basis', 'privacy budget'],
      list.reports.map((r) => [h('a', { href: `#/reports?id=${encodeURIComponent(r.id)}` }, r.title), r.release, r.tables.map((t) => t.title).join('; '),
        `MOU ${r.basis.mou} section ${r.basis.section}`, r.privacy ? `epsilon ${r.privacy.epsilon} per run; ${r.privacy.spent} of ${r.privacy.budget} spent; ${r.privacy.runs_left} run(s) left` : '']), { class: 'reports' }));
    const id = params.get('id');
    const chosen = list.reports.find((r) => r.id === id);
    if (!chosen) { p.done(); return; }
    const form = h('form', { class: 'search', 'aria-label': 'report period' });
    const from = h('input', { name: 'from', type: 'date', value: params.get('from') || '', required: true });
    const to = h('input', { name: 'to', type: 'date', value: params.get('to') || '', required: true });
    form.append(field('From (UTC, inclusive)', from), field('To (UTC, exclusive)', to), h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Run')));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      location.hash = `#/reports?${new URLSearchParams({ id: chosen.id, from: from.value, to: to.value })}`;
    });
    const sec = h('section', { 'aria-labelledby': 'rep-h' }, h('h2', { id: 'rep-h' }, chosen.title), h('p', {}, chosen.description), form);
    main.append(sec);
    if (!params.get('from') || !params.get('to')) { p.done(); return; }
    await guarded(sec, async () => {
      const r = await api.report(chosen.id, params.get('from'), params.get('to'));
      const dc = r.disclosure_control || {};
      const csvButton = h('button', { type: 'button', id: 'download-report-csv' }, 'Download CSV');
      csvButton.addEventListener('click', async () => {
        try {
          download(`${r.report}.csv`, 'text/csv', await api.reportCsv(chosen.id, params.get('from'), params.get('to')));
        } catch (e) { sec.append(errorBox(e)); }
      });
      const jsonButton = h('button', { type: 'button', id: 'download-report-json' }, 'Download JSON');
      jsonButton.addEventListener('click', () => download(`${r.report}.json`, 'application/json', JSON.stringify(r, null, 2)));
      append(sec, [h('p', {}, 'Period ', time(r.period.from), ' to ', time(r.period.to), '. Log entry ', h('a', { href: `#/entry/${r.log_entry}` }, String(r.log_entry)), '.'),
        dc.source ? h('p', {}, 'Disclosure control: ', h('a', { href: dc.source, rel: 'noreferrer' }, 'CMS cell-size suppression'), '.') : null,
        h('div', { class: 'actions' }, csvButton, ' ', jsonButton),
        r.tables.map(reportTable)]);
    });
    p.done();
  });
}
