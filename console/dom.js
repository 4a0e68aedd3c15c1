// Small DOM helpers. The console builds every node with these (never from HTML strings), so
// text from the API is always text, never markup.

/** An element: h('a', {href: '#/x', class: 'y'}, 'text', child, [more]). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

/** Appends children (nodes, strings, numbers, arrays; null and undefined are skipped). */
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Removes every child of `el`. */
export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** A table with a caption, column headers and rows of cells (nodes or text). */
export function table(caption, headers, rows, attrs = {}) {
  return h('table', attrs,
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.length
      ? rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))
      : h('tr', {}, h('td', { colspan: headers.length }, 'Nothing to show.'))));
}

/** A labelled form control: <label for=id>text</label> + control. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintNode = hint ? h('span', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintNode) control.setAttribute('aria-describedby', hintNode.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintNode);
}

/** A time shown in UTC, with the machine-readable value in <time>. */
export function time(iso) {
  if (!iso) return '';
  return h('time', { datetime: iso }, iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z'));
}

/** Short hex (first 12 digits) with the full value in its title. */
export function shortHex(hex) {
  if (!hex) return '';
  return h('code', { title: hex, class: 'hex' }, `${hex.slice(0, 12)}…`);
}
