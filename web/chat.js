// switchboard chat: the page's UI. The hub is reached through the JavaScript client
// (/switchboard.js, clients/js/ in the repository), which reconnects with backoff, subscribes
// again from where each room was, delivers each message once in order, and takes the
// connection as dead when the hub's heartbeat stops. This file shows what the client reports.
import { Switchboard } from '/switchboard.js';

const HISTORY = 50;            // messages loaded when a room is opened
const GROUP_WINDOW = 5 * 60e3; // consecutive messages of one author within this are grouped

const $ = (id) => document.getElementById(id);
const el = {
  app: $('app'), statusText: $('status-text'), retryNow: $('retry-now'),
  me: $('me'), meAvatar: $('me-avatar'), meName: $('me-name'),
  rooms: $('rooms'), joinRoom: $('join-room'), roomInput: $('room-input'),
  people: $('people'), onlineCount: $('online-count'),
  roomName: $('room-name'), roomMeta: $('room-meta'), messages: $('messages'),
  composer: $('composer'), input: $('message-input'), send: $('send'), sendLabel: $('send-label'),
  welcome: $('welcome'), welcomeForm: $('welcome-form'), nameInput: $('name-input'),
  firstRoomInput: $('first-room-input'), toast: $('toast'),
  menuButton: $('menu-button'), scrim: $('scrim'),
};

const token = new URLSearchParams(location.search).get('token');
const state = {
  name: localStorage.getItem('switchboard.name') || '',
  me: null,              // {user, conn, authenticated?}: who the hub says this page is
  hub: null,             // the Switchboard client (one per name)
  status: 'idle',        // idle | connecting | open | waiting | refused
  everOpen: false,
  retryAt: 0,
  tickTimer: 0,
  refusal: '',           // the hub's reason for refusing the token
  sending: false,        // a publish waits for its ack
  rooms: new Map(),      // name -> room (see newRoom)
  current: null,
  notices: 0,            // notices ever added: orders them against history loaded later
};
// Counters for people debugging a connection, and for the browser tests.
const stats = {
  connects: 0, reconnects: 0, recovered: 0, received: 0,
  get duplicates() {
    let n = 0;
    for (const room of state.rooms.values()) n += room.sub ? room.sub.stats.duplicates : 0;
    return n;
  },
};
window.chat = { stats, state };

// ---- rooms ----------------------------------------------------------------------

function newRoom(name) {
  return {
    name,
    sub: null,           // the client's Subscription, while the room is followed
    epoch: null,         // the epoch of the messages shown
    items: [],           // {kind: 'msg', p} in offset order, and {kind: 'notice', ...}
    online: new Map(),   // conn -> client
    unread: 0,
    subscribed: false,
  };
}

