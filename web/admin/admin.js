// switchboard admin: the dashboard's UI. Plain JS, no library and no build step.
//
// Logged in or not is the server's to say: GET /admin/api/session answers the CSRF token or
// 401. Live figures come over /admin/live, one frame a second; connections and channels are
// read every 2 s from /admin/api/. Every text that comes from clients (user names, channels,
// user agents, messages) goes into the page as text, never as HTML.

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
const POINTS = 60; // a minute of live frames

let csrf = null;
let live = null;
let polling = null;
let openChannel = null;
const series = { connections: [], messagesIn: [], messagesOut: [], bytesIn: [], bytesOut: [], failures: [] };
const lastOffsets = new Map(); // channel -> { epoch, offset, at }

// --- talking to the server -------------------------------------------------------------

async function api(path, body) {
  const options = body === undefined
    ? { credentials: 'same-origin' }
    : {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf ?? '' },
      body: JSON.stringify(body),
    };
  const response = await fetch(`/admin/api/${path}`, options);
  const value = await response.json().catch(() => ({}));
  if (response.status === 401 && path !== 'login') showLogin();
  if (!response.ok) throw new Error(value?.error?.message ?? `HTTP ${response.status}`);
  return value;
}

async function start() {
  try {
    const session = await api('session');
    csrf = session.csrf;
    showDashboard();
  } catch {
    showLogin();
  }
}

function showLogin() {
  stop();
  csrf = null;
  $('dashboard').hidden = true;
  $('logout').hidden = true;
  $('login-view').hidden = false;
  setStatus('down', 'Logged out');
  $('password').focus();
}

function showDashboard() {
  $('login-view').hidden = true;
  $('dashboard').hidden = false;
  $('logout').hidden = false;
  connectLive();
  refresh();
  polling = setInterval(refresh, POLL_MS);
}

function stop() {
  if (polling) clearInterval(polling);
  polling = null;
  if (live) {
    live.onclose = null;
    live.close();
  }
  live = null;
}

function setStatus(state, text) {
  $('status').dataset.state = state;
  $('status-text').textContent = text;
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const error = $('login-error');
  error.hidden = true;
  try {
    const session = await api('login', { password: $('password').value });
    csrf = session.csrf;
    $('password').value = '';
    showDashboard();
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
  }
});

$('logout').addEventListener('click', async () => {
  try {
    await api('logout', {});
  } finally {
    showLogin();
  }
});

// --- live figures ----------------------------------------------------------------------

function connectLive() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const socket = new WebSocket(`${scheme}://${location.host}/admin/live`);
  live = socket;
  setStatus('', 'Connecting…');
  socket.onopen = () => setStatus('live', 'Live');
  socket.onmessage = (event) => tick(JSON.parse(event.data));
  socket.onclose = (event) => {
    if (live !== socket) return;
    live = null;
    // 4001: the session ended (logout elsewhere, expiry); a refused upgrade has no code.
    if (event.code === 4001) return showLogin();
    setStatus('down', 'Reconnecting…');
    setTimeout(() => { if (csrf && !live) connectLive(); }, 2000);
  };
}

function push(list, value) {
  list.push(value);
  if (list.length > POINTS) list.shift();
}

function tick(frame) {
  push(series.connections, frame.connections);
  push(series.messagesIn, frame.messages_in);
  push(series.messagesOut, frame.messages_out);
  push(series.bytesIn, frame.bytes_in);
  push(series.bytesOut, frame.bytes_out);
  push(series.failures, frame.handshake_failures_rate);
  $('stat-connections').textContent = frame.connections;
  const rate = frame.connections_rate;
  $('stat-connections-rate').textContent = `${rate >= 0 ? '+' : ''}${rate.toFixed(1)} / s`;
  $('stat-in').textContent = rounded(frame.messages_in);
  $('stat-out').textContent = rounded(frame.messages_out);
  $('stat-bytes').textContent = `${bytes(frame.bytes_in)} / ${bytes(frame.bytes_out)}`;
  $('stat-broker').textContent = frame.broker_ms == null
    ? (frame.broker_error ?? '–')
    : `${frame.broker_ms.toFixed(frame.broker_ms < 10 ? 2 : 0)} ms`;
  const reasons = Object.entries(frame.handshake_failures).filter(([, n]) => n > 0);
  $('failure-reasons').textContent = reasons.length
    ? `Since start: ${reasons.map(([r, n]) => `${r.replaceAll('_', ' ')} ${n}`).join(', ')}`
    : 'None since start.';
  draw($('chart-connections'), [series.connections], [1]);
  draw($('chart-messages'), [series.messagesIn, series.messagesOut], [1, 2], rounded);
  draw($('chart-bytes'), [series.bytesIn, series.bytesOut], [1, 2], bytes);
  draw($('chart-failures'), [series.failures], [3], rounded);
  nodes(frame);
}

