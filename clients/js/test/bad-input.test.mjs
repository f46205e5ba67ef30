// switchboard.js against what is not a working hub: an unreachable URL, a plain HTTP server,
// a server that sends malformed frames, one that refuses with 1008, one that asks for a later
// retry, one that goes silent. Each gives a clear `error` event, and no promise of the client
// is left rejected unhandled (counted here, not only left to node --test).
import { after, afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { Switchboard } from '../switchboard.js';
import { fakeWsServer, freePort, sleep, until } from './support.mjs';

const unhandled = [];
process.on('unhandledRejection', (reason) => unhandled.push(reason));

const cleanups = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  // A rejection is reported after the microtasks of its turn: let them run.
  await sleep(50);
  assert.deepEqual(unhandled, [], 'unhandled rejections');
});
after(() => process.removeAllListeners('unhandledRejection'));

/** A client that records its events; closed after the test. */
function watched(url, options = {}) {
  const client = new Switchboard(url, { timeout: 2_000, minDelay: 50, maxDelay: 200, ...options });
  const events = [];
  for (const type of ['connecting', 'connected', 'disconnected', 'closed', 'error']) {
    client.on(type, (detail) => events.push({ type, detail }));
  }
  cleanups.push(() => client.close());
  const errors = () => events.filter((e) => e.type === 'error').map((e) => e.detail);
  return { client, events, errors };
}

const SERVER_HELLO = JSON.stringify({ type: 'connected', client: { user: 'x', conn: 'c1' }, heartbeat: 25 });

test('an unreachable URL: connect_failed, and it keeps trying', async () => {
  const port = await freePort();
  const { client, errors, events } = watched(`ws://127.0.0.1:${port}/ws`);
  // A publish made meanwhile waits, then fails clearly, as a handled rejection.
  const publish = client.publish('room', { text: 'hi' });
  await until(() => errors().length >= 2, 'two connect_failed errors');
  assert.equal(errors()[0].code, 'connect_failed');
  assert.match(errors()[0].message, new RegExp(`127\\.0\\.0\\.1:${port}`));
  assert.ok(events.some((e) => e.type === 'disconnected' && e.detail.willRetry));
  await assert.rejects(publish, { code: 'timeout' });
});

test('a server that is not switchboard (plain HTTP, 200): connect_failed', async () => {
  const server = http.createServer((_, response) => response.end('hello'));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  const { errors } = watched(`ws://127.0.0.1:${server.address().port}/ws`);
  await until(() => errors().length > 0, 'an error');
  assert.equal(errors()[0].code, 'connect_failed');
  assert.match(errors()[0].message, /not a switchboard hub/);
});

test('malformed JSON from the server: protocol_error, and a reconnect', async () => {
  let connections = 0;
  const server = await fakeWsServer((ws) => {
    connections += 1;
    ws.text(SERVER_HELLO);
    ws.text('{"type":"message","channel":"room",'); // cut short
  });
  cleanups.push(server.close);
  const { errors, client } = watched(`ws://127.0.0.1:${server.port}/ws`);
  const sub = client.subscribe('room');
  await until(() => errors().length > 0 && connections >= 2, 'an error and a reconnect');
  assert.equal(errors()[0].code, 'protocol_error');
  assert.match(errors()[0].message, /not JSON/);
  assert.equal(sub.stats.messages, 0);
});

test('a first frame that is not `connected`: protocol_error', async () => {
  const server = await fakeWsServer((ws) => ws.text('{"type":"hello","version":9}'));
  cleanups.push(server.close);
  const { errors } = watched(`ws://127.0.0.1:${server.port}/ws`);
  await until(() => errors().length > 0, 'an error');
  assert.equal(errors()[0].code, 'protocol_error');
  assert.match(errors()[0].message, /not a switchboard hub/);
});

