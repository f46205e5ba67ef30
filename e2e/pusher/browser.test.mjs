// pusher-js 8 and Laravel Echo 2 in Debian's Chromium (Playwright) against `switchboard serve
// --pusher-app`: the pages in page/ load the libraries' browser builds, served from
// node_modules by an HTTP server of this test that is also the app's backend: it serves the
// auth endpoints (`/pusher/auth` for pusher-js, `/broadcasting/auth` for Echo, as Laravel
// names it, checking the CSRF header Echo sends), signing with the `pusher` server library's
// authorizeChannel for the user of the page's `user` cookie, and `/pusher/auth-forged`,
// which signs with the wrong secret. Events come from the `pusher` library through Pusher's
// HTTP API. Each person is a browser context of their own (own cookies, own connection).
// A screenshot of each page the presence tests end on goes to target/e2e/ to look at.
//
//   SWITCHBOARD_BIN  the binary under test (default target/release/switchboard)
//   CHROMIUM         the browser (default /usr/bin/chromium)
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';
import PusherServer from 'pusher';

import { Processes, STEP, binary, freePort, root, serve, sleep, waitPort } from '../../clients/js/test/support.mjs';

const APP = { appId: '1', key: 'app-key', secret: 'app-secret' };
const CSRF = 'e2e-csrf-token'; // the page's <meta name="csrf-token">
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const shots = `${root}target/e2e`;
const here = new URL('./', import.meta.url);

const procs = new Processes();
let port;
/** The `pusher` library pointed at the server. */
let server;
let backend;
let baseUrl;
let browser;
const pageErrors = [];

const signer = new PusherServer({ ...APP, useTLS: false, host: '127.0.0.1', port: '1' });
const forger = new PusherServer({ ...APP, secret: 'not-the-secret', useTLS: false, host: '127.0.0.1', port: '1' });

/** What the backend serves: the pages, and the libraries' browser builds. */
const FILES = {
  '/pusher.html': 'pusher.html',
  '/echo.html': 'echo.html',
  '/page/page.js': 'page.js',
  '/page/page.css': 'page.css',
  '/vendor/pusher.js': '../node_modules/pusher-js/dist/web/pusher.js',
  '/vendor/laravel-echo.js': '../node_modules/laravel-echo/dist/echo.js',
};
const TYPES = { html: 'text/html', js: 'text/javascript', css: 'text/css' };

/** The app's backend: pages, and channel authorization for the session's user. */
async function handle(request, response) {
  const path = new URL(request.url, 'http://x').pathname;
  if (request.method === 'GET' && FILES[path]) {
    const body = await readFile(new URL(`page/${FILES[path]}`, here));
    response.writeHead(200, { 'content-type': TYPES[path.split('.').pop()] }).end(body);
    return;
  }
  let body = '';
  for await (const chunk of request) body += chunk;
  const user = request.headers.cookie?.match(/(?:^|; )user=([^;]*)/)?.[1];
  if (request.method !== 'POST' || !['/pusher/auth', '/pusher/auth-forged', '/broadcasting/auth'].includes(path)) {
    response.writeHead(404).end();
  } else if (path === '/broadcasting/auth' && request.headers['x-csrf-token'] !== CSRF) {
    response.writeHead(419).end('CSRF token mismatch'); // as Laravel answers
  } else if (!user) {
    response.writeHead(403).end();
  } else {
    const form = new URLSearchParams(body);
    const channel = form.get('channel_name');
    const presence = channel.startsWith('presence-')
      ? { user_id: user, user_info: { id: user, name: user.toUpperCase() } }
      : undefined;
    const key = path === '/pusher/auth-forged' ? forger : signer;
    const auth = key.authorizeChannel(form.get('socket_id'), channel, presence);
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(auth));
  }
}

