// pusher-js 8 (Node) against `switchboard serve --pusher-app`: public, private and presence
// channels, client events, unsubscribing, an unknown app key, user sign-in and watchlists,
// cache channels, and reconnection across a restart. Private and presence channels are
// authorized, and users signed in, by an HTTP endpoint of this test that signs with the
// `pusher` server library's authorizeChannel and authenticateUser, as an app's backend does.
// Events reach the public channel through the hub's own server API (`POST /api/publish`, data
// {event, data}), and through Pusher's HTTP API (`/apps/ID/...`) as the `pusher` library calls
// it: trigger, triggerBatch, get, sendToUser, terminateUserConnections; the app's webhooks are
// checked with the library's webhook().isValid().
//
// With PUSHER_CLUSTER=1 the same tests run against three nodes sharing a redis-server of
// their own (`serve --broker redis://...`): the `pusher` library calls node A, and the
// pusher-js clients connect to nodes B and C in turn, so that two clients of a test are on
// two nodes, neither of them the one the library calls.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';

import PusherServer from 'pusher';
import Pusher from 'pusher-js';

import { Processes, STEP, binary, freePort, redis, serve, until, waitPort } from '../../clients/js/test/support.mjs';

const APP = { appId: '1', key: 'app-key', secret: 'app-secret' };
const API_KEY = 'e2e-api-key';

const CLUSTER = process.env.PUSHER_CLUSTER === '1';
const procs = new Processes();
/** The node the libraries' HTTP calls go to. */
let port;
/** The nodes pusher-js clients connect to, in turn. */
let wsPorts;
let authUrl;
let userAuthUrl;
let authServer;
/** Every client made, disconnected after the tests. */
const clients = [];

const signer = new PusherServer({ ...APP, useTLS: false, host: '127.0.0.1', port: '1' });
/** The `pusher` library pointed at the server: its HTTP API calls. */
let server;

/** The app's webhook requests, as the `pusher` library's webhook() takes them. */
const hookRequests = [];
let hookServer;

before(async () => {
  hookServer = http.createServer((request, response) => {
    let rawBody = '';
    request.on('data', (chunk) => (rawBody += chunk));
    request.on('end', () => {
      hookRequests.push({ headers: request.headers, rawBody });
      response.writeHead(200).end();
    });
  });
  await new Promise((resolve) => hookServer.listen(0, '127.0.0.1', resolve));
  const args = [
    '--pusher-app',
    `${APP.appId}:${APP.key}:${APP.secret}`,
    '--pusher-client-events',
    '--pusher-webhook',
    `${APP.appId}=http://127.0.0.1:${hookServer.address().port}/hooks`,
    '--api-key',
    API_KEY,
  ];
  if (CLUSTER) {
    const broker = ['--broker', `redis://127.0.0.1:${await redis(procs)}`];
    const nodes = [];
    for (let i = 0; i < 3; i++) nodes.push(await serve(procs, [...args, ...broker]));
    [port, ...wsPorts] = nodes;
  } else {
    port = await serve(procs, args);
    wsPorts = [port];
  }
  server = new PusherServer({ ...APP, useTLS: false, host: '127.0.0.1', port: String(port) });
  // The app's auth endpoint: form fields socket_id and channel_name, and the user_id this
  // test's client sends along for presence.
  authServer = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      const form = new URLSearchParams(body);
      if (request.url.startsWith('/user-auth')) {
        // The app's user authentication endpoint: signs the user this test's client names.
        const user = { id: form.get('user_id'), user_info: { name: form.get('user_id') } };
        if (form.get('watchlist')) user.watchlist = form.get('watchlist').split(',');
        let auth = signer.authenticateUser(form.get('socket_id'), user);
        if (form.get('forge') === '1') auth = { ...auth, auth: `${APP.key}:${'0'.repeat(64)}` };
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(auth));
        return;
      }
      const channel = form.get('channel_name');
      const presence = channel.startsWith('presence-')
        ? { user_id: form.get('user_id'), user_info: { name: form.get('user_id') } }
        : undefined;
      let auth = signer.authorizeChannel(form.get('socket_id'), channel, presence);
      if (form.get('forge') === '1') auth = { ...auth, auth: `${APP.key}:${'0'.repeat(64)}` };
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(auth));
    });
  });
  await new Promise((resolve) => authServer.listen(0, '127.0.0.1', resolve));
  authUrl = `http://127.0.0.1:${authServer.address().port}/auth`;
  userAuthUrl = `http://127.0.0.1:${authServer.address().port}/user-auth`;
});

