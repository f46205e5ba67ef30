// switchboard.js: a client of the switchboard hub (the JSON protocol of the README, "The hub
// protocol") for browsers and Node >= 22. One ES module, no dependencies, no build step; the
// API reference is switchboard.d.ts next to it.
//
// What it promises: a subscription sees every message of its channel once, in offset order,
// across reconnects. After a disconnect it reconnects (exponential backoff, full jitter),
// subscribes again with `since` = the last position it delivered, and drops any offset it has
// already delivered. When the server cannot replay what was missed (a new epoch, history too
// short), the subscription says so with a `gap` event rather than carrying on as if nothing
// happened.

/** @typedef {{user: string, conn: string, authenticated?: boolean, info?: unknown}} ClientInfo */
/** @typedef {{channel: string, offset: number, time?: number, from: ClientInfo, data: unknown, recovered?: boolean}} Publication */
/** @typedef {{epoch: string, offset: number}} Position */

const DEFAULTS = {
  timeout: 10_000, // ms: connect (to `connected`), acks and replies, token fetches
  minDelay: 500, // ms: first reconnect delay bound; doubles per failed attempt
  maxDelay: 20_000, // ms: reconnect delay bound
  maxQueue: 100, // requests kept while offline
};

/** The longest delay a timer takes. */
const MAX_TIMER = 2 ** 31 - 1;

/** The longest retry hint honoured: a longer one is taken as this. */
const MAX_RETRY_AFTER = 10 * 60_000;