// Each node's totals at the last frame, for its rates.
const lastNodes = new Map(); // node -> { at, publications, deliveries }

function nodes(frame) {
  const body = $('nodes').tBodies[0];
  const seen = new Map();
  body.replaceChildren(...frame.nodes.map((node) => {
    const before = lastNodes.get(node.node);
    const secs = before ? (frame.time - before.at) / 1000 : 0;
    const rate = (key) => (secs > 0 ? rounded(Math.max(0, node[key] - before[key]) / secs) : '–');
    seen.set(node.node, { at: frame.time, publications: node.publications, deliveries: node.deliveries });
    const tr = row([
      ['Node', node.node],
      ['Connections', node.connections, 'num'],
      ['Channels', node.channels, 'num'],
      ['Publications / s', rate('publications'), 'num'],
      ['Deliveries / s', rate('deliveries'), 'num'],
      ['Lagged', node.lagged, 'num'],
      ['Up', uptime(frame.time - node.started)],
      ['Version', node.version],
    ]);
    tr.dataset.node = node.node;
    return tr;
  }));
  lastNodes.clear();
  for (const [name, totals] of seen) lastNodes.set(name, totals);
  $('nodes-note').textContent = frame.unanswered
    ? `${frame.unanswered} node(s) did not answer`
    : `${frame.nodes.length} node${frame.nodes.length === 1 ? '' : 's'}`;
}

