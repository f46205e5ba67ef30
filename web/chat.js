// switchboard chat: the hub protocol over one WebSocket at /ws (see the README).
//
// Each room remembers its stream position (epoch, offset). After a disconnect the page
// reconnects with backoff and subscribes again with `since` = that position: the server
// replays exactly what was missed, or says it cannot (`recovered: false`), and the page then
// reloads recent history. Messages are keyed by offset, so nothing shows twice.
'use strict';

(() => {
  const HISTORY = 50;            // messages loaded when a room is opened
  const BASE_DELAY = 1000;       // first reconnect delay, ms; doubles up to MAX_DELAY
  const MAX_DELAY = 15000;
  const GROUP_WINDOW = 5 * 60e3; // consecutive messages of one author within this are grouped

  const $ = (id) => document.getElementById(id);
  const el = {
    app: $('app'), statusText: $('status-text'), retryNow: $('retry-now'),
    me: $('me'), meAvatar: $('me-avatar'), meName: $('me-name'),
    rooms: $('rooms'), joinRoom: $('join-room'), roomInput: $('room-input'),
    people: $('people'), onlineCount: $('online-count'),
    roomName: $('room-name'), roomMeta: $('room-meta'), messages: $('messages'),
    composer: $('composer'), input: $('message-input'), send: $('send'),
    welcome: $('welcome'), welcomeForm: $('welcome-form'), nameInput: $('name-input'),
    firstRoomInput: $('first-room-input'), toast: $('toast'),
    menuButton: $('menu-button'), scrim: $('scrim'),
  };

  const token = new URLSearchParams(location.search).get('token');
  const state = {
    name: localStorage.getItem('switchboard.name') || '',
    me: null,              // {user, conn, authenticated?} from the `connected` frame
    socket: null,
    status: 'idle',        // idle | connecting | open | waiting | refused
    everOpen: false,
    attempt: 0,
    retryAt: 0,
    retryTimer: 0,
    tickTimer: 0,
    nextId: 1,
    pending: new Map(),    // request id -> {resolve, reject}
    rooms: new Map(),      // name -> room (see newRoom)
    current: null,
  };
  // Counters for people debugging a connection, and for the browser tests.
  const stats = { connects: 0, reconnects: 0, recovered: 0, duplicates: 0, received: 0 };
  window.chat = { stats, state, get socket() { return state.socket; } };

  // ---- rooms ----------------------------------------------------------------

  function newRoom(name) {
    return {
      name,
      epoch: null,         // null until the first history/subscribe reply
      offset: 0,           // latest offset seen
      items: [],           // {kind: 'msg', p} sorted by offset, and {kind: 'notice', ...}
      seen: new Set(),     // offsets shown
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
      if (state.status === 'open') sync(room);
    }
    switchTo(name);
  }

  function leaveRoom(name) {
    const room = state.rooms.get(name);
    if (!room) return;
    state.rooms.delete(name);
    saveRooms();
    if (room.subscribed) request({ op: 'unsubscribe', channel: name }).catch(() => {});
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

  // ---- connection -------------------------------------------------------------

  function connect() {
    clearTimeout(state.retryTimer);
    if (state.socket) return;
    const url = new URL('/ws', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('name', state.name);
    if (token) url.searchParams.set('token', token);
    const ws = new WebSocket(url);
    state.socket = ws;
    setStatus('connecting');

    ws.onopen = () => {
      if (state.socket !== ws) return;
      stats.connects += 1;
      if (state.everOpen) stats.reconnects += 1;
      state.attempt = 0;
      setStatus('open');
      for (const room of state.rooms.values()) sync(room, state.everOpen);
      state.everOpen = true;
    };
    ws.onmessage = (event) => {
      if (state.socket !== ws) return;
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      handle(frame);
    };
    ws.onclose = (event) => {
      if (state.socket !== ws) return;
      state.socket = null;
      for (const { reject } of state.pending.values()) reject(new Error('connection lost'));
      state.pending.clear();
      for (const room of state.rooms.values()) {
        room.subscribed = false;
        room.online.clear();
      }
      renderPeople();
      if (event.code === 1008) {
        // Refused (an invalid or expired token): retrying would be refused again.
        setStatus('refused', state.refusal || event.reason || 'refused by the server');
        return;
      }
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    const delay = Math.min(MAX_DELAY, BASE_DELAY * 2 ** state.attempt) * (0.8 + Math.random() * 0.4);
    state.attempt += 1;
    state.retryAt = Date.now() + delay;
    state.retryTimer = setTimeout(connect, delay);
    setStatus('waiting');
  }

  function reconnectNow() {
    if (state.status === 'waiting') connect();
  }

  function setStatus(status, detail) {
    state.status = status;
    el.app.dataset.status = status;
    clearInterval(state.tickTimer);
    el.retryNow.hidden = status !== 'waiting';
    el.send.disabled = status !== 'open' || !el.input.value.trim();
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

  function request(body) {
    return new Promise((resolve, reject) => {
      const ws = state.socket;
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject(new Error('not connected'));
        return;
      }
      const id = state.nextId++;
      state.pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ ...body, id }));
    });
  }

  function handle(frame) {
    const waiting = frame.id != null ? state.pending.get(frame.id) : undefined;
    if (waiting) state.pending.delete(frame.id);
    switch (frame.type) {
      case 'connected':
        state.me = frame.client;
        renderMe();
        break;
      case 'message':
        onMessage(frame);
        break;
      case 'join':
      case 'leave':
        onPresence(frame);
        break;
      case 'error':
        if (frame.code === 'unauthorized') state.refusal = frame.reason;
        if (waiting) waiting.reject(Object.assign(new Error(frame.reason), { code: frame.code }));
        else toast(frame.reason);
        break;
      default:
        if (waiting) waiting.resolve(frame);
    }
  }

  // Opens a room: recent history, then a subscription from the end of it (no gap between
  // the two: `since` covers whatever was published in between).
  async function load(room) {
    const history = await request({ op: 'history', channel: room.name, limit: HISTORY });
    if (room.epoch !== history.epoch) resetRoom(room, history.epoch);
    for (const p of history.publications) addPublication(room, p, false);
    const since = { epoch: history.epoch, offset: history.offset };
    const reply = await request({ op: 'subscribe', channel: room.name, since });
    subscribed(room, reply, false);
  }

  // After a reconnect: subscribe from where the room was.
  async function resume(room) {
    const since = { epoch: room.epoch, offset: room.offset };
    const reply = await request({ op: 'subscribe', channel: room.name, since });
    subscribed(room, reply, true);
    if (!reply.recovered) {
      // Some messages are gone for good: show the recent history instead.
      const history = await request({ op: 'history', channel: room.name, limit: HISTORY });
      for (const p of history.publications) addPublication(room, p, false);
    }
  }

  function subscribed(room, reply, reconnecting) {
    room.subscribed = true;
    if (reply.recovered) {
      let recovered = 0;
      for (const p of reply.publications) if (addPublication(room, p, true)) recovered += 1;
      stats.recovered += recovered;
      if (reconnecting) {
        const what = recovered === 1 ? '1 missed message' : `${recovered} missed messages`;
        notice(room, recovered ? `Reconnected · ${what} recovered` : 'Reconnected', 'good');
      }
    } else {
      if (reply.epoch !== room.epoch) resetRoom(room, reply.epoch);
      notice(room, `Reconnected · some messages may be missing (${reply.reason})`, 'warn');
    }
    room.epoch = reply.epoch;
    room.offset = Math.max(room.offset, reply.offset);
  }

  async function sync(room, reconnecting) {
    try {
      if (room.epoch === null || !reconnecting) await load(room);
      else await resume(room);
      const presence = await request({ op: 'presence', channel: room.name });
      room.online = new Map(presence.clients.map((c) => [c.conn, c]));
      if (room.name === state.current) renderPeople();
    } catch (e) {
      if (state.status === 'open') toast(`#${room.name}: ${e.message}`);
    }
  }

  function resetRoom(room, epoch) {
    room.epoch = epoch;
    room.offset = 0;
    room.seen.clear();
    room.items = room.items.filter((item) => item.kind !== 'msg');
    if (room.name === state.current) renderMessages();
  }

  // ---- events -------------------------------------------------------------------

  function onMessage(frame) {
    const room = state.rooms.get(frame.channel);
    if (!room) return;
    stats.received += 1;
    if (addPublication(room, frame, true) && room.name !== state.current) {
      room.unread += 1;
      renderRooms();
    }
  }

  function onPresence(frame) {
    const room = state.rooms.get(frame.channel);
    if (!room || !room.subscribed) return;
    if (frame.type === 'join') room.online.set(frame.client.conn, frame.client);
    else room.online.delete(frame.client.conn);
    if (room.name === state.current) renderPeople();
  }

  // Adds a publication unless its offset is already shown; `live` counts a repeat as a
  // duplicate delivery (history reloads overlap on purpose and are not counted).
  function addPublication(room, p, live) {
    if (room.seen.has(p.offset)) {
      if (live) stats.duplicates += 1;
      return false;
    }
    room.seen.add(p.offset);
    room.offset = Math.max(room.offset, p.offset);
    const item = { kind: 'msg', p: { offset: p.offset, time: p.time, from: p.from, data: p.data } };
    const last = lastMessage(room.items);
    if (!last || last.p.offset < p.offset) {
      room.items.push(item);
      if (room.name === state.current) appendItem(room, room.items.length - 1);
    } else {
      // Older than what is shown (a history reload after a gap): put it in its place.
      let at = room.items.findIndex((it) => it.kind === 'msg' && it.p.offset > p.offset);
      if (at < 0) at = room.items.length;
      room.items.splice(at, 0, item);
      if (room.name === state.current) renderMessages();
    }
    return true;
  }

  function lastMessage(items) {
    for (let i = items.length - 1; i >= 0; i -= 1) if (items[i].kind === 'msg') return items[i];
    return null;
  }

  function notice(room, text, tone) {
    room.items.push({ kind: 'notice', text, tone });
    if (room.name === state.current) appendItem(room, room.items.length - 1);
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
    const cont = !!prev && sameAuthor(prev.from, p.from) && p.time - prev.time < GROUP_WINDOW;
    const li = document.createElement('li');
    li.className = 'msg' + (own ? ' own' : '') + (cont ? ' cont' : '');
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
      wrap.append(meta);
    }
    const bubble = document.createElement('div');
    const [text, json] = messageText(p.data);
    bubble.className = json ? 'bubble json' : 'bubble';
    bubble.textContent = text;
    bubble.title = `${authorName(p.from)} · ${new Date(p.time).toLocaleString()}`;
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
    el.send.disabled = state.status !== 'open' || !el.input.value.trim();
  }

  function sendMessage() {
    const text = el.input.value.trim();
    if (!text || state.status !== 'open' || !state.current) return;
    const channel = state.current;
    request({ op: 'publish', channel, data: { text } }).catch((e) => toast(`Not sent: ${e.message}`));
    el.input.value = '';
    autosize();
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
    joinRoom(el.firstRoomInput.value || 'lobby');
    if (renamed && state.socket) {
      // A new name is a new connection: rooms resume from where they were.
      const old = state.socket;
      state.socket = null;
      old.close(1000, 'renamed');
      for (const room of state.rooms.values()) room.subscribed = false;
    }
    renderMe();
    connect();
    el.input.focus();
  });
  window.addEventListener('online', reconnectNow);
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
    connect();
  } else {
    if (fromHash) el.firstRoomInput.value = fromHash;
    el.welcome.hidden = false;
    el.nameInput.focus();
  }
})();