/** An error the client reports: `code` says what kind, for programs. */
export class SwitchboardError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {object} [extra]
   */
  constructor(code, message, extra) {
    super(message);
    this.name = 'SwitchboardError';
    /** @type {string} */
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/** A small event emitter: listeners that throw do not break the client. */
class Emitter {
  /** @type {Map<string, Set<Function>>} */
  #listeners = new Map();

  /**
   * Calls `listener` on each `type` event; returns a function that removes it.
   * @param {string} type
   * @param {Function} listener
   */
  on(type, listener) {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => this.off(type, listener);
  }

  /** @param {string} type @param {Function} listener */
  off(type, listener) {
    this.#listeners.get(type)?.delete(listener);
  }

  /** @param {string} type @param {unknown} [detail] */
  emit(type, detail) {
    const set = this.#listeners.get(type);
    if (!set || set.size === 0) return false;
    for (const listener of [...set]) {
      try {
        listener(detail);
      } catch (e) {
        // A listener's bug is reported as the platform reports uncaught errors, outside the
        // client's own state changes.
        setTimeout(() => {
          throw e;
        });
      }
    }
    return true;
  }
}

/** Milliseconds until a JWT's `exp`, or null when it has none or cannot be read. */
function tokenExpiresIn(token, now = Date.now()) {
  try {
    const part = token.split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const json = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    const { exp } = JSON.parse(json);
    return typeof exp === 'number' ? exp * 1000 - now : null;
  } catch {
    return null;
  }
}

/** How long before expiry a token is replaced: a tenth of what is left, 5 s to 60 s. */
function refreshMargin(left) {
  return Math.min(60_000, Math.max(5_000, left / 10));
}

/** The hub's WebSocket URL: ws(s) for http(s), relative to the page in a browser. */
function hubUrl(url) {
  const base = globalThis.location?.href;
  const u = base ? new URL(url, base) : new URL(url);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  return u;
}

/** A client of one hub: one WebSocket, reconnected as needed, shared by its subscriptions. */
export class Switchboard extends Emitter {
  #url;
  #options;
  /** @type {typeof WebSocket} */
  #WebSocket;
  /** @type {'disconnected' | 'connecting' | 'connected' | 'closed'} */
  #state = 'disconnected';
  /** @type {WebSocket | null} */
  #ws = null;
  /** Bumped by every new attempt and every drop: late callbacks of an older one do nothing. */
  #generation = 0;
  #attempt = 0;
  #everConnected = false;
  #token;
  /** @type {ClientInfo | null} */
  #me = null;
  #nextId = 1;
  /** Requests sent on the current connection, by id. */
  #inflight = new Map();
  /** Requests waiting for a connection, in order. */
  #queue = [];
  /** @type {Map<string, Subscription>} */
  #subs = new Map();
  #timers = { retry: 0, connect: 0, heartbeat: 0, refresh: 0 };
  #lastFrame = 0;
  /** The `disconnect` hint of the current connection, if it sent one. */
  #hint = null;
  /** The server's `unauthorized` error on the current connection, if it sent one. */
  #refusal = null;
  #offline = false;
  #onOffline = () => this.#wentOffline();
  #onOnline = () => this.#cameOnline();

  /**
   * @param {string | URL} url the hub's WebSocket endpoint, e.g. `wss://example.com/ws`
   * @param {import('./switchboard.d.ts').SwitchboardOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    this.#options = { ...DEFAULTS, ...options };
    this.#token = options.token ?? null;
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.#WebSocket !== 'function') {
      throw new TypeError('no WebSocket here: pass options.WebSocket (Node < 22: run with --experimental-websocket)');
    }
    this.#url = hubUrl(String(url));
    if (this.#options.autoConnect !== false) queueMicrotask(() => this.connect());
  }

  /** 'disconnected', 'connecting', 'connected', or 'closed' (by `close()` or a refusal). */
  get state() {
    return this.#state;
  }

  /** Who the hub says this client is, once connected. */
  get client() {
    return this.#me;
  }

  /** Connects now unless connected or connecting: while waiting to retry, retries at once; after `close()`, starts again. */
  connect() {
    if (this.#ws || this.#state === 'connecting' || this.#state === 'connected') return;
    if (typeof globalThis.addEventListener === 'function') {
      globalThis.addEventListener('offline', this.#onOffline);
      globalThis.addEventListener('online', this.#onOnline);
    }
    this.#open();
  }

  /** Closes the connection for good: no reconnect; what waits is rejected. */
  close() {
    if (typeof globalThis.removeEventListener === 'function') {
      globalThis.removeEventListener('offline', this.#onOffline);
      globalThis.removeEventListener('online', this.#onOnline);
    }
    this.#drop(1000, 'closed by the client', { final: true });
  }

  /**
   * Subscribes to `channel`; the subscription lasts until `unsubscribe()`, across reconnects.
   * With `{ joinLeave: false }` the channel's `join` and `leave` events are not sent (for a
   * large channel, where each subscribe would reach every subscriber).
   * @param {string} channel
   * @param {import('./switchboard.d.ts').SubscriptionHandlers} [handlers]
   * @param {import('./switchboard.d.ts').SubscribeOptions} [options]
   * @returns {Subscription}
   */
  subscribe(channel, handlers = {}, options = {}) {
    if (this.#subs.has(channel)) throw new Error(`already subscribed to ${channel}`);
    const sub = new Subscription(this, channel, this.#internals, options.joinLeave !== false);
    for (const [type, fn] of Object.entries(handlers)) if (typeof fn === 'function') sub.on(type, fn);
    this.#subs.set(channel, sub);
    if (this.#state === 'connected') this.#sendSubscribe(sub);
    return sub;
  }

  /**
   * Publishes on `channel` (subscribed or not). Resolves with the message's offset once the
   * hub acks it; while offline the publish waits in a bounded queue. Rejects (with a
   * SwitchboardError) past the timeout, when the queue is full, or when the connection is lost
   * after sending it (the message may then have been published or not). The promise is marked
   * handled: ignoring it never causes an unhandled rejection.
   * @param {string} channel
   * @param {unknown} data any JSON value but null
   * @returns {Promise<number>}
   */
  publish(channel, data) {
    if (data === undefined || data === null) {
      return handled(Promise.reject(new SwitchboardError('bad_request', 'publish needs data (any JSON value but null)')));
    }
    return handled(this.#request({ op: 'publish', channel, data }, false).then((reply) => reply.offset));
  }

  // ---- what subscriptions use (not public: passed to them) ----------------------------

  #internals = {
    request: (frame, retry) => this.#request(frame, retry),
    unsubscribe: (sub, tell) => {
      if (this.#subs.get(sub.channel) !== sub) return;
      this.#subs.delete(sub.channel);
      if (!tell || this.#state !== 'connected') return;
      // The reply is consumed here, so that it cannot reach a new subscription of the channel.
      const id = this.#nextId++;
      this.#inflight.set(id, { retry: false, resolve() {}, reject() {} });
      this.#send({ op: 'unsubscribe', channel: sub.channel, id });
    },
    resubscribeLater: (sub, generation) => {
      const delay = this.#backoff(1);
      setTimeout(() => {
        if (generation === this.#generation && this.#subs.get(sub.channel) === sub) this.#sendSubscribe(sub);
      }, delay);
    },
    generation: () => this.#generation,
    timeout: () => this.#options.timeout,
  };

  // ---- connecting -------------------------------------------------------------------

  async #open() {
    // An attempt replaces any scheduled one, which would open a second socket.
    clearTimeout(this.#timers.retry);
    const generation = ++this.#generation;
    this.#setState('connecting', { attempt: this.#attempt });
    this.#hint = null;
    this.#refusal = null;
    let token = this.#token;
    const getToken = this.#options.getToken;
    if (getToken && (!token || (tokenExpiresIn(token) ?? Infinity) < refreshMargin(0))) {
      try {
        token = await this.#fetchToken();
      } catch (e) {
        if (generation !== this.#generation) return;
        this.#error('token_failed', `getToken failed: ${e?.message ?? e}`, { cause: e });
        this.#retry(this.#backoff(++this.#attempt), 1006, 'no token');
        return;
      }
      if (generation !== this.#generation) return;
      if (!token) {
        this.#error('unauthorized', 'getToken gave no token: not connecting');
        this.#stop();
        return;
      }
    }
    const url = new URL(this.#url);
    if (this.#options.name) url.searchParams.set('name', this.#options.name);
    if (token) url.searchParams.set('token', token);
    let ws;
    try {
      ws = new this.#WebSocket(url.href);
    } catch (e) {
      this.#error('bad_url', `cannot open ${this.#url.href}: ${e?.message ?? e}`, { cause: e });
      this.#stop();
      return;
    }
    this.#ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (event) => {
      if (this.#ws === ws) this.#onFrame(event.data);
    };
    const ended = (code, reason) => {
      if (this.#ws !== ws) return;
      if (!opened) {
        this.#error('connect_failed', `cannot connect to ${this.#url.href}: no WebSocket upgrade (unreachable, or not a switchboard hub)`);
      } else if (!this.#me && !this.#refusal) {
        this.#error('protocol_error', `${this.#url.href} closed (${code}) before its \`connected\` frame: not a switchboard hub?`);
      }
      this.#drop(code, reason);
    };
    // An error event means the connection failed (1006; browsers tell scripts nothing more).
    // Its close event should follow, but some runtimes skip it when the handshake fails.
    ws.onerror = () => ended(1006, 'connection failed');
    ws.onclose = (event) => ended(event.code, event.reason);
    this.#timers.connect = setTimeout(() => {
      if (this.#ws !== ws) return;
      const what = opened ? 'no `connected` frame from the server: not a switchboard hub?' : 'the WebSocket did not open';
      this.#error('connect_timeout', `cannot connect to ${this.#url.href} within ${this.#options.timeout} ms: ${what}`);
      this.#drop(1006, 'connect timeout');
    }, this.#options.timeout);
  }

  async #fetchToken() {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer in ${this.#options.timeout} ms`)), this.#options.timeout);
    });
    try {
      const token = await Promise.race([Promise.resolve().then(() => this.#options.getToken()), timeout]);
      this.#token = token || null;
      return this.#token;
    } finally {
      clearTimeout(timer);
    }
  }

  /** @param {unknown} raw */
  #onFrame(raw) {
    this.#lastFrame = Date.now();
    if (typeof raw !== 'string') {
      this.#protocolError('a binary frame: the hub speaks JSON in text frames');
      return;
    }
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      this.#protocolError(`a frame that is not JSON: ${raw.slice(0, 80)}`);
      return;
    }
    if (frame === null || typeof frame !== 'object' || typeof frame.type !== 'string') {
      this.#protocolError(`a frame with no type: ${raw.slice(0, 80)}`);
      return;
    }
    if (!this.#me && frame.type !== 'connected' && frame.type !== 'error') {
      this.#protocolError(`the first frame is ${frame.type}, not connected: not a switchboard hub?`);
      return;
    }
    const waiting = frame.id != null ? this.#inflight.get(frame.id) : undefined;
    if (waiting) this.#inflight.delete(frame.id);
    switch (frame.type) {
      case 'connected':
        this.#onConnected(frame);
        break;
      case 'heartbeat':
        break;
      case 'disconnect':
        this.#onHint(frame);
        break;
      case 'message':
      case 'join':
      case 'leave':
        this.#subs.get(frame.channel)?.[SUB_EVENT](frame);
        break;
      case 'subscribed':
        if (waiting) waiting.resolve(frame);
        break;
      case 'unsubscribed':
        if (waiting) break;
        this.#subs.get(frame.channel)?.[SUB_EVENT](frame);
        this.#subs.delete(frame.channel);
        break;
      case 'error': {
        const error = new SwitchboardError(frame.code ?? 'error', frame.reason ?? 'refused', { serverCode: frame.code });
        if (waiting) {
          waiting.reject(error);
        } else {
          if (frame.code === 'unauthorized') this.#refusal = error;
          this.#error(frame.code ?? 'error', frame.reason ?? 'refused', { serverCode: frame.code });
        }
        break;
      }
      default:
        if (waiting) waiting.resolve(frame);
    }
  }

  #onConnected(frame) {
    clearTimeout(this.#timers.connect);
    this.#me = frame.client ?? null;
    this.#attempt = 0;
    const reconnected = this.#everConnected;
    this.#everConnected = true;
    this.#offline = false;
    const heartbeat = typeof frame.heartbeat === 'number' && frame.heartbeat > 0 ? frame.heartbeat * 1000 : 0;
    if (heartbeat) {
      // Dead after about two intervals without any frame; checked every half interval.
      const ws = this.#ws;
      this.#timers.heartbeat = setInterval(() => {
        if (this.#ws === ws && Date.now() - this.#lastFrame > 2 * heartbeat) {
          this.#error('heartbeat_missed', `no frame from the server for ${2 * heartbeat} ms: the connection is taken as dead`);
          this.#drop(1006, 'heartbeat missed');
        }
      }, heartbeat / 2);
    }
    // Subscriptions first, then what waited, then the event: a listener that subscribes or
    // publishes does so once, after them.
    this.#state = 'connected';
    for (const sub of this.#subs.values()) this.#sendSubscribe(sub);
    for (const request of this.#queue.splice(0)) this.#transmit(request);
    this.#scheduleRefresh();
    this.emit('connected', { client: this.#me, heartbeat: heartbeat / 1000, reconnected });
  }

  #onHint(frame) {
    const after = Number(frame.retry_after_ms);
    if ((frame.code === 1012 || frame.code === 1013) && Number.isFinite(after) && after >= 0) {
      this.#hint = { code: frame.code, reason: frame.reason, retryAfter: Math.min(after, MAX_RETRY_AFTER) };
    }
  }

  #protocolError(what) {
    this.#error('protocol_error', `the server sent ${what}`);
    this.#drop(1006, 'protocol error');
  }

  /** Replaces a token before it expires: a new one, then a new connection (which recovers). */
  #scheduleRefresh() {
    clearTimeout(this.#timers.refresh);
    if (!this.#options.getToken || !this.#token) return;
    const left = tokenExpiresIn(this.#token);
    if (left === null) return;
    const generation = this.#generation;
    const due = left - refreshMargin(left);
    // Timers hold at most 2^31 - 1 ms (about 24 days): a longer wait is taken in steps.
    if (due > MAX_TIMER) {
      this.#timers.refresh = setTimeout(() => this.#scheduleRefresh(), MAX_TIMER);
      return;
    }
    this.#timers.refresh = setTimeout(async () => {
      try {
        await this.#fetchToken();
      } catch (e) {
        // The server closes the connection at expiry; the reconnect asks again.
        this.#error('token_failed', `getToken failed: ${e?.message ?? e}`, { cause: e });
        return;
      }
      if (generation !== this.#generation || this.#state !== 'connected') return;
      this.#drop(1000, 'token refresh', { retryIn: 0 });
    }, Math.max(0, due));
  }

  #wentOffline() {
    this.#offline = true;
    if (this.#ws) this.#drop(1006, 'offline');
  }

  #cameOnline() {
    if (!this.#offline) return;
    this.#offline = false;
    if (this.#state === 'disconnected') {
      this.#attempt = 0;
      clearTimeout(this.#timers.retry);
      this.#open();
    }
  }

  // ---- disconnecting ----------------------------------------------------------------

  /**
   * Ends the current connection (if any) and decides what next: reconnect after a delay,
   * or stop. Every way a connection ends comes here once.
   */
  #drop(code, reason, { final = false, retryIn } = {}) {
    const ws = this.#ws;
    const wasConnected = this.#state === 'connected';
    this.#ws = null;
    this.#generation += 1;
    for (const key of ['connect', 'heartbeat', 'refresh', 'retry']) {
      clearTimeout(this.#timers[key]);
      clearInterval(this.#timers[key]);
    }
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try {
        // Browsers accept 1000 or 3000-4999 from a script.
        ws.close(1000, reason && reason.length < 100 ? reason : undefined);
      } catch {
        // Already closing.
      }
    }
    const lost = new SwitchboardError('connection_lost', 'the connection was lost before the reply (a publish may or may not have been applied)');
    for (const request of this.#inflight.values()) {
      if (request.retry) this.#queue.push(request);
      else this.#settle(request, lost);
    }
    this.#inflight.clear();
    const refusal = this.#refusal;
    const hint = this.#hint;
    this.#me = null;
    if (final || this.#state === 'closed') {
      if (wasConnected || ws) this.#emitDisconnected(code, reason, false);
      this.#stop();
      return;
    }
    // Refused (a bad or expired token): the same token would be refused again.
    if (code === 1008 || refusal) {
      const why = refusal?.message ?? reason ?? 'refused';
      if (!this.#options.getToken) {
        this.#emitDisconnected(code, reason, false);
        this.#error('unauthorized', `refused by the server: ${why}`, { closeCode: code });
        this.#stop();
        return;
      }
      this.#token = null; // getToken gives another on the next attempt
    }
    let delay = retryIn ?? this.#backoff(++this.#attempt);
    if (hint && (code === 1012 || code === 1013 || code === 1006 || code === hint.code)) {
      // At least what the server asked, plus jitter so that its clients do not return at once.
      delay = hint.retryAfter + Math.random() * Math.min(this.#options.maxDelay, Math.max(hint.retryAfter, this.#options.minDelay));
    } else if (code === 1012 || code === 1013) {
      delay = Math.max(delay, this.#options.minDelay);
    }
    if (this.#offline) delay = Math.max(delay, this.#options.maxDelay);
    this.#retry(delay, code, reason);
  }

  /** No more connections until `connect()`: what waits is rejected. */
  #stop() {
    this.#setState('closed');
    for (const request of this.#queue.splice(0)) {
      this.#settle(request, new SwitchboardError('closed', 'the client is closed'));
    }
  }

  #retry(delay, code, reason) {
    // Scheduled before the event, so that a listener calling connect() replaces it.
    this.#timers.retry = setTimeout(() => this.#open(), delay);
    this.#emitDisconnected(code, reason, true, delay);
  }

  #emitDisconnected(code, reason, willRetry, retryIn) {
    const detail = { code, reason: reason ?? '', willRetry };
    if (willRetry) detail.retryIn = Math.round(retryIn);
    this.#state = 'disconnected';
    this.emit('disconnected', detail);
  }

  /** Full jitter: uniform in [0, min(max, min * 2^attempt)). */
  #backoff(attempt) {
    const { minDelay, maxDelay } = this.#options;
    return Math.random() * Math.min(maxDelay, minDelay * 2 ** Math.min(attempt, 30));
  }

  #setState(state, detail) {
    if (this.#state === state && state !== 'connecting') return;
    this.#state = state;
    if (state !== 'disconnected') this.emit(state, detail);
  }

  #error(code, message, extra) {
    const error = new SwitchboardError(code, message, extra);
    if (!this.emit('error', error)) console.warn(`switchboard: ${message}`);
  }

  // ---- requests ---------------------------------------------------------------------

  /**
   * Sends a request now, or queues it until connected; resolves with the reply.
   * `retry`: whether to send it again after a reconnect (reads) or fail (publishes).
   */
  #request(frame, retry) {
    let request;
    const promise = new Promise((resolve, reject) => {
      request = { frame, retry, resolve, reject, timer: 0 };
    });
    handled(promise);
    if (this.#state === 'closed') {
      this.#settle(request, new SwitchboardError('closed', 'the client is closed'));
      return promise;
    }
    request.timer = setTimeout(() => {
      this.#forget(request);
      this.#settle(request, new SwitchboardError('timeout', `no reply to ${frame.op} within ${this.#options.timeout} ms`));
    }, this.#options.timeout);
    if (this.#state === 'connected') {
      this.#transmit(request);
    } else if (this.#queue.length >= this.#options.maxQueue) {
      this.#settle(request, new SwitchboardError('queue_full', `offline, and ${this.#queue.length} requests already wait`));
    } else {
      this.#queue.push(request);
    }
    return promise;
  }

  #transmit(request) {
    const id = this.#nextId++;
    this.#inflight.set(id, request);
    this.#send({ ...request.frame, id });
  }

  #forget(request) {
    const at = this.#queue.indexOf(request);
    if (at >= 0) this.#queue.splice(at, 1);
    for (const [id, r] of this.#inflight) if (r === request) this.#inflight.delete(id);
  }

  #settle(request, error) {
    clearTimeout(request.timer);
    request.reject(error);
  }

  #send(frame) {
    const ws = this.#ws;
    if (!ws || ws.readyState !== 1) return;
    try {
      ws.send(JSON.stringify(frame));
    } catch (e) {
      this.#error('send_failed', `cannot send: ${e?.message ?? e}`, { cause: e });
    }
  }

  #sendSubscribe(sub) {
    const generation = this.#generation;
    const id = this.#nextId++;
    const frame = { op: 'subscribe', channel: sub.channel, id };
    if (!sub.joinLeave) frame.join_leave = false;
    const position = sub.position;
    if (position) frame.since = { epoch: position.epoch, offset: position.offset };
    this.#inflight.set(id, {
      retry: false,
      resolve: (reply) => {
        if (generation === this.#generation) sub[SUB_EVENT](reply);
      },
      reject: (error) => {
        if (generation === this.#generation) sub[SUB_ERROR](error, generation);
      },
    });
    this.#send(frame);
  }
}

/** Marks a promise handled, so that a caller who ignores it gets no unhandled rejection. */
function handled(promise) {
  promise.catch(() => {});
  return promise;
}

const SUB_EVENT = Symbol('event');
const SUB_ERROR = Symbol('error');

/** One channel followed by a client: its events, in offset order, each once. */
export class Subscription extends Emitter {
  #client;
  #internals;
  /** @type {Position | null} */
  #position = null;
  /** @type {'subscribing' | 'subscribed' | 'failed' | 'unsubscribed'} */
  #state = 'subscribing';
  #stats = { messages: 0, duplicates: 0, recovered: 0, gaps: 0 };

  /** @param {Switchboard} client @param {string} channel @param {boolean} joinLeave */
  constructor(client, channel, internals, joinLeave) {
    super();
    this.#client = client;
    this.#internals = internals;
    /** @type {string} */
    this.channel = channel;
    /** Whether the channel's joins and leaves are sent to this subscription. @type {boolean} */
    this.joinLeave = joinLeave;
  }

  /** The last position delivered (epoch and offset); null before the first `subscribed`. */
  get position() {
    return this.#position && { ...this.#position };
  }

  /** 'subscribing', 'subscribed', 'failed' (refused; see the error event), 'unsubscribed'. */
  get state() {
    return this.#state;
  }

  /** Counts: messages delivered, duplicates dropped, messages recovered, gaps reported. */
  get stats() {
    return { ...this.#stats };
  }

  /** Publishes on this channel; see {@link Switchboard#publish}. @param {unknown} data */
  publish(data) {
    return this.#client.publish(this.channel, data);
  }

  /**
   * The latest publications of the channel (at most `limit`, up to the server's cap).
   * @param {{limit?: number}} [options]
   * @returns {Promise<{epoch: string, offset: number, publications: Publication[]}>}
   */
  history({ limit } = {}) {
    const frame = { op: 'history', channel: this.channel };
    if (limit != null) frame.limit = limit;
    return handled(
      this.#internals.request(frame, true).then((r) => ({
        epoch: r.epoch,
        offset: r.offset,
        publications: r.publications.map((p) => ({ channel: this.channel, ...p })),
      })),
    );
  }

  /** Who is subscribed to the channel now. @returns {Promise<ClientInfo[]>} */
  presence() {
    return handled(this.#internals.request({ op: 'presence', channel: this.channel }, true).then((r) => r.clients));
  }

  /** Stops following the channel. */
  unsubscribe() {
    if (this.#state === 'unsubscribed') return;
    this.#state = 'unsubscribed';
    this.#internals.unsubscribe(this, true);
  }

  [SUB_ERROR](error, generation) {
    if (this.#state === 'unsubscribed') return;
    if (error.code === 'unavailable') {
      // The server's broker failed for a moment: ask again later on the same connection.
      this.emit('error', error);
      this.#internals.resubscribeLater(this, generation);
      return;
    }
    this.#state = 'failed';
    this.#internals.unsubscribe(this, false);
    this.emit('error', error);
  }

  [SUB_EVENT](frame) {
    if (this.#state === 'unsubscribed' || this.#state === 'failed') return;
    switch (frame.type) {
      case 'subscribed':
        this.#subscribed(frame);
        break;
      case 'message':
        this.#deliver(frame, false);
        break;
      case 'join':
      case 'leave':
        this.emit(frame.type, frame.client);
        break;
      case 'unsubscribed':
        this.#state = 'unsubscribed';
        this.emit('unsubscribed', { byServer: true });
        break;
    }
  }

  #subscribed(reply) {
    const previous = this.#position;
    this.#state = 'subscribed';
    if (previous && reply.recovered === true) {
      let count = 0;
      for (const p of reply.publications ?? []) if (this.#deliver({ channel: this.channel, ...p }, true)) count += 1;
      this.#stats.recovered += count;
      this.#advance(reply.epoch, reply.offset);
      this.emit('subscribed', { epoch: reply.epoch, offset: reply.offset, resubscribed: true });
      this.emit('recovered', { count });
      return;
    }
    if (previous && reply.recovered === false) {
      // What was missed is gone: say so, and go on from the channel's current position.
      this.#stats.gaps += 1;
      this.#position = { epoch: reply.epoch, offset: reply.offset };
      this.emit('subscribed', { epoch: reply.epoch, offset: reply.offset, resubscribed: true });
      this.emit('gap', {
        code: reply.code,
        reason: reply.reason,
        epochChanged: reply.epoch !== previous.epoch,
        previous,
        position: { ...this.#position },
      });
      return;
    }
    if (previous && (reply.epoch !== previous.epoch || reply.offset > previous.offset)) {
      // A reply that did not recover (a server that ignored `since`) but moved on: what lies
      // between is a gap, never hidden.
      const epochChanged = reply.epoch !== previous.epoch;
      this.#stats.gaps += 1;
      this.#position = { epoch: reply.epoch, offset: reply.offset };
      this.emit('subscribed', { epoch: reply.epoch, offset: reply.offset, resubscribed: true });
      this.emit('gap', {
        code: epochChanged ? 'epoch_changed' : 'not_recovered',
        reason: epochChanged ? 'the channel has a new epoch' : 'the server did not replay what was missed',
        epochChanged,
        previous,
        position: { ...this.#position },
      });
      return;
    }
    this.#advance(reply.epoch, reply.offset);
    this.emit('subscribed', { epoch: reply.epoch, offset: reply.offset, resubscribed: !!previous });
  }

  #advance(epoch, offset) {
    if (!this.#position || this.#position.epoch !== epoch) this.#position = { epoch, offset };
    else this.#position.offset = Math.max(this.#position.offset, offset);
  }

  /** Delivers a publication unless its offset was delivered already. */
  #deliver(p, recovered) {
    if (!this.#position) return false; // before `subscribed`: the server never sends this
    if (p.offset <= this.#position.offset) {
      this.#stats.duplicates += 1;
      return false;
    }
    this.#position.offset = p.offset;
    this.#stats.messages += 1;
    /** @type {Publication} */
    const publication = { channel: this.channel, offset: p.offset, time: p.time, from: p.from, data: p.data };
    if (recovered) publication.recovered = true;
    this.emit('message', publication);
    return true;
  }
}

export default Switchboard;