function cleanRoomName(name) {
  return (name || '').trim().replace(/^#+/, '').replace(/\s+/g, '-').slice(0, 64);
}

function saveRooms() {
  localStorage.setItem('switchboard.rooms', JSON.stringify([...state.rooms.keys()]));
}

function joinRoom(raw) {
  const name = cleanRoomName(raw);
  if (!name) return;
  let room = state.rooms.get(name);
  if (!room) {
    room = newRoom(name);
    state.rooms.set(name, room);
    saveRooms();
    follow(room);
  }
  switchTo(name);
}

function leaveRoom(name) {
  const room = state.rooms.get(name);
  if (!room) return;
  state.rooms.delete(name);
  saveRooms();
  room.sub?.unsubscribe();
  room.sub = null;
  if (state.current === name) {
    const next = state.rooms.keys().next();
    if (next.done) joinRoom('lobby'); else switchTo(next.value);
  } else {
    renderRooms();
  }
}

function switchTo(name) {
  state.current = name;
  const room = state.rooms.get(name);
  room.unread = 0;
  if (location.hash.slice(1) !== encodeURIComponent(name)) {
    history.replaceState(null, '', '#' + encodeURIComponent(name));
  }
  el.roomName.textContent = name;
  el.input.placeholder = `Message #${name}`;
  closeDrawer();
  renderRooms();
  renderMessages();
  renderPeople();
}

// Follows a room through the client: it resubscribes after every reconnect by itself.
function follow(room) {
  if (!state.hub || room.sub) return;
  const current = () => room.name === state.current;
  room.sub = state.hub.subscribe(room.name, {
    subscribed: (e) => {
      room.subscribed = true;
      // The first subscription of this client: show what came before it.
      if (!e.resubscribed) loadBefore(room, e.epoch, e.offset);
      refreshPresence(room);
    },
    message: (p) => {
      stats.received += 1;
      if (p.recovered) stats.recovered += 1;
      room.items.push({ kind: 'msg', p });
      if (current()) {
        appendItem(room, room.items.length - 1);
      } else {
        room.unread += 1;
        renderRooms();
      }
    },
    // Delivered after the messages it counts, so the notice lands below them.
    recovered: ({ count }) => {
      const what = count === 1 ? '1 missed message' : `${count} missed messages`;
      notice(room, count ? `Reconnected · ${what} recovered` : 'Reconnected', 'good');
    },
    gap: (g) => {
      const anchor = state.notices;
      if (g.epochChanged) resetRoom(room, g.position.epoch);
      notice(room, `Reconnected · some messages may be missing (${g.reason})`, 'warn');
      // Show the latest of what the server still has, in its place before the notice.
      fill(room, g.position.epoch, g.epochChanged ? 0 : g.previous.offset, g.position.offset, anchor);
    },
    join: (client) => {
      room.online.set(client.conn, client);
      if (current()) renderPeople();
    },
    leave: (client) => {
      room.online.delete(client.conn);
      if (current()) renderPeople();
    },
    error: (e) => toast(`#${room.name}: ${e.message}`),
    unsubscribed: () => {
      room.subscribed = false;
      room.online.clear();
      notice(room, `The server took you out of #${room.name}`, 'warn');
      if (current()) renderPeople();
    },
  });
}

// The messages a room had before this client subscribed, up to the subscription's start.
function loadBefore(room, epoch, offset) {
  if (room.epoch !== epoch) resetRoom(room, epoch);
  const last = lastMessage(room.items);
  fill(room, epoch, last ? last.p.offset : 0, offset, state.notices);
}

// Inserts the history's messages with offsets in (from, to] (those the subscription will not
// deliver) in offset order, before any notice numbered `anchor` or later.
async function fill(room, epoch, from, to, anchor) {
  if (to <= from) return;
  const sub = room.sub;
  let history;
  try {
    history = await sub.history({ limit: HISTORY });
  } catch (e) {
    if (room.sub === sub) toast(`#${room.name}: history not loaded: ${e.message}`);
    return;
  }
  if (room.sub !== sub || room.epoch !== epoch || history.epoch !== epoch) return;
  const older = history.publications.filter((p) => p.offset > from && p.offset <= to);
  if (!older.length) return;
  for (const p of older) {
    let at = room.items.findIndex((it) => (it.kind === 'msg' ? it.p.offset > p.offset : it.seq >= anchor));
    if (at < 0) at = room.items.length;
    room.items.splice(at, 0, { kind: 'msg', p });
  }
  if (room.name === state.current) renderMessages();
}

async function refreshPresence(room) {
  const sub = room.sub;
  try {
    const clients = await sub.presence();
    if (room.sub !== sub) return;
    room.online = new Map(clients.map((c) => [c.conn, c]));
    if (room.name === state.current) renderPeople();
  } catch {
    // Offline again: the next subscription asks again.
  }
}

function resetRoom(room, epoch) {
  room.epoch = epoch;
  room.items = room.items.filter((item) => item.kind !== 'msg');
  if (room.name === state.current) renderMessages();
}

function lastMessage(items) {
  for (let i = items.length - 1; i >= 0; i -= 1) if (items[i].kind === 'msg') return items[i];
  return null;
}

function notice(room, text, tone) {
  room.items.push({ kind: 'notice', text, tone, seq: state.notices++ });
  if (room.name === state.current) appendItem(room, room.items.length - 1);
}

// ---- connection -----------------------------------------------------------------

function start() {
  const hub = new Switchboard('/ws', { name: state.name, token: token || undefined });
  state.hub = hub;
  state.refusal = '';
  // Events of a client replaced by a rename are ignored.
  const on = (type, listener) => hub.on(type, (e) => { if (state.hub === hub) listener(e); });
  on('connecting', () => setStatus('connecting'));
  on('connected', (e) => {
    stats.connects += 1;
    if (e.reconnected) stats.reconnects += 1;
    state.me = e.client;
    state.everOpen = true;
    setStatus('open');
    renderMe();
  });
  // Also when the heartbeat stopped on a socket that still looks open (a dead network).
  on('disconnected', (e) => {
    for (const room of state.rooms.values()) {
      room.subscribed = false;
      room.online.clear();
    }
    renderPeople();
    if (e.willRetry) {
      state.retryAt = Date.now() + e.retryIn;
      setStatus('waiting');
    }
  });
  on('closed', () => setStatus(state.refusal ? 'refused' : 'idle', state.refusal));
  on('error', (e) => {
    if (e.code === 'unauthorized') state.refusal = state.refusal || e.message;
    else if (e.serverCode) toast(e.message);
  });
  for (const room of state.rooms.values()) follow(room);
}

function reconnectNow() {
  if (state.status === 'waiting') state.hub?.connect();
}

function setStatus(status, detail) {
  state.status = status;
  el.app.dataset.status = status;
  clearInterval(state.tickTimer);
  el.retryNow.hidden = status !== 'waiting';
  updateSend();
  switch (status) {
    case 'connecting': el.statusText.textContent = state.everOpen ? 'Reconnecting…' : 'Connecting…'; break;
    case 'open': el.statusText.textContent = 'Connected'; break;
    case 'refused': el.statusText.textContent = `Refused: ${detail}`; break;
    case 'waiting': {
      const tick = () => {
        const seconds = Math.max(1, Math.ceil((state.retryAt - Date.now()) / 1000));
        el.statusText.textContent = `Offline · retrying in ${seconds}s`;
      };
      tick();
      state.tickTimer = setInterval(tick, 500);
      break;
    }
    default: el.statusText.textContent = 'Not connected';
  }
}

// ---- rendering ------------------------------------------------------------------

// A stable colour per name; the golden angle spreads similar names around the wheel.
function hue(name) {
  let h = 2166136261;
  for (const c of name) h = Math.imul(h ^ c.codePointAt(0), 16777619) >>> 0;
  return Math.round((h % 1000) * 137.508) % 360;
}

function initials(name) {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? words[0][0] + words[1][0] : [...(words[0] || '?')].slice(0, 2).join('');
  return letters.toUpperCase();
}

function avatar(name, extra) {
  const span = document.createElement('span');
  span.className = extra ? `avatar ${extra}` : 'avatar';
  span.textContent = initials(name);
  span.style.setProperty('--hue', String(hue(name)));
  span.setAttribute('aria-hidden', 'true');
  return span;
}

function verifiedMark() {
  const span = document.createElement('span');
  span.className = 'verified';
  span.title = 'verified by a token';
  span.innerHTML = '<svg viewBox="0 0 24 24"><path d="M5 12.5l4.5 4.5L19 7.5"/></svg>';
  return span;
}

// A publication with no user is the server's own (the backend, through the server API).
function authorName(from) {
  return from.user || 'server';
}

function isOwn(from) {
  return !!state.me && from.user === state.me.user && !!from.authenticated === !!state.me.authenticated;
}

function sameAuthor(a, b) {
  return a.user === b.user && !!a.authenticated === !!b.authenticated;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function dayLabel(ms) {
  const day = new Date(ms).toDateString();
  const today = new Date();
  if (day === today.toDateString()) return 'Today';
  const yesterday = new Date(today.getTime() - 864e5);
  if (day === yesterday.toDateString()) return 'Yesterday';
  return new Date(ms).toLocaleDateString([], { weekday: 'short', month: 'short', day: 'numeric' });
}

function messageText(data) {
  if (data && typeof data === 'object' && typeof data.text === 'string') return [data.text, false];
  if (typeof data === 'string') return [data, false];
  return [JSON.stringify(data), true];
}

function itemNodes(room, index) {
  const item = room.items[index];
  if (item.kind === 'notice') {
    const li = document.createElement('li');
    li.className = `notice ${item.tone || ''}`;
    li.textContent = item.text;
    return [li];
  }
  const nodes = [];
  const { p } = item;
  // The previous message, and whether a notice stands between (which breaks a group).
  let prev = null;
  let prevAny = null;
  for (let i = index - 1; i >= 0 && !prevAny; i -= 1) {
    if (room.items[i].kind === 'msg') prevAny = room.items[i].p;
  }
  if (index > 0 && room.items[index - 1].kind === 'msg') prev = prevAny;
  if (!prevAny || new Date(prevAny.time).toDateString() !== new Date(p.time).toDateString()) {
    const day = document.createElement('li');
    day.className = 'notice';
    day.textContent = dayLabel(p.time);
    nodes.push(day);
    prev = null;
  }
  const own = isOwn(p.from);
  // Recovered messages start a group of their own, so that their tag heads them.
  const recovered = !!p.recovered;
  const cont = !!prev && sameAuthor(prev.from, p.from) && p.time - prev.time < GROUP_WINDOW
    && !!prev.recovered === recovered;
  const li = document.createElement('li');
  li.className = 'msg' + (own ? ' own' : '') + (cont ? ' cont' : '') + (recovered ? ' recovered' : '');
  li.dataset.offset = String(p.offset);
  if (!own) {
    if (cont) {
      const gutter = document.createElement('span');
      gutter.className = 'gutter';
      li.append(gutter);
    } else {
      li.append(avatar(authorName(p.from)));
    }
  }
  const wrap = document.createElement('div');
  wrap.className = 'bubble-wrap';
  if (!cont) {
    const meta = document.createElement('div');
    meta.className = 'meta';
    if (!own) {
      const author = document.createElement('span');
      author.className = 'author';
      author.textContent = authorName(p.from);
      meta.append(author);
      if (p.from.authenticated) meta.append(verifiedMark());
    }
    const time = document.createElement('time');
    time.dateTime = new Date(p.time).toISOString();
    time.textContent = clock(p.time);
    meta.append(time);
    if (recovered) {
      const tag = document.createElement('span');
      tag.className = 'tag';
      tag.textContent = 'recovered';
      tag.title = 'Sent while you were offline; recovered when the page reconnected';
      meta.append(tag);
    }
    wrap.append(meta);
  }
  const bubble = document.createElement('div');
  const [text, json] = messageText(p.data);
  bubble.className = json ? 'bubble json' : 'bubble';
  bubble.textContent = text;
  bubble.title = `${authorName(p.from)} · ${new Date(p.time).toLocaleString()}`
    + (recovered ? ' · recovered after a reconnect' : '');
  wrap.append(bubble);
  li.append(wrap);
  nodes.push(li);
  return nodes;
}

function nearBottom() {
  const m = el.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

function appendItem(room, index) {
  const stick = nearBottom();
  el.messages.querySelector('.empty')?.remove();
  el.messages.append(...itemNodes(room, index));
  if (stick || isOwnItem(room.items[index])) el.messages.scrollTop = el.messages.scrollHeight;
}

function isOwnItem(item) {
  return item.kind === 'msg' && isOwn(item.p.from);
}

function renderMessages() {
  const room = state.rooms.get(state.current);
  el.messages.replaceChildren();
  if (!room) return;
  if (!room.items.some((it) => it.kind === 'msg')) {
    const empty = document.createElement('li');
    empty.className = 'empty';
    empty.textContent = `No messages in #${room.name} yet. Say hello!`;
    el.messages.append(empty);
  }
  room.items.forEach((_, i) => el.messages.append(...itemNodes(room, i)));
  el.messages.scrollTop = el.messages.scrollHeight;
}

function renderRooms() {
  el.rooms.replaceChildren();
  let unread = 0;
  for (const room of state.rooms.values()) {
    unread += room.unread;
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.className = 'room-link';
    a.href = '#' + encodeURIComponent(room.name);
    a.setAttribute('aria-current', String(room.name === state.current));
    a.addEventListener('click', (e) => { e.preventDefault(); switchTo(room.name); });
    const hash = document.createElement('span');
    hash.className = 'hash';
    hash.textContent = '#';
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = room.name;
    a.append(hash, name);
    if (room.unread) {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = room.unread > 99 ? '99+' : String(room.unread);
      a.append(badge);
    }
    const leave = document.createElement('button');
    leave.className = 'leave';
    leave.type = 'button';
    leave.title = `Leave #${room.name}`;
    leave.setAttribute('aria-label', `Leave #${room.name}`);
    leave.innerHTML = '<svg viewBox="0 0 24 24"><path d="M6 6l12 12M18 6L6 18"/></svg>';
    leave.addEventListener('click', () => leaveRoom(room.name));
    li.append(a, leave);
    el.rooms.append(li);
  }
  document.title = unread ? `(${unread}) switchboard chat` : 'switchboard chat';
}

function renderPeople() {
  const room = state.rooms.get(state.current);
  el.people.replaceChildren();
  const users = new Map();
  for (const c of room ? room.online.values() : []) {
    const key = `${c.authenticated ? 'v' : 'a'}:${c.user}`;
    if (!users.has(key)) users.set(key, c);
  }
  const list = [...users.values()].sort((a, b) => {
    if (isOwn(a) !== isOwn(b)) return isOwn(a) ? -1 : 1;
    return a.user.localeCompare(b.user);
  });
  for (const c of list) {
    const li = document.createElement('li');
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = c.user;
    li.append(avatar(c.user, 'small'), who);
    if (c.authenticated) li.append(verifiedMark());
    if (isOwn(c)) {
      const you = document.createElement('span');
      you.className = 'you';
      you.textContent = 'you';
      li.append(you);
    }
    el.people.append(li);
  }
  el.onlineCount.textContent = list.length ? `· ${list.length}` : '';
  el.roomMeta.textContent = room && room.subscribed ? `${list.length} online` : '';
}

function renderMe() {
  const name = state.me ? state.me.user : state.name;
  el.me.hidden = !name;
  el.meName.textContent = name;
  el.meAvatar.replaceWith(avatar(name, 'small'));
  el.meAvatar = el.me.querySelector('.avatar');
  if (state.current) { renderMessages(); renderPeople(); }
}

let toastTimer = 0;
function toast(text) {
  el.toast.textContent = text;
  el.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.toast.hidden = true; }, 4000);
}

function openDrawer() {
  el.app.classList.add('drawer-open');
  el.scrim.hidden = false;
  el.menuButton.setAttribute('aria-expanded', 'true');
}

function closeDrawer() {
  el.app.classList.remove('drawer-open');
  el.scrim.hidden = true;
  el.menuButton.setAttribute('aria-expanded', 'false');
}

// ---- input --------------------------------------------------------------------

function autosize() {
  el.input.style.height = 'auto';
  el.input.style.height = `${Math.min(el.input.scrollHeight, 160)}px`;
  updateSend();
}

function updateSend() {
  el.send.disabled = state.status !== 'open' || state.sending || !el.input.value.trim();
  el.sendLabel.textContent = state.sending ? 'Sending…' : 'Send';
}

// The text stays in the box, read-only, until the hub acknowledges it: a send that fails
// leaves it there to send again, and the message itself shows when the room delivers it.
async function sendMessage() {
  const text = el.input.value.trim();
  const room = state.rooms.get(state.current);
  if (!text || state.status !== 'open' || state.sending || !room?.sub) return;
  state.sending = true;
  el.input.readOnly = true;
  el.composer.setAttribute('aria-busy', 'true');
  updateSend();
  try {
    await room.sub.publish({ text });
    el.input.value = '';
  } catch (e) {
    toast(e.code === 'connection_lost'
      ? 'The connection dropped before the server confirmed your message: it may or may not have been sent. It is still in the box.'
      : `Not sent: ${e.message}. It is still in the box.`);
  } finally {
    state.sending = false;
    el.input.readOnly = false;
    el.composer.removeAttribute('aria-busy');
    autosize();
  }
}

el.composer.addEventListener('submit', (e) => { e.preventDefault(); sendMessage(); });
el.input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    sendMessage();
  }
});
el.input.addEventListener('input', autosize);
el.joinRoom.addEventListener('submit', (e) => {
  e.preventDefault();
  joinRoom(el.roomInput.value);
  el.roomInput.value = '';
});
el.retryNow.addEventListener('click', reconnectNow);
el.menuButton.addEventListener('click', () => {
  if (el.app.classList.contains('drawer-open')) closeDrawer(); else openDrawer();
});
el.scrim.addEventListener('click', closeDrawer);
document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeDrawer(); });
el.me.addEventListener('click', () => {
  el.nameInput.value = state.name;
  el.firstRoomInput.value = state.current || 'lobby';
  el.welcome.hidden = false;
  el.nameInput.focus();
});
el.welcomeForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = el.nameInput.value.trim().slice(0, 32);
  if (!name) return;
  const renamed = name !== state.name;
  state.name = name;
  localStorage.setItem('switchboard.name', name);
  el.welcome.hidden = true;
  if (renamed && state.hub) {
    // A new name is a new client: each room keeps what it shows and, once subscribed
    // again, loads from history what came in between.
    const old = state.hub;
    state.hub = null;
    state.me = null;
    for (const room of state.rooms.values()) {
      room.sub = null;
      room.subscribed = false;
      room.online.clear();
    }
    old.close();
  }
  joinRoom(el.firstRoomInput.value || 'lobby');
  renderMe();
  if (!state.hub) start();
  el.input.focus();
});
document.addEventListener('visibilitychange', () => { if (!document.hidden) reconnectNow(); });
window.addEventListener('hashchange', () => {
  const name = cleanRoomName(decodeURIComponent(location.hash.slice(1)));
  if (name && name !== state.current) joinRoom(name);
});

// ---- start ----------------------------------------------------------------------

let saved = [];
try { saved = JSON.parse(localStorage.getItem('switchboard.rooms') || '[]'); } catch { saved = []; }
for (const name of saved) {
  const clean = cleanRoomName(String(name));
  if (clean && !state.rooms.has(clean)) state.rooms.set(clean, newRoom(clean));
}
const fromHash = cleanRoomName(decodeURIComponent(location.hash.slice(1)));
if (state.name) {
  joinRoom(fromHash || state.rooms.keys().next().value || 'lobby');
  renderMe();
  start();
} else {
  if (fromHash) el.firstRoomInput.value = fromHash;
  el.welcome.hidden = false;
  el.nameInput.focus();
}
