// pusher-js 8 (Node) against `switchboard serve --pusher-app`: public, private and presence
// channels, client events, unsubscribing, and an unknown app key. Private and presence
// channels are authorized by an HTTP endpoint of this test that signs with the `pusher`
// server library's authorizeChannel, as an app's backend does. Events reach the public
// channel through the hub's own server API (`POST /api/publish`, data {event, data}).
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';

import PusherServer from 'pusher';
import Pusher from 'pusher-js';

import { Processes, STEP, serve, until } from '../../clients/js/test/support.mjs';

const APP = { appId: '1', key: 'app-key', secret: 'app-secret' };
const API_KEY = 'e2e-api-key';

const procs = new Processes();
let port;
let authUrl;
let authServer;
/** Every client made, disconnected after the tests. */
const clients = [];

const signer = new PusherServer({ ...APP, useTLS: false, host: '127.0.0.1', port: '1' });

before(async () => {
  port = await serve(procs, [
    '--pusher-app',
    `${APP.appId}:${APP.key}:${APP.secret}`,
    '--pusher-client-events',
    '--api-key',
    API_KEY,
  ]);
  // The app's auth endpoint: form fields socket_id and channel_name, and the user_id this
  // test's client sends along for presence.
  authServer = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      const form = new URLSearchParams(body);
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
});

after(async () => {
  for (const client of clients) client.disconnect();
  await new Promise((resolve) => authServer.close(resolve));
  await procs.stopAll();
});

/** A pusher-js client of app `key`, connected; `params` go to the auth endpoint. */
async function connect(key = APP.key, params = {}) {
  const client = new Pusher(key, {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: { endpoint: authUrl, transport: 'ajax', params },
  });
  clients.push(client);
  await until(() => client.connection.state === 'connected', `pusher-js to connect:\n${procs.children[0].log}`);
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