after(async () => {
  for (const client of clients) client.disconnect();
  await new Promise((resolve) => authServer.close(resolve));
  hookServer.closeAllConnections();
  await new Promise((resolve) => hookServer.close(resolve));
  await procs.stopAll();
});

/** The logs of the servers, for a failure's message. */
const logs = () => procs.children.map((child) => `--- ${child.logName}:\n${child.log}`).join('\n');

/**
 * A pusher-js client of app `key`, connected; `params` go to the auth endpoint. Clients
 * connect to `wsPort`, by default to the nodes of `wsPorts` in turn.
 */
async function connect(key = APP.key, params = {}, wsPort = wsPorts[clients.length % wsPorts.length]) {
  const client = new Pusher(key, {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: { endpoint: authUrl, transport: 'ajax', params },
    userAuthentication: { endpoint: userAuthUrl, transport: 'ajax', params },
  });
  clients.push(client);
  await until(() => client.connection.state === 'connected', `pusher-js to connect:\n${logs()}`);
  return client;
}

/** Subscribes and resolves once subscription_succeeded (or rejects on subscription_error). */
function subscribe(client, name) {
  const channel = client.subscribe(name);
  return new Promise((resolve, reject) => {
    channel.bind('pusher:subscription_succeeded', () => resolve(channel));
    channel.bind('pusher:subscription_error', (status) => reject(Object.assign(new Error('subscription_error'), { status })));
  });
}

/** Resolves with the next `event` on `channel`. */
function next(channel, event) {
  return new Promise((resolve) => {
    const handler = (data, metadata) => {
      channel.unbind(event, handler);
      resolve({ data, metadata });
    };
    channel.bind(event, handler);
  });
}

