// switchboard.js against a real `switchboard serve`: the module the server serves, and a
// token replaced before it expires (a new connection, nothing lost) with getToken.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';

import { Switchboard } from '../switchboard.js';
import { Processes, serve, until } from './support.mjs';

const SECRET = 'client-test-secret';
const procs = new Processes();
let port;

before(async () => {
  port = await serve(procs, ['--jwt-secret', SECRET, '--heartbeat', '1s']);
});
after(() => procs.stopAll());

function jwt(claims) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

test('serve serves the module at /switchboard.js, as JavaScript', async () => {
  const response = await fetch(`http://127.0.0.1:${port}/switchboard.js`);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.equal(response.headers.get('cache-control'), 'no-cache');
  const etag = response.headers.get('etag');
  assert.match(etag, /^"[0-9a-f]{16}"$/);
  assert.equal(await response.text(), await readFile(new URL('../switchboard.js', import.meta.url), 'utf8'));
  const again = await fetch(`http://127.0.0.1:${port}/switchboard.js`, { headers: { 'if-none-match': etag } });
  assert.equal(again.status, 304);
});

test('connect() while waiting to retry is the retry: one socket, not two', async () => {
  const sockets = [];
  // Counts the sockets the client opens, and lets the test end one from the outside.
  class Counted extends WebSocket {
    constructor(url) {
      super(url);
      sockets.push(this);
    }
  }
  const client = new Switchboard(`ws://127.0.0.1:${port}/ws`, { name: 'retry', WebSocket: Counted, minDelay: 300, maxDelay: 300 });
  try {
    await until(() => client.state === 'connected', 'the first connection');
    // Dropped, then "Retry now" at once (from the event) and again later (from a button).
    const now = new Promise((resolve) => {
      const off = client.on('disconnected', () => {
        off();
        client.connect();
        resolve();
      });
    });
    sockets[0].close(4000, 'cut by the test');
    await now;
    await until(() => client.state === 'connected', 'the retry');
    // Dropped again, and "Retry now" a moment later while the retry waits. The wait is random
    // (full jitter, 0 to 300 ms): one too short to press the button in is dropped again.
    for (;;) {
      const dropped = new Promise((resolve) => {
        const off = client.on('disconnected', (event) => {
          off();
          resolve(event);
        });
      });
      sockets.at(-1).close(4000, 'cut by the test');
      const { retryIn } = await dropped;
      if (retryIn >= 50) break;
      await until(() => client.state === 'connected', 'a quick retry');
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
    const before = sockets.length;
    client.connect();
    await until(() => client.state === 'connected', 'the second retry');
    // Past any retry the client had scheduled (at most 300 ms): no other socket was opened.
    await new Promise((resolve) => setTimeout(resolve, 800));
    assert.equal(sockets.length, before + 1, 'sockets opened');
    assert.equal(sockets.filter((s) => s.readyState === WebSocket.OPEN).length, 1, 'sockets open');
  } finally {
    client.close();
  }
});

test('a subscription with joinLeave: false gets the messages and not the joins, after a reconnect too', async () => {
  const sockets = [];
  class Tracked extends WebSocket {
    constructor(url) {
      super(url);
      sockets.push(this);
    }
  }
  const quiet = new Switchboard(`ws://127.0.0.1:${port}/ws`, { name: 'quiet', WebSocket: Tracked, minDelay: 50, maxDelay: 50 });
  const loud = new Switchboard(`ws://127.0.0.1:${port}/ws`, { name: 'loud' });
  const others = [];
  try {
    const events = [];
    const quietSub = quiet.subscribe('crowd', {
      join: (c) => events.push(`join ${c.user}`),
      message: (m) => events.push(`message ${m.data}`),
    }, { joinLeave: false });
    assert.equal(quietSub.joinLeave, false);
    const loudJoins = [];
    loud.subscribe('crowd', { join: (c) => loudJoins.push(c.user) });
    await until(() => quietSub.state === 'subscribed' && loudJoins.includes('loud'), 'both subscribed');
    for (const name of ['a', 'b']) {
      const other = new Switchboard(`ws://127.0.0.1:${port}/ws`, { name });
      others.push(other);
      other.subscribe('crowd');
    }
    await until(() => loudJoins.includes('a') && loudJoins.includes('b'), 'the others seen joining');
    await loud.publish('crowd', 'one');
    await until(() => events.includes('message one'), 'the first message');
    // Resubscribed after a cut with the same choice.
    sockets[0].close(4000, 'cut by the test');
    await until(() => sockets.length === 2 && quiet.state === 'connected' && quietSub.state === 'subscribed', 'back');
    others.push(new Switchboard(`ws://127.0.0.1:${port}/ws`, { name: 'c' }));
    others.at(-1).subscribe('crowd');
    await until(() => loudJoins.includes('c'), 'c seen joining');
    await loud.publish('crowd', 'two');
    await until(() => events.includes('message two'), 'the second message');
    assert.deepEqual(events, ['message one', 'message two']);
  } finally {
    quiet.close();
    loud.close();
    for (const other of others) other.close();
  }
});

test('a token is replaced before it expires, and the subscription loses nothing', async () => {
  let issued = 0;
  // 7 s tokens: replaced 5 s before expiry (the least margin), so after about 2 s.
  const getToken = () => jwt({ sub: 'ann', exp: Math.floor(Date.now() / 1000) + 7, n: ++issued });
  const client = new Switchboard(`ws://127.0.0.1:${port}/ws`, { getToken, timeout: 3_000 });
  const publisher = new Switchboard(`ws://127.0.0.1:${port}/ws`, { name: 'pub' });
  const errors = [];
  client.on('error', (e) => errors.push(e));
  let reconnected = 0;
  client.on('connected', (e) => {
    if (e.reconnected) reconnected += 1;
  });
  try {
    const got = [];
    const sub = client.subscribe('tokens', { message: (m) => got.push(m.offset) });
    await until(() => client.state === 'connected' && sub.state === 'subscribed', 'the subscription');
    assert.equal(client.client.user, 'ann');
    assert.equal(client.client.authenticated, true);
    const acked = [];
    while (reconnected === 0) {
      acked.push(await publisher.publish('tokens', { i: acked.length }));
      assert.ok(acked.length < 1000, 'the token was never replaced');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    acked.push(await publisher.publish('tokens', { i: acked.length }));
    await until(() => got.length >= acked.length, 'every message');
    assert.deepEqual(got, acked);
    assert.ok(issued >= 2, `getToken called ${issued} times`);
    assert.deepEqual(errors, []);
  } finally {
    client.close();
    publisher.close();
  }
});
