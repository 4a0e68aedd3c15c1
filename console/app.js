// The compliance console: sign-in, navigation and routing. Pages are in views.js; every read
// goes through api.js (the documented JSON API, with the token held in memory only).

import * as api from './api.js';
import * as views from './views.js';
import { h, clear, field } from './dom.js';

const main = document.getElementById('main');
const who = document.getElementById('who');
const signOutButton = document.getElementById('sign-out');

// A token in the URL fragment (`#token=...`, as the demo prints) signs in and is then removed
// from the address bar and the history entry at once, before anything else runs.
function takeTokenFromFragment() {
  const m = /^#token=([A-Za-z0-9_\-.]+)/.exec(location.hash);
  if (!m) return;
  history.replaceState(null, '', `${location.pathname}${location.search}#/overview`);
  api.setToken(m[1]);
}

function showSignIn(reason) {
  clear(main);
  const heading = h('h1', { tabindex: '-1' }, 'Sign in');
  const input = h('textarea', { rows: 4, spellcheck: 'false', autocomplete: 'off', required: true });
  const form = h('form', { class: 'sign-in', 'aria-labelledby': 'sign-in-h' },
    field('Compliance officer\'s token (JWT)', input, 'Kept in this page\'s memory only; closing or reloading the page signs you out.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    api.clearExpiredNotice();
    api.setToken(input.value);
    if (!location.hash.startsWith('#/') || location.hash === '#/sign-in') location.hash = '#/overview';
    else route();
  });
  heading.id = 'sign-in-h';
  main.append(heading);
  if (reason) main.append(reason);
  main.append(h('p', { class: 'what' }, 'This console reads the disclosure log through the gateway\'s API as a compliance officer of the oversight agency. Your browser presents the agency\'s client certificate; the token names you. Get one from your identity provider (in the demo: ',
    h('code', {}, 'coresponse-gateway token --config demo/gateway.toml --partner oversight --user aud-1 --role compliance'), ').'), form);
  heading.focus();
  document.title = 'Sign in · compliance console';
}

// Only the newest call writes the header (sign-in and start-up may both ask at once).
let whoCalls = 0;

async function refreshWho() {
  const call = ++whoCalls;
  clear(who);
  signOutButton.hidden = !api.signedIn();
  if (!api.signedIn()) return;
  let line;
  try {
    const w = await api.api.whoami();
    line = [`${w.user} (${w.roles.join(', ')}) of ${w.partner_name || w.partner}`];
    const left = api.secondsLeft();
    if (left !== null) line.push(h('span', { id: 'token-left' }, ` · token expires in ${Math.max(0, Math.round(left / 60))} min`));
  } catch (e) {
    line = [h('span', { class: 'bad' }, e.message)];
  }
  if (call !== whoCalls) return;
  clear(who).append(...line);
}

function expiredBox() {
  const e = api.expiredNotice;
  if (!e) return null;
  const expired = e.code === 'token_expired';
  return h('div', { class: 'error', role: 'alert', id: 'signed-out' },
    h('p', {}, expired ? 'Your token has expired: you were signed out. Sign in with a new token.' : `You were signed out: ${e.message}`),
    e.requestId ? h('p', {}, 'Request-Id: ', h('code', {}, e.requestId)) : null);
}

// Watch the token's expiry: once past it, drop it and say so.
setInterval(() => {
  const left = api.secondsLeft();
  if (api.signedIn() && left !== null && left <= 0) {
    api.setToken(null);
    showSignIn(h('div', { class: 'error', role: 'alert', id: 'signed-out' }, h('p', {}, 'Your token has expired: you were signed out. Sign in with a new token.')));
  } else if (left !== null) {
    const el = document.getElementById('token-left');
    if (el) el.textContent = ` · token expires in ${Math.max(0, Math.round(left / 60))} min`;
  }
}, 15000);

function markNav(name) {
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function route() {
  takeTokenFromFragment();
  if (!api.signedIn()) {
    markNav('');
    showSignIn(expiredBox());
    return;
  }
  const [path, qs] = (location.hash.replace(/^#/, '') || '/overview').split('?');
  const params = new URLSearchParams(qs || '');
  const parts = path.split('/').filter(Boolean);
  const name = parts[0] || 'overview';
  markNav(name === 'entry' ? 'search' : name === 'review' ? 'reviews' : name);
  switch (name) {
    case 'overview': return views.overview(main, params);
    case 'search': return views.search(main, params);
    case 'entry': return views.entry(main, decodeURIComponent(parts[1] || ''));
    case 'verify': return views.verify(main);
    case 'accounting': return views.accounting(main, params);
    case 'reviews': return views.reviews(main, params);
    case 'review': return views.review(main, decodeURIComponent(parts[1] || ''));
    case 'coverage': return views.coverage(main, params);
    case 'reports': return views.reports(main, params);
    default:
      clear(main).append(h('h1', { tabindex: '-1' }, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/overview' }, 'Go to the overview.')));
      return undefined;
  }
}

signOutButton.addEventListener('click', () => {
  api.signOut();
  api.clearExpiredNotice();
  location.hash = '#/sign-in';
});
api.onTokenChange(() => {
  refreshWho();
  if (!api.signedIn()) route();
});
window.addEventListener('hashchange', route);
takeTokenFromFragment();
refreshWho();
route();