/** Publishes {event, data} to app channel `name` through the hub's server API. */
async function publish(name, event, data) {
  const response = await fetch(`http://127.0.0.1:${port}/api/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel: `pusher:${APP.appId}:${name}`, data: { event, data } }),
  });
  assert.equal(response.status, 200, await response.text());
}

/** `promise`, or an error naming `what` after STEP. */
async function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), STEP);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

test('the socket id is two numbers joined by a dot', async () => {
  const client = await connect();
  assert.match(client.connection.socket_id, /^\d+\.\d+$/);
});

test('a public channel gets what the server publishes, and nothing after unsubscribing', async () => {
  const client = await connect();
  const channel = await within(subscribe(client, 'news'), 'subscribe news');
  const got = next(channel, 'update');
  await publish('news', 'update', JSON.stringify({ n: 1 }));
  assert.deepEqual((await within(got, 'update')).data, { n: 1 });

  client.unsubscribe('news');
  // What the server sends, seen on the connection: pusher-js drops events of a channel it
  // left, the server must not send them.
  let late = 0;
  client.connection.bind('message', (message) => {
    if (message.channel === 'news') late++;
  });
  // A second channel on the same connection: once its event arrives, an event published to
  // news before it would have arrived too.
  const marker = await within(subscribe(client, 'marker'), 'subscribe marker');
  const mark = next(marker, 'mark');
  await publish('news', 'update', '"late"');
  await publish('marker', 'mark', '1');
  await within(mark, 'mark');
  assert.equal(late, 0);
});

test('a private channel needs the app signature', async () => {
  const client = await connect();
  await within(subscribe(client, 'private-orders'), 'subscribe private-orders');
  const forger = await connect(APP.key, { forge: '1' });
  const refused = await within(
    subscribe(forger, 'private-orders').then(
      () => null,
      (e) => e,
    ),
    'subscription_error',
  );
  assert.ok(refused, 'a forged signature is refused');
  assert.equal(refused.status.status, 401);
  assert.equal(refused.status.type, 'AuthError');
});

test('presence: members added on their first connection and removed after the last', async () => {
  const ann = await connect(APP.key, { user_id: 'ann' });
  const annRoom = await within(subscribe(ann, 'presence-room'), 'ann subscribes');
  assert.equal(annRoom.members.count, 1);
  assert.equal(annRoom.members.me.id, 'ann');

  const added = next(annRoom, 'pusher:member_added');
  const bob = await connect(APP.key, { user_id: 'bob' });
  const bobRoom = await within(subscribe(bob, 'presence-room'), 'bob subscribes');
  assert.equal(bobRoom.members.count, 2);
  assert.deepEqual(bobRoom.members.get('ann').info, { name: 'ann' });
  const member = (await within(added, 'member_added')).data;
  assert.equal(member.id, 'bob');
  assert.deepEqual(member.info, { name: 'bob' });

  const removed = next(annRoom, 'pusher:member_removed');
  bob.disconnect();
  assert.equal((await within(removed, 'member_removed')).data.id, 'bob');
  await until(() => annRoom.members.count === 1, 'ann to see one member');
});

test('client events reach the other members but are not echoed to the sender', async () => {
  const ann = await connect(APP.key, { user_id: 'ann-2' });
  const bob = await connect(APP.key, { user_id: 'bob-2' });
  const annChat = await within(subscribe(ann, 'presence-chat'), 'ann subscribes');
  const bobChat = await within(subscribe(bob, 'presence-chat'), 'bob subscribes');
  let echoed = 0;
  annChat.bind('client-typing', () => echoed++);
  const typing = next(bobChat, 'client-typing');
  assert.ok(annChat.trigger('client-typing', { text: 'hi' }));
  const { data, metadata } = await within(typing, 'client-typing');
  assert.deepEqual(data, { text: 'hi' });
  assert.equal(metadata.user_id, 'ann-2');
  // Bob answers; once Ann has the answer, her own event would have come back before it.
  const answer = next(annChat, 'client-answer');
  bobChat.trigger('client-answer', { ok: true });
  await within(answer, 'client-answer');
  assert.equal(echoed, 0);
});

test('an unknown app key is refused with 4001 and no reconnection', async () => {
  const client = new Pusher('no-such-key', {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
  });
  clients.push(client);
  const error = await within(
    new Promise((resolve) => client.connection.bind('error', resolve)),
    'connection error',
  );
  // pusher-js wraps the server's pusher:error in a WebSocketError.
  assert.equal(error.error?.data?.code, 4001, JSON.stringify(error));
  // 4000-4099: pusher-js does not come back.
  await until(() => ['failed', 'disconnected'].includes(client.connection.state), 'pusher-js to give up');
});

test('the pusher library triggers to a channel pusher-js is on', async () => {
  const client = await connect();
  const channel = await within(subscribe(client, 'orders'), 'subscribe orders');
  const got = next(channel, 'created');
  const response = await server.trigger('orders', 'created', { id: 7 });
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), {});
  assert.deepEqual((await within(got, 'created')).data, { id: 7 });
});

test('trigger with socket_id skips that connection and reaches the others', async () => {
  const sender = await connect();
  const other = await connect();
  const senderFeed = await within(subscribe(sender, 'feed'), 'sender subscribes');
  const otherFeed = await within(subscribe(other, 'feed'), 'other subscribes');
  let echoed = 0;
  senderFeed.bind('post', () => echoed++);
  const got = next(otherFeed, 'post');
  await server.trigger('feed', 'post', { n: 1 }, { socket_id: sender.connection.socket_id });
  assert.deepEqual((await within(got, 'post')).data, { n: 1 });
  // A later event to both: once the sender has it, the skipped one would have come first.
  const marker = next(senderFeed, 'marker');
  await server.trigger('feed', 'marker', {});
  await within(marker, 'marker');
  assert.equal(echoed, 0);
});

test('triggerBatch sends each event to its channel', async () => {
  const client = await connect();
  const a = await within(subscribe(client, 'batch-a'), 'subscribe batch-a');
  const b = await within(subscribe(client, 'batch-b'), 'subscribe batch-b');
  const gotA = next(a, 'one');
  const gotB = next(b, 'two');
  const response = await server.triggerBatch([
    { channel: 'batch-a', name: 'one', data: { x: 1 } },
    { channel: 'batch-b', name: 'two', data: 'plain', info: 'subscription_count' },
  ]);
  assert.deepEqual(await response.json(), { batch: [{}, { subscription_count: 1 }] });
  assert.deepEqual((await within(gotA, 'one')).data, { x: 1 });
  assert.equal((await within(gotB, 'two')).data, 'plain');
});

test('get lists the occupied channels and a presence channel\'s users', async () => {
  const ann = await connect(APP.key, { user_id: 'ann-api' });
  const bob = await connect(APP.key, { user_id: 'bob-api' });
  await within(subscribe(ann, 'presence-x'), 'ann subscribes');
  await within(subscribe(bob, 'presence-x'), 'bob subscribes');
  await within(subscribe(bob, 'listed'), 'bob subscribes to listed');
  const all = await (await server.get({ path: '/channels' })).json();
  assert.ok(all.channels['presence-x'] && all.channels.listed, JSON.stringify(all));
  const presence = await server.get({
    path: '/channels',
    params: { filter_by_prefix: 'presence-', info: 'user_count' },
  });
  const counted = await presence.json();
  assert.deepEqual(counted.channels['presence-x'], { user_count: 2 });
  assert.equal(counted.channels.listed, undefined);
  const one = await (await server.get({ path: '/channels/presence-x', params: { info: 'user_count,subscription_count' } })).json();
  assert.deepEqual(one, { occupied: true, user_count: 2, subscription_count: 2 });
  const users = await (await server.get({ path: '/channels/presence-x/users' })).json();
  assert.deepEqual(users.users.map((u) => u.id).sort(), ['ann-api', 'bob-api']);
});

test('terminateUserConnections closes that user\'s connections only', async () => {
  const ann = await connect(APP.key, { user_id: 'ann-end' });
  const bob = await connect(APP.key, { user_id: 'bob-end' });
  await within(subscribe(ann, 'presence-end'), 'ann subscribes');
  await within(subscribe(bob, 'presence-end'), 'bob subscribes');
  const response = await server.terminateUserConnections('ann-end');
  assert.equal(response.status, 200);
  await until(() => ['failed', 'disconnected', 'unavailable'].includes(ann.connection.state), 'ann to be cut off');
  assert.equal(bob.connection.state, 'connected');
});

test('a user connected twice (on two nodes in a cluster) is one member until both are terminated', async () => {
  const watcher = await connect(APP.key, { user_id: 'watcher-two' });
  const watched = await within(subscribe(watcher, 'presence-two'), 'watcher subscribes');
  const seen = [];
  for (const event of ['pusher:member_added', 'pusher:member_removed', 'client-mark']) {
    watched.bind(event, (data) => seen.push({ event, id: data?.id }));
  }
  // Consecutive clients are on different nodes.
  const ann1 = await connect(APP.key, { user_id: 'ann-two' });
  const ann2 = await connect(APP.key, { user_id: 'ann-two' });
  await within(subscribe(ann1, 'presence-two'), 'ann subscribes');
  const room2 = await within(subscribe(ann2, 'presence-two'), 'ann subscribes again');
  assert.equal(room2.members.count, 2);
  assert.deepEqual(room2.members.get('watcher-two').info, { name: 'watcher-two' });
  // Her second join reaches the watcher before her client event, which comes after it.
  room2.trigger('client-mark', {});
  await until(() => seen.some((e) => e.event === 'client-mark'), 'client-mark');
  assert.deepEqual(seen.filter((e) => e.event === 'pusher:member_added'), [{ event: 'pusher:member_added', id: 'ann-two' }]);
  const users = await (await server.get({ path: '/channels/presence-two/users' })).json();
  assert.deepEqual(users.users.map((u) => u.id).sort(), ['ann-two', 'watcher-two']);
  const info = { info: 'user_count,subscription_count' };
  const one = await (await server.get({ path: '/channels/presence-two', params: info })).json();
  assert.deepEqual(one, { occupied: true, user_count: 2, subscription_count: 3 });

  const response = await server.terminateUserConnections('ann-two');
  assert.equal(response.status, 200);
  const cut = (client) => ['failed', 'disconnected', 'unavailable'].includes(client.connection.state);
  await until(() => cut(ann1) && cut(ann2), 'both of ann\'s connections to be cut off');
  await until(() => seen.some((e) => e.event === 'pusher:member_removed'), 'member_removed');
  assert.deepEqual(seen.filter((e) => e.event === 'pusher:member_removed'), [{ event: 'pusher:member_removed', id: 'ann-two' }]);
  assert.equal(watcher.connection.state, 'connected');
});

test('a request signed with the wrong secret is refused with 401', async () => {
  const forger = new PusherServer({ ...APP, secret: 'not-the-secret', useTLS: false, host: '127.0.0.1', port: String(port) });
  const refused = await forger.trigger('orders', 'created', {}).then(
    () => null,
    (e) => e,
  );
  assert.ok(refused, 'refused');
  assert.equal(refused.status, 401);
  assert.match(refused.body, /invalid signature/);
  const unknown = new PusherServer({ ...APP, appId: '99', useTLS: false, host: '127.0.0.1', port: String(port) });
  const missing = await unknown.get({ path: '/channels' }).then(
    () => null,
    (e) => e,
  );
  assert.equal(missing?.status, 404);
});

test('webhooks in Pusher\'s format pass the pusher library\'s isValid()', async () => {
  const ann = await connect(APP.key, { user_id: 'ann-hook' });
  const bob = await connect(APP.key, { user_id: 'bob-hook' });
  const annRoom = await within(subscribe(ann, 'presence-hooked'), 'ann subscribes');
  const bobRoom = await within(subscribe(bob, 'presence-hooked'), 'bob subscribes');
  const typing = next(bobRoom, 'client-typing');
  annRoom.trigger('client-typing', { text: 'hi' });
  await within(typing, 'client-typing');
  bob.disconnect();
  /** Every event of a valid request so far. */
  const events = () =>
    hookRequests.flatMap((request) => {
      const webhook = server.webhook(request);
      assert.ok(webhook.isValid(), `a valid webhook: ${request.rawBody}`);
      assert.ok(webhook.getTime() instanceof Date);
      return webhook.getEvents().filter((event) => event.channel === 'presence-hooked');
    });
  const has = (wanted) => events().some((event) => Object.entries(wanted).every(([k, v]) => event[k] === v));
  await until(() => has({ name: 'member_removed', user_id: 'bob-hook' }), `member_removed: ${JSON.stringify(events())}`);
  // Once each, however many nodes the clients are on.
  const count = (wanted) => events().filter((event) => Object.entries(wanted).every(([k, v]) => event[k] === v)).length;
  assert.equal(count({ name: 'channel_occupied' }), 1, JSON.stringify(events()));
  assert.equal(count({ name: 'member_added', user_id: 'ann-hook' }), 1);
  assert.equal(count({ name: 'member_added', user_id: 'bob-hook' }), 1);
  assert.equal(count({ name: 'member_removed', user_id: 'bob-hook' }), 1);
  const clientEvent = events().find((event) => event.name === 'client_event');
  assert.equal(clientEvent.event, 'client-typing');
  assert.deepEqual(JSON.parse(clientEvent.data), { text: 'hi' });
  assert.equal(clientEvent.socket_id, ann.connection.socket_id);
  assert.equal(clientEvent.user_id, 'ann-hook');
  // A body changed on the way is not valid.
  const [first] = hookRequests;
  const forged = { headers: first.headers, rawBody: first.rawBody.replace('channel', 'channeI') };
  assert.equal(server.webhook(forged).isValid(), false);
});

test('signin: pusher.user gets what sendToUser sends, on each of the user\'s connections', async () => {
  const ann = await connect(APP.key, { user_id: 'ann-user' });
  const ann2 = await connect(APP.key, { user_id: 'ann-user' });
  const bob = await connect(APP.key, { user_id: 'bob-user' });
  const signedIn = (client) =>
    new Promise((resolve) => client.bind('pusher:signin_success', (data) => resolve(JSON.parse(data.user_data))));
  const signins = [ann, ann2, bob].map(signedIn);
  for (const client of [ann, ann2, bob]) client.signin();
  const [annData] = await within(Promise.all(signins), 'signin_success');
  assert.deepEqual(annData, { id: 'ann-user', user_info: { name: 'ann-user' } });
  await within(ann.user.signinDonePromise, 'signin done');
  assert.equal(ann.user.user_data.id, 'ann-user');
  // pusher-js subscribes to its user's channel after signing in.
  await until(() => ann.user.serverToUserChannel?.subscribed && ann2.user.serverToUserChannel?.subscribed, 'the user channel subscribed');
  await until(() => bob.user.serverToUserChannel?.subscribed, 'bob\'s user channel subscribed');
  const got = (client, event) => new Promise((resolve) => client.user.bind(event, resolve));
  const first = got(ann, 'notice');
  const second = got(ann2, 'notice');
  let bobGot = 0;
  bob.user.bind('notice', () => bobGot++);
  const response = await server.sendToUser('ann-user', 'notice', { n: 1 });
  assert.equal(response.status, 200);
  assert.deepEqual(await within(first, 'notice on ann'), { n: 1 });
  assert.deepEqual(await within(second, 'notice on ann\'s second connection'), { n: 1 });
  // Once bob has his own, ann's would have come before it.
  const mine = got(bob, 'mine');
  await server.sendToUser('bob-user', 'mine', {});
  await within(mine, 'bob\'s own');
  assert.equal(bobGot, 0);

  // terminateUserConnections reaches a signed-in user without a presence channel.
  await server.terminateUserConnections('ann-user');
  await until(() => ['failed', 'disconnected', 'unavailable'].includes(ann.connection.state), 'ann to be cut off');
  await until(() => ['failed', 'disconnected', 'unavailable'].includes(ann2.connection.state), 'ann2 to be cut off');
  assert.equal(bob.connection.state, 'connected');
});

test('a watchlist is told when its users come online and go offline', async () => {
  const watcher = await connect(APP.key, { user_id: 'wat', watchlist: 'dan,eli' });
  const events = [];
  for (const name of ['online', 'offline']) watcher.user.watchlist.bind(name, (event) => events.push(event));
  watcher.signin();
  const told = (name, user) => events.some((e) => e.name === name && e.user_ids.includes(user));
  await until(() => told('offline', 'dan') && told('offline', 'eli'), `the first state: ${JSON.stringify(events)}`);
  assert.deepEqual(events, [{ name: 'offline', user_ids: ['dan', 'eli'] }]);
  const dan = await connect(APP.key, { user_id: 'dan' });
  dan.signin();
  await until(() => told('online', 'dan'), `dan online: ${JSON.stringify(events)}`);
  dan.disconnect();
  await until(() => events.length === 3, `dan offline: ${JSON.stringify(events)}`);
  assert.deepEqual(events[2], { name: 'offline', user_ids: ['dan'] });
});

test('signin with a forged signature gets pusher:error 4009 and the connection stays', async () => {
  const forger = await connect(APP.key, { user_id: 'eve', forge: '1' });
  const error = new Promise((resolve) => forger.connection.bind('error', resolve));
  forger.signin();
  const refused = await within(error, 'pusher:error');
  assert.equal(refused.data?.code, 4009, JSON.stringify(refused));
  assert.equal(forger.user.user_data, null);
  // Still connected: a channel subscribes.
  await within(subscribe(forger, 'after-forgery'), 'subscribe after a refused signin');
  assert.equal(forger.connection.state, 'connected');
});

test('a cache channel sends its last event on subscribe, and pusher:cache_miss when empty', async () => {
  const first = await connect();
  const empty = first.subscribe('cache-empty');
  const missed = new Promise((resolve) => empty.bind('pusher:cache_miss', () => resolve(true)));
  assert.ok(await within(missed, 'pusher:cache_miss'));
  // The backend is told too, so that it can trigger a first event.
  const told = () =>
    hookRequests.some((request) =>
      server.webhook(request).getEvents().some((event) => event.name === 'cache_miss' && event.channel === 'cache-empty'),
    );
  await until(told, 'the cache_miss webhook');

  await server.trigger('cache-location', 'moved', { at: 1 });
  await server.trigger('cache-location', 'moved', { at: 2 });
  const late = await connect();
  const channel = late.subscribe('cache-location');
  let misses = 0;
  channel.bind('pusher:cache_miss', () => misses++);
  const got = next(channel, 'moved');
  assert.deepEqual((await within(got, 'the cached event')).data, { at: 2 });
  assert.equal(misses, 0);
});

test('pusher-js reconnects when serve restarts, resubscribes and gets new events', async () => {
  // A serve of its own on a port chosen here, to start again on the same port.
  const own = new Processes();
  const wsPort = await freePort();
  const args = ['serve', '--listen', `127.0.0.1:${wsPort}`, '--pusher-app', `${APP.appId}:${APP.key}:${APP.secret}`];
  const start = async () => waitPort(wsPort, own.start(binary, args, { logName: 'serve' }));
  try {
    await start();
    const restarted = new PusherServer({ ...APP, useTLS: false, host: '127.0.0.1', port: String(wsPort) });
    const client = await connect(APP.key, {}, wsPort);
    const news = await within(subscribe(client, 'news'), 'subscribe news');
    const orders = await within(subscribe(client, 'private-orders'), 'subscribe private-orders');
    const before = client.connection.socket_id;
    // Counted from here: each channel must be subscribed again on the new server.
    let resubscribed = 0;
    for (const channel of [news, orders]) channel.bind('pusher:subscription_succeeded', () => resubscribed++);

    // Down for as short a time as a restart takes: pusher-js tries again at once, and after
    // a refused try only after its own backoff, in seconds.
    await own.stopAll();
    await start();
    await until(
      () => client.connection.state === 'connected' && client.connection.socket_id !== before,
      `pusher-js to reconnect (state ${client.connection.state})`,
      4 * STEP,
    );
    await until(() => resubscribed === 2, 'both channels subscribed again (the private one authorized again)');
    const gotNews = next(news, 'after');
    const gotOrders = next(orders, 'after');
    await restarted.trigger(['news', 'private-orders'], 'after', { n: 2 });
    assert.deepEqual((await within(gotNews, 'news after the restart')).data, { n: 2 });
    assert.deepEqual((await within(gotOrders, 'private-orders after the restart')).data, { n: 2 });
    client.disconnect();
  } finally {
    await own.stopAll();
  }
});
