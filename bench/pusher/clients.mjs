// bench/pusher/clients.mjs: one load-generator process of bench/pusher.sh, forked by
// coordinator.mjs: COUNT subscribers of one channel, pusher-js clients on a presence channel
// or the project's JS client (clients/js, on the `ws` package) on a hub channel, which count
// what they receive.
//
// Every publication carries `seq`, the publisher's sequence number. The process sends its
// parent, every REPORT_MS and once all are subscribed: `count` (events received) and `low`
// (the lowest `seq` every one of its subscribers has received), which the publisher keeps
// its window against, so that nothing piles up in the server's queues.
//
// Arguments (JSON in argv[2]): {kind: 'pusher'|'native', port, first, count, channel, event,
// app: {appId, key, secret}}. The parent's 'stop' message closes every client and exits.
import { createRequire } from 'node:module';

import Switchboard from '../../clients/js/switchboard.js';

const require = createRequire(new URL('../../e2e/pusher/package.json', import.meta.url));
// The `ws` package of bench/peers/node: Node 20's own WebSocket (behind a flag) cost the load
// generator several times more per message, which would make the native clients the limit.
const ws = createRequire(new URL('../peers/node/package.json', import.meta.url))('ws');
/** `ws` without permessage-deflate, which it offers by default and pusher-js does not. */
class WebSocket extends ws.WebSocket {
  constructor(url, protocols) {
    super(url, protocols, { perMessageDeflate: false });
  }
}
const REPORT_MS = 5;

const options = JSON.parse(process.argv[2]);
const { kind, port, first, count, channel, event, app } = options;

/** Per subscriber, the last `seq` it received. */
const last = new Float64Array(count).fill(-1);
let received = 0;
let subscribed = 0;
const clients = [];

function deliver(i, data) {
  received += 1;
  const seq = typeof data === 'object' && data !== null ? data.seq : undefined;
  if (typeof seq === 'number' && seq > last[i]) last[i] = seq;
}

/** Signs subscriptions locally, as an app's auth endpoint does with authorizeChannel. */
let signer;

function pusherClient(i) {
  const Pusher = require('pusher-js');
  if (!signer) {
    const PusherServer = require('pusher');
    signer = new PusherServer({ ...app, useTLS: false, host: '127.0.0.1', port: String(port) });
  }
  const user = `u${first + i}`;
  const client = new Pusher(app.key, {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) =>
        callback(null, signer.authorizeChannel(socketId, channelName, { user_id: user, user_info: { name: user } })),
    },
  });
  const sub = client.subscribe(channel);
  sub.bind('pusher:subscription_succeeded', () => ready());
  sub.bind('pusher:subscription_error', (status) => fail(`${user}: subscription_error ${JSON.stringify(status)}`));
  sub.bind(event, (data) => deliver(i, data));
  return { close: () => client.disconnect() };
}

function nativeClient(i) {
  const user = `u${first + i}`;
  const client = new Switchboard(`ws://127.0.0.1:${port}/ws`, { name: user, WebSocket });
  // Presence as the hub does it: the subscriber is a member, sent the channel's joins and
  // leaves.
  client.subscribe(channel, {
    subscribed: () => ready(),
    error: (e) => fail(`${user}: ${e.code} ${e.message}`),
    message: (p) => deliver(i, p.data),
  });
  return { close: () => client.close() };
}

function ready() {
  subscribed += 1;
  if (subscribed === count) report();
}

function fail(what) {
  process.send({ error: what });
}

function report() {
  let low = Infinity;
  for (const seq of last) if (seq < low) low = seq;
  process.send({ count: received, low, subscribed });
}

for (let i = 0; i < count; i++) clients.push(kind === 'pusher' ? pusherClient(i) : nativeClient(i));
const timer = setInterval(() => {
  if (subscribed >= count) report();
}, REPORT_MS);

process.on('message', (message) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  for (const client of clients) client.close();
  // The closes are sent; the process need not wait for their answers.
  setTimeout(() => process.exit(0), 200);
});
process.on('disconnect', () => process.exit(0));
