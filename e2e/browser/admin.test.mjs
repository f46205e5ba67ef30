// The admin dashboard in Debian's Chromium, driven by Playwright, against `switchboard serve
// --admin-password`: log in; a chat client (the chat page in another browser context) shows up
// in the connections list within 2 s; its channel's rate rises while the test publishes through
// the server API; the dashboard disconnects it with a close code the client sees; logging out
// leaves the data endpoints answering 401, and a cross-site POST gets 403.
// Screenshots at desktop and phone width go to target/e2e/ (UPDATE_SCREENSHOTS=1: docs/).
//
//   SWITCHBOARD_BIN  the binary under test (default target/release/switchboard)
//   CHROMIUM         the browser (default /usr/bin/chromium)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = fileURLToPath(new URL('../../', import.meta.url));
const binary = process.env.SWITCHBOARD_BIN || `${root}target/release/switchboard`;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const shots = process.env.UPDATE_SCREENSHOTS ? `${root}docs` : `${root}target/e2e`;
const STEP = 15_000;
const PASSWORD = 'admin-test-password';
const API_KEY = 'admin-test-key';
const CLOSE_CODE = 4321;

let server;
let baseUrl;
let browser;
const pageErrors = [];

before(async () => {
  server = spawn(binary, ['serve', '--listen', '127.0.0.1:0', '--admin-password', PASSWORD, '--api-key', API_KEY], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, RUST_LOG: 'info', NO_COLOR: '1' },
  });
  baseUrl = await new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), STEP);
    server.stderr.setEncoding('utf8');
    server.stderr.on('data', (chunk) => {
      log += chunk;
      const found = log.match(/chat on (http:\/\/127\.0\.0\.1:\d+\/)/);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]);
      }
    });
    server.on('exit', (code) => reject(new Error(`server exited (${code}):\n${log}`)));
  });
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
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.on('exit', resolve));
    server.kill('SIGTERM');
    await exited;
  }
});

async function newPage(name, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, locale: 'en-GB', colorScheme: 'light' });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP);
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  return page;
}

/** The chat page as `name` in #lobby, recording the close code of every WebSocket it opens. */
async function chatClient(name) {
  const page = await newPage(name);
  await page.addInitScript(() => {
    const Native = window.WebSocket;
    window.closeCodes = [];
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        this.addEventListener('close', (event) => window.closeCodes.push(event.code));
      }
    };
  });
  await page.goto(`${baseUrl}#lobby`);
  await page.fill('#name-input', name);
  await page.click('#welcome-form button[type=submit]');
  await page.locator('#status-text', { hasText: 'Connected' }).waitFor();
  return page;
}

async function login(page) {
  await page.goto(`${baseUrl}admin`);
  await page.locator('#login-form').waitFor();
  await page.fill('#password', 'not the password');
  await page.click('#login-button');
  await page.locator('#login-error', { hasText: 'wrong password' }).waitFor();
  await page.fill('#password', PASSWORD);
  await page.click('#login-button');
  await page.locator('#status-text', { hasText: 'Live' }).waitFor();
}

/** Publishes to `channel` through the server API every 50 ms until `stop()`. */
function publishing(channel) {
  let running = true;
  const done = (async () => {
    let n = 0;
    while (running) {
      n += 1;
      await fetch(`${baseUrl}api/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ channel, data: { text: `load ${n}` } }),
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  return async () => {
    running = false;
    await done;
  };
}

test('an admin sees a client, its channel busy, disconnects it, logs out', async () => {
  const admin = await newPage('admin');
  await login(admin);

  // A chat client appears in the connections list within 2 s.
  const carol = await chatClient('carol');
  const row = admin.locator('#connections tbody tr', { hasText: 'carol' });
  await row.waitFor({ timeout: 2000 });
  assert.match(await row.textContent(), /lobby/);

  // Its channel's rate rises while a script publishes.
  const lobby = admin.locator('#channels tbody tr[data-channel="lobby"] td.rate');
  await lobby.waitFor();
  const stop = publishing('lobby');
  try {
    await admin.waitForFunction(() => {
      const cell = document.querySelector('#channels tbody tr[data-channel="lobby"] td.rate');
      return cell && Number(cell.textContent) >= 5;
    }, null, { timeout: STEP });
    await admin.waitForFunction(() => Number(document.querySelector('#stat-out').textContent) > 0);
    // A few seconds of charts before the screenshots.
    await admin.waitForTimeout(3000);
    await admin.click('#channels tbody tr[data-channel="lobby"]');
    await admin.locator('#channel-history li', { hasText: 'load' }).first().waitFor();
    await admin.screenshot({ path: `${shots}/admin.png`, fullPage: true });
    const phone = await newPage('phone', { width: 390, height: 844 });
    await phone.context().addCookies(await admin.context().cookies());
    await phone.goto(`${baseUrl}admin`);
    await phone.locator('#status-text', { hasText: 'Live' }).waitFor();
    await phone.locator('#connections tbody tr', { hasText: 'carol' }).waitFor();
    await phone.waitForTimeout(2500);
    await phone.screenshot({ path: `${shots}/admin-phone.png`, fullPage: true });
    await phone.context().close();
  } finally {
    await stop();
  }

  // Disconnect it from the page: the client gets the close code.
  await admin.fill('#close-code', String(CLOSE_CODE));
  await row.getByRole('button', { name: 'Disconnect' }).click();
  await carol.waitForFunction((code) => window.closeCodes.includes(code), CLOSE_CODE);

  // Log out: the data endpoints refuse without the session.
  await admin.click('#logout');
  await admin.locator('#login-form').waitFor();
  const after = await admin.evaluate(async () => {
    const statuses = [];
    for (const path of ['nodes', 'connections', 'channels', 'session']) {
      statuses.push((await fetch(`/admin/api/${path}`)).status);
    }
    return statuses;
  });
  assert.deepEqual(after, [401, 401, 401, 401]);
  assert.deepEqual(pageErrors, []);
  await carol.context().close();
  await admin.context().close();
});

test('a cross-site POST is refused even with the session and its token', async () => {
  const admin = await newPage('admin-2');
  await login(admin);
  const csrf = await admin.evaluate(async () => (await (await fetch('/admin/api/session')).json()).csrf);
  // The context's request API sends the browser's cookies, with the headers a browser puts on
  // another site's POST.
  const post = (headers) => admin.context().request.post(`${baseUrl}admin/api/publish`, {
    headers: { 'content-type': 'application/json', 'x-csrf-token': csrf, ...headers },
    data: { channel: 'lobby', data: 'cross-site' },
  });
  assert.equal((await post({ origin: 'http://evil.example' })).status(), 403);
  assert.equal((await post({ 'sec-fetch-site': 'cross-site' })).status(), 403);
  assert.equal((await post({ origin: baseUrl.replace(/\/$/, '') })).status(), 200);
  const history = await admin.evaluate(async () => (await (await fetch('/admin/api/channel?name=lobby')).json()).publications);
  assert.equal(history.filter((p) => p.data === 'cross-site').length, 1, 'only the same-site one');
  await admin.context().close();
});
