// Types of switchboard.js, the JavaScript client of the switchboard hub: its API reference.
// Kept by hand next to the module; `tsc --noEmit` checks it with a typed usage file
// (clients/js/test/types.ts).

/** A client as the hub shows it: `user` (from a token or `?name=`) and connection id. */
export interface ClientInfo {
  user: string;
  conn: string;
  /** True when the user comes from a verified token (or the application's connect hook). */
  authenticated?: boolean;
  /** What the application's connect hook attached, if anything. */
  info?: unknown;
}

/** One message of a channel. */
export interface Publication {
  channel: string;
  /** 1, 2, 3, ... within the channel's epoch; a subscription delivers each once, in order. */
  offset: number;
  /** Milliseconds since the epoch, when the hub received it. */
  time?: number;
  /** Who published it; `user` is empty for the server side. */
  from: ClientInfo;
  /** The JSON value exactly as published. */
  data: unknown;
  /** Set on messages replayed after a reconnect (missed while disconnected). */
  recovered?: true;
}

/** Where a subscription is in its channel's stream. */
export interface Position {
  /** Names the channel's history; a new epoch means that history was lost. */
  epoch: string;
  offset: number;
}

export interface SwitchboardOptions {
  /** `?name=`: the user name of a client without a token (unverified). */
  name?: string;
  /** `?token=`: a JWT the hub verifies; its `sub` is the user. */
  token?: string;
  /**
   * Gives a (new) token: called before connecting when there is none or it is about to
   * expire, shortly before it expires while connected (the client then reconnects with the
   * new one, losing nothing), and after the hub refuses one (`unauthorized`, close 1008).
   * Resolving to an empty value stops the client (an `unauthorized` error).
   */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** Milliseconds for connecting (until `connected`), for each reply and ack, for getToken. Default 10000. */
  timeout?: number;
  /** Reconnect delays: full jitter, uniform in [0, min(maxDelay, minDelay * 2^attempt)). Defaults 500 and 20000. */
  minDelay?: number;
  maxDelay?: number;
  /** Requests (publishes, history, presence) kept while offline; more fail with `queue_full`. Default 100. */
  maxQueue?: number;
  /** Connect at once (default) or wait for `connect()`. */
  autoConnect?: boolean;
  /** A WebSocket class, where there is no global one. */
  WebSocket?: new (url: string) => WebSocket;
}

/** What went wrong, for programs (`code`) and people (`message`). */
export declare class SwitchboardError extends Error {
  /**
   * The client's: `connect_failed` (no upgrade: unreachable, or not a hub), `connect_timeout`,
   * `protocol_error` (a frame that is not the hub protocol; the client reconnects),
   * `heartbeat_missed` (no frame for two heartbeat intervals; it reconnects), `unauthorized`
   * (refused and no `getToken`: the client stops), `token_failed`, `bad_url`, `send_failed`;
   * of a request: `timeout`, `queue_full`, `connection_lost`, `closed`, `bad_request`; or the
   * hub's own error code (`forbidden`, `unavailable`, `too_large`, ...; see the README).
   */
  code: string;
  /** The hub's code, when the hub sent the error. */
  serverCode?: string;
  /** The close code, for `unauthorized` after a close. */
  closeCode?: number;
}

export interface ConnectedEvent {
  client: ClientInfo;
  /** The hub's heartbeat interval in seconds; 0 when it sends none. */
  heartbeat: number;
  /** False on the first connection, true after a reconnect. */
  reconnected: boolean;
}

export interface DisconnectedEvent {
  /** The close code: the server's, or 1006 when the client gave up on the connection. */
  code: number;
  reason: string;
  willRetry: boolean;
  /** Milliseconds until the next attempt, when it will retry. */
  retryIn?: number;
}

export interface SwitchboardEvents {
  connecting: { attempt: number };
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  /** After `close()` or a refusal with no way to get another token. */
  closed: undefined;
  error: SwitchboardError;
}

/**
 * A client of one hub: one WebSocket, reconnected as needed (exponential backoff, full
 * jitter; 1012 and 1013 and the hub's `retry_after_ms` hint honoured), shared by its
 * subscriptions. Errors are `error` events, never exceptions or unhandled rejections.
 */
