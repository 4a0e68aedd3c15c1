// Charts drawn as SVG by the page (no third-party code). Each chart is an image with a title
// and a description for screen readers, followed by the same numbers as a table.

import { h } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// Colour-blind-safe palette (Okabe-Ito), in a fixed order.
const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];

/** The days from `from` to `to` (YYYY-MM-DD, inclusive), at most 400. */
export function dayRange(from, to) {
  const out = [];
  const d = new Date(`${from.slice(0, 10)}T00:00:00Z`);
  const end = new Date(`${to.slice(0, 10)}T00:00:00Z`);
  while (d <= end && out.length < 400) {
    out.push(d.toISOString().slice(0, 10));
    d.setUTCDate(d.getUTCDate() + 1);
  }
  return out;
}

/**
 * A stacked bar chart: one bar per day, one colour per series.
 * `data` maps day -> series -> count.
 */
export function stackedBars({ id, title, description, days, series, data }) {
  const width = 760;
  const height = 240;
  const pad = { l: 40, r: 10, t: 10, b: 40 };
  const totals = days.map((d) => series.reduce((n, k) => n + ((data[d] || {})[k] || 0), 0));
  const max = Math.max(1, ...totals);
  const bw = (width - pad.l - pad.r) / Math.max(1, days.length);
  const y = (v) => pad.t + (height - pad.t - pad.b) * (1 - v / max);
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-labelledby': `${id}-t ${id}-d`, class: 'chart',
  });
  svg.append(s('title', { id: `${id}-t` }, title), s('desc', { id: `${id}-d` }, description));
  // Axis and gridlines.
  for (const f of [0, 0.5, 1]) {
    const v = Math.round(max * f);
    svg.append(s('line', { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(s('text', { x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, v));
  }
  days.forEach((day, i) => {
    let base = 0;
    series.forEach((k, j) => {
      const v = (data[day] || {})[k] || 0;
      if (!v) return;
      const rect = s('rect', {
        x: pad.l + i * bw + 1, width: Math.max(1, bw - 2), y: y(base + v), height: y(base) - y(base + v),
        fill: PALETTE[j % PALETTE.length], 'data-series': k,
      });
      rect.append(s('title', {}, `${day}: ${k}: ${v}`));
      svg.append(rect);
      base += v;
    });
    const every = Math.ceil(days.length / 8);
    if (i % every === 0) {
      svg.append(s('text', { x: pad.l + i * bw + bw / 2, y: height - pad.b + 16, 'text-anchor': 'middle', class: 'axis' }, day.slice(5)));
    }
  });
  const legend = h('ul', { class: 'legend', 'aria-label': `${title}: legend` },
    series.map((k, j) => h('li', {}, h('span', { class: `swatch swatch-${j % PALETTE.length}`, 'aria-hidden': 'true' }), k)));
  const rows = days.filter((d, i) => totals[i] > 0)
    .map((d) => [d, ...series.map((k) => String((data[d] || {})[k] || 0))]);
  const tableEl = h('table', { class: 'chart-data' },
    h('caption', {}, `${title} (numbers)`),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'day'), series.map((k) => h('th', { scope: 'col' }, k)))),
    h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))
      : h('tr', {}, h('td', { colspan: series.length + 1 }, 'No entries in this period.'))));
  return h('figure', { class: 'chart-figure', id },
    h('figcaption', {}, title),
    svg,
    legend,
    h('details', {}, h('summary', {}, 'Show the numbers'), tableEl));
}