function uptime(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function rounded(n) {
  return n >= 100 ? Math.round(n).toString() : (Math.round(n * 10) / 10).toString();
}

function bytes(n) {
  if (n < 1024) return `${Math.round(n)} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

// A line chart of the last minute on a canvas, scaled for the screen's pixel density.
function draw(canvas, lines, colors, label = rounded) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (!width || !height) return;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const g = canvas.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const style = getComputedStyle(document.documentElement);
  const muted = style.getPropertyValue('--muted').trim();
  const grid = style.getPropertyValue('--border').trim();
  const max = niceMax(Math.max(2, ...lines.flat()) * 1.1);
  const left = 44;
  const top = 6;
  const bottom = height - 18;
  const x = (i) => left + ((width - left - 4) * i) / (POINTS - 1);
  const y = (v) => bottom - ((bottom - top) * v) / max;
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = muted;
  g.strokeStyle = grid;
  g.lineWidth = 1;
  for (const v of [0, max / 2, max]) {
    g.beginPath();
    g.moveTo(left, Math.round(y(v)) + 0.5);
    g.lineTo(width - 4, Math.round(y(v)) + 0.5);
    g.stroke();
    g.textAlign = 'right';
    g.fillText(label(v), left - 6, y(v) + 4);
  }
  g.textAlign = 'left';
  g.fillText('−60 s', left, height - 3);
  g.textAlign = 'right';
  g.fillText('now', width - 4, height - 3);
  lines.forEach((points, n) => {
    if (!points.length) return;
    const offset = POINTS - points.length;
    g.strokeStyle = style.getPropertyValue(`--c${colors[n]}`).trim();
    g.lineWidth = 2;
    g.lineJoin = 'round';
    g.beginPath();
    points.forEach((v, i) => (i ? g.lineTo(x(i + offset), y(v)) : g.moveTo(x(i + offset), y(v))));
    g.stroke();
  });
}

// --- connections and channels ------------------------------------------------------------

async function refresh() {
  await Promise.allSettled([refreshConnections(), refreshChannels(), openChannel && showChannel(openChannel)]);
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text ?? '';
  if (className) td.className = className;
  return td;
}

// A table row from [label, text, class] triples; the label shows on a phone.
function row(cells) {
  const tr = document.createElement('tr');
  for (const [label, text, className] of cells) {
    const td = cell(text, className);
    if (label) td.dataset.label = label;
    tr.append(td);
  }
  return tr;
}

function button(text, className, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = `button small ${className}`;
  b.textContent = text;
  b.addEventListener('click', onClick);
  return b;
}

async function refreshConnections() {
  const user = $('connections-search').value.trim();
  const list = await api(`connections${user ? `?user=${encodeURIComponent(user)}` : ''}`);
  const body = $('connections').tBodies[0];
  body.replaceChildren(...list.clients.map((c) => {
    const tr = row([
      ['User', c.user || '(anonymous)'],
      ['Id', c.conn],
      ['Address', c.address],
      ['User agent', agent(c.user_agent), 'wrap'],
      ['Channels', c.subscriptions == null ? '(busy)' : c.subscriptions.join(', ') || '–', 'wrap'],
      ['Send queue', bytes(c.send_queue), 'num'],
      ['Deflate', c.compression ? 'on' : 'off'],
    ]);
    tr.dataset.conn = c.conn;
    tr.dataset.user = c.user;
    const actions = document.createElement('td');
    actions.className = 'actions';
    actions.append(
      button('Disconnect', 'danger', () => disconnect({ conn: c.conn })),
      button('All of user', 'ghost', () => disconnect({ user: c.user })),
    );
    tr.append(actions);
    return tr;
  }));
  $('connections-empty').hidden = list.clients.length > 0;
}

// The browser and platform of a user agent, short enough for a table.
function agent(text) {
  if (!text) return '';
  const browser = text.match(/(Firefox|Edg|Chrome|Safari|node|curl|Python|Go-http-client|switchboard)[/ ]?[\d.]*/i);
  const platform = text.match(/\(([^;)]+)/);
  return [browser?.[0], platform?.[1]].filter(Boolean).join(' · ') || text.slice(0, 60);
}

async function disconnect(target) {
  const code = Number($('close-code').value) || 4000;
  await api('disconnect', { ...target, code, reason: 'disconnected by an admin' });
  await refreshConnections();
}

async function refreshChannels() {
  const q = $('channels-search').value.trim();
  const list = await api(`channels${q ? `?q=${encodeURIComponent(q)}` : ''}`);
  const now = performance.now();
  const body = $('channels').tBodies[0];
  body.replaceChildren(...list.channels.map((c) => {
    const before = lastOffsets.get(c.channel);
    let rate = '–';
    if (before && c.offset != null && before.epoch === c.epoch) {
      rate = rounded(Math.max(0, c.offset - before.offset) / ((now - before.at) / 1000));
    }
    if (c.offset != null) lastOffsets.set(c.channel, { epoch: c.epoch, offset: c.offset, at: now });
    const tr = row([
      ['Channel', c.channel],
      ['Subscribers', c.subscribers, 'num'],
      ['Messages / s', rate, 'num rate'],
      ['Offset', c.offset ?? '–', 'num'],
    ]);
    tr.className = 'clickable';
    tr.dataset.channel = c.channel;
    tr.addEventListener('click', () => showChannel(c.channel));
    return tr;
  }));
  $('channels-empty').hidden = list.channels.length > 0;
}

async function showChannel(name) {
  openChannel = name;
  const channel = await api(`channel?name=${encodeURIComponent(name)}`);
  $('channel-view').hidden = false;
  $('channel-title').textContent = channel.channel;
  $('channel-position').textContent = `epoch ${channel.epoch} · offset ${channel.offset}`;
  $('channel-presence').replaceChildren(...channel.presence.map((c) => {
    const li = document.createElement('li');
    li.textContent = `${c.user || '(anonymous)'} · ${c.conn}`;
    return li;
  }));
  $('channel-history').replaceChildren(...channel.publications.slice().reverse().map((p) => {
    const li = document.createElement('li');
    const offset = document.createElement('span');
    offset.className = 'offset';
    offset.textContent = `#${p.offset}`;
    const from = p.from?.user ? `${p.from.user}: ` : '';
    li.append(offset, `${from}${JSON.stringify(p.data)}`);
    return li;
  }));
}

$('channel-close').addEventListener('click', () => {
  openChannel = null;
  $('channel-view').hidden = true;
});

$('publish-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const result = $('publish-result');
  let data;
  try {
    data = JSON.parse($('publish-data').value);
  } catch {
    result.textContent = 'That is not JSON.';
    return;
  }
  try {
    const position = await api('publish', { channel: openChannel, data });
    result.textContent = `Published at offset ${position.offset}.`;
    await showChannel(openChannel);
  } catch (e) {
    result.textContent = e.message;
  }
});

for (const id of ['connections-search', 'channels-search']) {
  $(id).addEventListener('input', () => { if (csrf) refresh(); });
}

start();

/** The smallest of 1, 2, 4 or 10 times a power of ten at or above `v`: round gridlines. */
function niceMax(v) {
  const power = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 4, 10].map((m) => m * power).find((m) => m >= v);
}