test('close 1008 without getToken: unauthorized, and no retry with the same token', async () => {
  let connections = 0;
  const server = await fakeWsServer((ws) => {
    connections += 1;
    ws.text('{"type":"error","code":"unauthorized","reason":"token expired"}');
    ws.close(1008, 'unauthorized');
  });
  cleanups.push(server.close);
  const { client, errors, events } = watched(`ws://127.0.0.1:${server.port}/ws`, { token: 'a.b.c' });
  const publish = client.publish('room', 1);
  await until(() => client.state === 'closed', 'the client to stop');
  const final = errors().at(-1);
  assert.equal(final.code, 'unauthorized');
  assert.match(final.message, /token expired/);
  assert.ok(events.some((e) => e.type === 'disconnected' && e.detail.code === 1008 && !e.detail.willRetry));
  await assert.rejects(publish, { code: 'closed' });
  await sleep(300); // longer than any backoff of this client
  assert.equal(connections, 1);
});

test('close 1008 with getToken: a new token, asked for again', async () => {
  const tokens = [];
  const server = await fakeWsServer((ws) => {
    tokens.push(new URL(ws.url, 'http://x').searchParams.get('token'));
    if (tokens.length === 1) {
      ws.text('{"type":"error","code":"unauthorized","reason":"bad token"}');
      ws.close(1008, 'unauthorized');
    } else {
      ws.text(SERVER_HELLO);
    }
  });
  cleanups.push(server.close);
  let asked = 0;
  const getToken = async () => `t${++asked}`;
  const { client } = watched(`ws://127.0.0.1:${server.port}/ws`, { getToken });
  await until(() => client.state === 'connected', 'a connection with the second token');
  assert.deepEqual(tokens, ['t1', 't2']);
});

test('a getToken that fails: token_failed, and no unhandled rejection', async () => {
  const { errors } = watched('ws://127.0.0.1:9/ws', { getToken: () => Promise.reject(new Error('auth server down')) });
  await until(() => errors().length > 0, 'an error');
  assert.equal(errors()[0].code, 'token_failed');
  assert.match(errors()[0].message, /auth server down/);
});

test('a disconnect hint before 1013: the next attempt waits at least retry_after_ms', async () => {
  let connections = 0;
  const server = await fakeWsServer((ws) => {
    connections += 1;
    ws.text(SERVER_HELLO);
    if (connections === 1) {
      ws.text('{"type":"disconnect","code":1013,"reason":"draining","retry_after_ms":700}');
      ws.close(1013, 'draining');
    }
  });
  cleanups.push(server.close);
  const { events, client } = watched(`ws://127.0.0.1:${server.port}/ws`);
  await until(() => connections === 2 && client.state === 'connected', 'the reconnect');
  const dropped = events.find((e) => e.type === 'disconnected');
  assert.equal(dropped.detail.code, 1013);
  assert.ok(dropped.detail.willRetry);
  assert.ok(dropped.detail.retryIn >= 700, `retried in ${dropped.detail.retryIn} ms`);
});

test('a server gone silent: heartbeat_missed, and a reconnect', async () => {
  let connections = 0;
  const server = await fakeWsServer((ws) => {
    connections += 1;
    ws.text(JSON.stringify({ type: 'connected', client: { user: 'x', conn: 'c' }, heartbeat: 0.1 }));
    // Then nothing, and the socket stays open.
  });
  cleanups.push(server.close);
  const { errors } = watched(`ws://127.0.0.1:${server.port}/ws`);
  await until(() => errors().length > 0 && connections >= 2, 'a missed heartbeat and a reconnect');
  assert.equal(errors()[0].code, 'heartbeat_missed');
});

test('offline publishes: bounded queue, then a timeout', async () => {
  const port = await freePort();
  const { client } = watched(`ws://127.0.0.1:${port}/ws`, { maxQueue: 2, timeout: 300 });
  client.on('error', () => {});
  const first = client.publish('room', 1);
  const second = client.publish('room', 2);
  await assert.rejects(client.publish('room', 3), { code: 'queue_full' });
  await assert.rejects(first, { code: 'timeout' });
  await assert.rejects(second, { code: 'timeout' });
  await assert.rejects(client.publish('room', null), { code: 'bad_request' });
  // Ignored promises are handled: nothing surfaces as an unhandled rejection.
  client.publish('room', 4);
  client.close();
});