export declare class Switchboard {
  /** @param url the hub's endpoint, e.g. `wss://example.com/ws` (relative to the page in a browser). */
  constructor(url: string | URL, options?: SwitchboardOptions);
  readonly state: 'disconnected' | 'connecting' | 'connected' | 'closed';
  /** Who the hub says this client is, while connected. */
  readonly client: ClientInfo | null;
  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof SwitchboardEvents>(type: K, listener: (event: SwitchboardEvents[K]) => void): () => void;
  off<K extends keyof SwitchboardEvents>(type: K, listener: (event: SwitchboardEvents[K]) => void): void;
  /** Connects now unless connected or connecting: while waiting to retry, retries at once (a "Retry now" button); after `close()`, starts again. */
  connect(): void;
  /** For good: no reconnect; waiting requests fail with `closed`. `connect()` starts again. */
  close(): void;
  /** Follows `channel` until `unsubscribe()`, across reconnects. Throws if already subscribed. */
  subscribe(channel: string, handlers?: SubscriptionHandlers, options?: SubscribeOptions): Subscription;
  /**
   * Resolves with the message's offset when the hub acks it. Offline, it waits in a bounded
   * queue. Rejects with a SwitchboardError past `timeout`, on a full queue, or with
   * `connection_lost` when the connection ended after it was sent (it may or may not have been
   * published). Ignoring the promise never causes an unhandled rejection.
   */
  publish(channel: string, data: unknown): Promise<number>;
}

export interface GapEvent {
  /** The hub's code: `epoch_changed`, `history_truncated`, `too_many_missed`, `offset_ahead`; or `not_recovered`. */
  code: string;
  reason: string;
  /** The channel's history was lost: offsets start again. */
  epochChanged: boolean;
  /** The last position delivered before the gap. */
  previous: Position;
  /** Where the subscription goes on from. */
  position: Position;
}

export interface SubscriptionEvents {
  /** Each `subscribed` reply: the first, and one after each reconnect (`resubscribed`). */
  subscribed: Position & { resubscribed: boolean };
  /** Each message once, in offset order, live or recovered. */
  message: Publication;
  join: ClientInfo;
  leave: ClientInfo;
  /** After a reconnect: what was missed has been delivered (`count` messages). */
  recovered: { count: number };
  /** After a reconnect: what was missed could not be recovered. Never hidden. */
  gap: GapEvent;
  /** The hub refused the subscription (`forbidden`, ...: it is then `failed`), or it will retry (`unavailable`). */
  error: SwitchboardError;
  /** The server side unsubscribed this client. */
  unsubscribed: { byServer: boolean };
}

export type SubscriptionHandlers = {
  [K in keyof SubscriptionEvents]?: (event: SubscriptionEvents[K]) => void;
};

export interface SubscribeOptions {
  /** false: the channel's `join` and `leave` events are not sent (a large channel). Default true. */
  joinLeave?: boolean;
}

/** One channel followed by a client. */
export declare class Subscription {
  readonly channel: string;
  /** Whether the channel's joins and leaves are sent to it. */
  readonly joinLeave: boolean;
  readonly state: 'subscribing' | 'subscribed' | 'failed' | 'unsubscribed';
  /** The last position delivered; null before the first `subscribed`. */
  readonly position: Position | null;
  /** Messages delivered, duplicates dropped, messages recovered, gaps reported. */
  readonly stats: { messages: number; duplicates: number; recovered: number; gaps: number };
  on<K extends keyof SubscriptionEvents>(type: K, listener: (event: SubscriptionEvents[K]) => void): () => void;
  off<K extends keyof SubscriptionEvents>(type: K, listener: (event: SubscriptionEvents[K]) => void): void;
  /** Publishes on this channel: see {@link Switchboard.publish}. */
  publish(data: unknown): Promise<number>;
  /** The latest publications (at most `limit`, capped by the hub). Waits for a connection, within `timeout`. */
  history(options?: { limit?: number }): Promise<{ epoch: string; offset: number; publications: Publication[] }>;
  /** Who is subscribed now. */
  presence(): Promise<ClientInfo[]>;
  unsubscribe(): void;
}

export default Switchboard;
