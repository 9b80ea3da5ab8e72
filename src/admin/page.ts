// The admin page: Gateways, listeners with their conditions, the routes
// naming each Gateway with their status, and an explain form. Plain HTML,
// one script and one style sheet served from here (the page's CSP allows
// nothing else, inline script included). Object names are tenant input:
// the script only ever puts them in the page as text (textContent), never
// as markup.

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Gatehouse</title>
<link rel="stylesheet" href="/ui.css">
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<script src="/ui.js" defer></script>
</head>
<body>
<h1>Gatehouse</h1>
<form id="token-form" hidden>
<label>This admin API needs its bearer token: <input id="token" type="password" autocomplete="off"></label>
<button type="submit">Use</button>
</form>
<p id="status" role="status"></p>
<section id="gateways"></section>
<h2>Explain a request</h2>
<form id="explain-form">
<label>Request <input id="explain-request" size="80" placeholder='GET https://nova.example/v2.1/servers -H "X-Foo: bar"'></label>
<label>Gateway <input id="explain-gateway" size="20" placeholder="namespace/name (optional)"></label>
<button type="submit">Explain</button>
</form>
<div id="explain-result"></div>
</body>
</html>
`;

const CSS = `body { font-family: system-ui, sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
.bad { color: #a00; }
.good { color: #060; }
.chosen { font-weight: bold; }
#explain-result pre { background: #f4f4f4; padding: 0.5em; }
`;

const JS = `'use strict';
const TOKEN_KEY = 'gatehouse-admin-token';
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

async function api(path, init) {
  const headers = Object.assign({}, init && init.headers);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = 'Bearer ' + token;
  const res = await fetch(path, Object.assign({}, init, { headers }));
  if (res.status === 401) {
    $('token-form').hidden = false;
    throw new Error('the admin API wants its bearer token');
  }
  const body = await res.json();
  if (!res.ok) throw new Error(body && body.error ? body.error : 'HTTP ' + res.status);
  return body;
}

function conditions(list) {
  const td = el('td');
  for (const c of list || []) {
    const good = (c.type === 'Conflicted' || c.type === 'PartiallyInvalid') ? c.status !== 'True' : c.status === 'True';
    const line = el('div', c.type + '=' + c.status + ' ' + c.reason, good ? 'good' : 'bad');
    line.title = c.message;
    td.append(line);
  }
  return td;
}

function table(headings, rows) {
  const t = el('table');
  const head = el('tr');
  for (const h of headings) head.append(el('th', h));
  t.append(head);
  for (const r of rows) {
    const tr = el('tr');
    for (const cell of r) tr.append(cell instanceof Node ? cell : el('td', cell));
    t.append(tr);
  }
  return t;
}

// Counts of the last refresh, by Gateway, route and listener: the rate is the change since then.
let lastCounts = new Map();
let lastAt = 0;

function requestsCell(gw, r, counts, now) {
  if (r.requests === null) return '-';
  const key = gw.name + ' ' + r.name + ' ' + (r.sectionName || '');
  counts.set(key, r.requests);
  const before = lastCounts.get(key);
  if (before === undefined || lastAt === 0 || r.requests < before) return String(r.requests);
  const rate = (r.requests - before) / ((now - lastAt) / 1000);
  return r.requests + ' (' + rate.toFixed(1) + '/s)';
}

async function loadOverview() {
  let data;
  try {
    data = await api('/api/v1/overview');
  } catch (e) {
    $('status').textContent = e.message;
    return;
  }
  $('status').textContent = 'updated ' + new Date().toLocaleTimeString();
  const out = $('gateways');
  out.replaceChildren();
  const now = Date.now();
  const counts = new Map();
  if (data.gateways.length === 0) out.append(el('p', 'No Gateways of this controller.'));
  for (const gw of data.gateways) {
    const s = el('section');
    s.className = 'gateway';
    s.append(el('h2', 'Gateway ' + gw.name));
    s.append(el('p', 'addresses: ' + (gw.addresses.join(', ') || 'none')));
    s.append(table(['Gateway conditions'], [[conditions(gw.conditions)]]));
    s.append(el('h3', 'Listeners'));
    s.append(table(['name', 'port', 'protocol', 'hostname', 'attached routes', 'conditions'],
      gw.listeners.map((l) => [l.name, l.port, l.protocol, l.hostname || '(any)', l.attachedRoutes, conditions(l.conditions)])));
    s.append(el('h3', 'Routes'));
    s.append(table(['route', 'hostnames', 'listener', 'requests (rate)', 'conditions'],
      gw.routes.map((r) => [r.name, r.hostnames.join(', ') || '(any)', r.sectionName || '(all)', requestsCell(gw, r, counts, now), conditions(r.conditions)])));
    out.append(s);
  }
  lastCounts = counts;
  lastAt = now;
}

function candidates(title, list) {
  if (!list || list.length === 0) return [];
  const out = [el('h4', title)];
  const ul = el('ul');
  for (const c of list) ul.append(el('li', (c.verdict === 'chosen' ? 'chosen ' : 'skipped ') + c.name + ': ' + c.reason, c.verdict === 'chosen' ? 'chosen' : ''));
  out.push(ul);
  return out;
}

async function explainSubmit(event) {
  event.preventDefault();
  const out = $('explain-result');
  out.replaceChildren(el('p', 'explaining...'));
  const body = { request: $('explain-request').value };
  if ($('explain-gateway').value) body.gateway = $('explain-gateway').value;
  let r;
  try {
    r = await api('/api/v1/explain', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  } catch (e) {
    out.replaceChildren(el('p', e.message, 'bad'));
    return;
  }
  const parts = [el('p', (r.routed ? 'ROUTED' : 'NOT ROUTED') + ': ' + r.outcome, r.routed ? 'good outcome' : 'bad outcome')];
  if (r.route) {
    parts.push(el('p', 'rule ' + r.route.name + ' of route ' + r.route.route, 'chosen route'));
    parts.push(el('pre', r.route.backends.map((b) => 'weight ' + b.weight + ': ' + (b.cluster === null ? 'invalid reference (500)' : b.cluster + ' -> ' + (b.endpoints.join(', ') || 'no endpoints'))).join('\\n')));
  }
  parts.push(...candidates('Sockets', r.sockets), ...candidates('Listeners', r.listeners),
    ...candidates('Route hostnames', r.virtualHosts), ...candidates('Rules', r.routes));
  if (r.unattached.length) {
    parts.push(el('h4', 'Routes not attached'));
    const ul = el('ul');
    for (const u of r.unattached) for (const c of u.conditions) ul.append(el('li', u.route + ': ' + c.type + '=' + c.status + ' ' + c.reason + ': ' + c.message));
    parts.push(ul);
  }
  out.replaceChildren(...parts);
}

$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('token').value);
  $('token-form').hidden = true;
  loadOverview();
});
$('explain-form').addEventListener('submit', explainSubmit);
loadOverview();
// Statuses change with the config; a few seconds is fresh enough for people.
setInterval(loadOverview, 5000);
`;

/** Path -> the file served there. */
export const PAGE_FILES: Readonly<Record<string, { type: string; body: string }>> = {
  '/': { type: 'text/html; charset=utf-8', body: HTML },
  '/ui.js': { type: 'text/javascript; charset=utf-8', body: JS },
  '/ui.css': { type: 'text/css; charset=utf-8', body: CSS },
  // Without an icon of its own a browser asks for /favicon.ico and logs the 404.
  '/favicon.svg': { type: 'image/svg+xml', body: '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#246"/></svg>' },
};