before(async () => {
  port = await serve(procs, ['--pusher-app', `${APP.appId}:${APP.key}:${APP.secret}`, '--pusher-client-events']);
  server = new PusherServer({ ...APP, useTLS: false, host: '127.0.0.1', port: String(port) });
  backend = http.createServer((request, response) =>
    handle(request, response).catch((e) => response.writeHead(500).end(String(e))),
  );
  await new Promise((resolve) => backend.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${backend.address().port}`;
  // Playwright gives every launch a fresh, temporary --user-data-dir.
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    timeout: STEP,
  });
  await mkdir(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  backend?.closeAllConnections();
  await new Promise((resolve) => (backend ? backend.close(resolve) : resolve()));
  await procs.stopAll();
  assert.deepEqual(pageErrors, [], 'no uncaught errors in the pages');
});

/** `user`'s page `file` (signed in by cookie), against serve on `wsPort`. */
async function open(user, file, wsPort = port) {
  const context = await browser.newContext({ viewport: { width: 760, height: 560 }, deviceScaleFactor: 1 });
  await context.addCookies([{ name: 'user', value: user, url: baseUrl }]);
  const page = await context.newPage();
  page.setDefaultTimeout(STEP);
  page.on('pageerror', (e) => pageErrors.push(`${user} (${file}): ${e.stack}`));
  await page.goto(`${baseUrl}/${file}?port=${wsPort}`);
  await page.waitForFunction(() => window.t);
  return page;
}

/** Closes `page`'s context: its connection goes, as when a tab is closed. */
const close = (page) => page.context().close();

/** Waits until `page` has recorded an entry with the fields of `wanted` (deep-equal each). */
async function seen(page, wanted, what = JSON.stringify(wanted)) {
  try {
    await page.waitForFunction((w) => window.t.matching(w).length > 0, wanted);
  } catch (e) {
    const entries = await page.evaluate(() => window.t.entries).catch(() => 'page gone');
    const log = procs.children[0]?.log;
    throw new Error(`${what} not seen; the page has ${JSON.stringify(entries)}\nserve:\n${log}`, { cause: e });
  }
}

/** The entries `page` recorded so far that have the fields of `wanted`. */
const matching = (page, wanted) => page.evaluate((w) => window.t.matching(w), wanted);

/** `user`'s pusher-js page, connected (auth at `endpoint`), subscribed to `channels`. */
async function pusherPage(user, channels, { endpoint, wsPort } = {}) {
  const page = await open(user, 'pusher.html', wsPort);
  await page.evaluate((e) => window.t.connect(e), endpoint);
  await seen(page, { kind: 'state', data: 'connected' });
  for (const name of channels) await page.evaluate((n) => window.t.subscribe(n), name);
  return page;
}

const succeeded = (channel) => ({ kind: 'event', channel, event: 'pusher:subscription_succeeded' });

test('Chromium: a public channel gets what the pusher library triggers', async () => {
  const page = await pusherPage('ann', ['news']);
  await seen(page, succeeded('news'));
  await server.trigger('news', 'update', { n: 1 });
  await seen(page, { kind: 'event', channel: 'news', event: 'update', data: { n: 1 } });
  await close(page);
});

test('Chromium: a private channel is authorized by the app; a wrong signature is refused', async () => {
  const ann = await pusherPage('ann', ['private-orders']);
  await seen(ann, succeeded('private-orders'));
  await server.trigger('private-orders', 'created', { id: 7 });
  await seen(ann, { kind: 'event', channel: 'private-orders', event: 'created', data: { id: 7 } });

  const mallory = await pusherPage('mallory', ['private-orders'], { endpoint: '/pusher/auth-forged' });
  await seen(mallory, { kind: 'event', channel: 'private-orders', event: 'pusher:subscription_error' });
  const [refused] = await matching(mallory, { event: 'pusher:subscription_error' });
  assert.equal(refused.data.status, 401, JSON.stringify(refused));
  assert.equal(refused.data.type, 'AuthError', JSON.stringify(refused));
  // Refused, so not subscribed: the next event reaches Ann and not Mallory.
  await server.trigger('private-orders', 'created', { id: 8 });
  await seen(ann, { kind: 'event', channel: 'private-orders', event: 'created', data: { id: 8 } });
  assert.deepEqual(await matching(mallory, { event: 'created' }), []);
  await close(ann);
  await close(mallory);
});

test('Chromium: presence lists both pages; closing one removes its member', async () => {
  const ann = await pusherPage('ann', ['presence-room']);
  await seen(ann, { kind: 'members', channel: 'presence-room', data: ['ann'] });
  const bob = await pusherPage('bob', ['presence-room']);
  await seen(bob, { kind: 'members', channel: 'presence-room', data: ['ann', 'bob'] });
  await seen(ann, {
    kind: 'event',
    channel: 'presence-room',
    event: 'pusher:member_added',
    data: { id: 'bob', info: { id: 'bob', name: 'BOB' } },
  });
  await close(bob);
  await seen(ann, {
    kind: 'event',
    channel: 'presence-room',
    event: 'pusher:member_removed',
    data: { id: 'bob', info: { id: 'bob', name: 'BOB' } },
  });
  await seen(ann, { kind: 'members', channel: 'presence-room', data: ['ann'] });
  await ann.screenshot({ path: `${shots}/pusher-js-presence.png` });
  await close(ann);
});

test('Chromium: client events go from page to page on a private channel, not back to the sender', async () => {
  const ann = await pusherPage('ann', ['private-chat']);
  const bob = await pusherPage('bob', ['private-chat']);
  await seen(ann, succeeded('private-chat'));
  await seen(bob, succeeded('private-chat'));
  assert.equal(await ann.evaluate(() => window.t.trigger('private-chat', 'client-typing', { text: 'hi' })), true);
  await seen(bob, { kind: 'event', channel: 'private-chat', event: 'client-typing', data: { text: 'hi' } });
  // Bob answers; once Ann has the answer, her own event would have come back before it.
  await bob.evaluate(() => window.t.trigger('private-chat', 'client-answer', { ok: true }));
  await seen(ann, { kind: 'event', channel: 'private-chat', event: 'client-answer', data: { ok: true } });
  assert.deepEqual(await matching(ann, { event: 'client-typing' }), []);
  assert.deepEqual(await matching(bob, { event: 'client-answer' }), []);
  await close(ann);
  await close(bob);
});

test('Chromium: pusher-js reconnects when serve restarts, resubscribes and gets new events', async () => {
  // A serve of its own on a port chosen here, to start again on the same port.
  const own = new Processes();
  const wsPort = await freePort();
  const args = ['serve', '--listen', `127.0.0.1:${wsPort}`, '--pusher-app', `${APP.appId}:${APP.key}:${APP.secret}`];
  const start = async () => waitPort(wsPort, own.start(binary, args, { logName: 'serve' }));
  try {
    await start();
    const restarted = new PusherServer({ ...APP, useTLS: false, host: '127.0.0.1', port: String(wsPort) });
    const page = await pusherPage('ann', ['news', 'private-orders'], { wsPort });
    await seen(page, succeeded('news'));
    await seen(page, succeeded('private-orders'));
    const before = await page.evaluate(() => window.t.socketId());

    // Down for as short a time as a restart takes: pusher-js tries again at once, and after
    // a refused try only after its own backoff, in seconds.
    await own.stopAll();
    await start();
    await page.waitForFunction(
      (old) => window.t.socketId() !== old && window.t.matching({ kind: 'state' }).at(-1).data === 'connected',
      before,
      { timeout: 4 * STEP },
    );
    // Subscribed again on the new server (the private channel authorized again for the new
    // socket id): an event to each gets there.
    await page.waitForFunction(
      () =>
        ['news', 'private-orders'].every(
          (channel) => window.t.matching({ channel, event: 'pusher:subscription_succeeded' }).length === 2,
        ),
    );
    await restarted.trigger(['news', 'private-orders'], 'after', { n: 2 });
    await seen(page, { kind: 'event', channel: 'news', event: 'after', data: { n: 2 } });
    await seen(page, { kind: 'event', channel: 'private-orders', event: 'after', data: { n: 2 } });
    await close(page);
  } finally {
    await own.stopAll();
  }
});

test('Laravel Echo: channel().listen() gets events by name and by namespaced class', async () => {
  const page = await open('ann', 'echo.html');
  await seen(page, { kind: 'state', data: 'connected' });
  await page.evaluate(() => {
    window.t.listen('orders', '.created');
    window.t.listen('orders', 'OrderShipped'); // App\Events\OrderShipped, Echo's default namespace
  });
  // Echo subscribes as it listens; an event to a channel nobody is on yet is lost, so wait
  // until the server counts the page.
  await waitSubscribed('orders');
  await server.trigger('orders', 'created', { id: 7 });
  await server.trigger('orders', 'App\\Events\\OrderShipped', { order: { id: 7 } });
  await seen(page, { kind: 'event', channel: 'orders', event: '.created', data: { id: 7 } });
  await seen(page, { kind: 'event', channel: 'orders', event: 'OrderShipped', data: { order: { id: 7 } } });
  await close(page);
});

test('Laravel Echo: join() with here, joining, leaving and whispers between two pages', async () => {
  const ann = await open('ann', 'echo.html');
  await ann.evaluate(() => window.t.join('room'));
  await seen(ann, { kind: 'event', channel: 'room', event: 'here', data: ['ann'] });
  const bob = await open('bob', 'echo.html');
  await bob.evaluate(() => window.t.join('room'));
  await seen(bob, { kind: 'event', channel: 'room', event: 'here', data: ['ann', 'bob'] });
  await seen(ann, { kind: 'event', channel: 'room', event: 'joining', data: { id: 'bob', name: 'BOB' } });

  await bob.evaluate(() => window.t.whisper('room', 'typing', { name: 'bob' }));
  await seen(ann, { kind: 'event', channel: 'room', event: 'whisper typing', data: { name: 'bob' } });

  await close(bob);
  await seen(ann, { kind: 'event', channel: 'room', event: 'leaving', data: { id: 'bob', name: 'BOB' } });
  await seen(ann, { kind: 'members', channel: 'presence-room', data: ['ann'] });
  await ann.screenshot({ path: `${shots}/laravel-echo-presence.png` });
  await close(ann);
});

/** Waits until public channel `name` has a subscriber, as Pusher's HTTP API reports it. */
async function waitSubscribed(name) {
  const deadline = Date.now() + STEP;
  for (;;) {
    const info = await (await server.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } })).json();
    if (info.subscription_count > 0) return;
    if (Date.now() > deadline) throw new Error(`${name} never subscribed: ${JSON.stringify(info)}`);
    await sleep(50);
  }
}
