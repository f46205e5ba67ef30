// The chat page in Debian's Chromium, driven by Playwright, against `switchboard serve`.
//
// Two people join #lobby, see each other online and talk; one page's socket is cut, a message
// is sent meanwhile, and after the page reconnects by itself it shows that message once.
// Screenshots go to target/e2e/ (UPDATE_SCREENSHOTS=1: docs/, the ones the README shows).
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
const STEP = 15_000; // the longest any single wait may take
const API_KEY = 'browser-test-key';

let server;
let baseUrl;
let browser;
const pageErrors = [];

before(async () => {
  server = spawn(binary, ['serve', '--listen', '127.0.0.1:0', '--api-key', API_KEY], {
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
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.on('exit', resolve));
    server.kill('SIGTERM');
    await exited;
  }
});

async function openChat(name, viewport = { width: 1180, height: 760 }) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, locale: 'en-GB' });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP);
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(`${name}: ${m.text()}`);
  });
  await page.goto(`${baseUrl}#lobby`);
  await page.fill('#name-input', name);
  await page.click('#welcome-form button[type=submit]');
  await page.locator('#status-text', { hasText: 'Connected' }).waitFor();
  await page.locator('#room-meta', { hasText: 'online' }).waitFor();
  return page;
}

const bubbles = (page, text) => page.locator('.bubble', { hasText: text });
const online = (page) => page.locator('#people .who').allTextContents();

async function waitForOnline(page, names) {
  await page.waitForFunction(
    (expected) => {
      const shown = [...document.querySelectorAll('#people .who')].map((e) => e.textContent);
      return expected.every((n) => shown.includes(n)) && shown.length === expected.length;
    },
    names,
    { timeout: STEP },
  );
}

test('two people chat, and a dropped page recovers what it missed exactly once', async () => {
  const ada = await openChat('Ada');
  const grace = await openChat('Grace');

  await waitForOnline(ada, ['Ada', 'Grace']);
  await waitForOnline(grace, ['Ada', 'Grace']);

  // Enter sends; the button sends.
  await ada.fill('#message-input', 'Hi Grace! The hub is up on this machine.');
  await ada.press('#message-input', 'Enter');
  await bubbles(grace, 'The hub is up').waitFor();
  await bubbles(ada, 'The hub is up').waitFor();
  assert.equal(await ada.locator('.msg.own .bubble', { hasText: 'The hub is up' }).count(), 1);
  await grace.fill('#message-input', 'Hello Ada. Messages keep their order, with offsets.');
  await grace.click('#send');
  await bubbles(ada, 'keep their order').waitFor();
  const author = ada.locator('.msg:not(.own)', { hasText: 'keep their order' }).locator('.author');
  assert.equal(await author.textContent(), 'Grace');

  // Cut Ada's connection; the page notices and schedules a reconnect.
  await ada.evaluate(() => window.chat.socket.close(4000, 'cut by the test'));
  await ada.locator('#status-text', { hasText: 'Offline' }).waitFor();

  await grace.fill('#message-input', 'Sent while Ada was away: she should still get this once.');
  await grace.press('#message-input', 'Enter');
  await bubbles(grace, 'Sent while Ada was away').waitFor();
  // The message is on the server while Ada is still offline: it can only reach her by recovery.
  assert.notEqual(await ada.evaluate(() => window.chat.state.status), 'open',
    'Ada reconnected before the message was sent; the test proves nothing');

  await ada.locator('#status-text', { hasText: 'Connected' }).waitFor();
  await bubbles(ada, 'Sent while Ada was away').waitFor();
  await ada.locator('.notice', { hasText: '1 missed message recovered' }).waitFor();
  await waitForOnline(ada, ['Ada', 'Grace']);
  await waitForOnline(grace, ['Ada', 'Grace']);

  await grace.fill('#message-input', 'Welcome back! Nothing lost, nothing twice.');
  await grace.press('#message-input', 'Enter');
  await bubbles(ada, 'Welcome back').waitFor();

  const stats = await ada.evaluate(() => ({ ...window.chat.stats }));
  assert.equal(stats.reconnects, 1, JSON.stringify(stats));
  assert.equal(stats.recovered, 1, JSON.stringify(stats));
  assert.equal(stats.duplicates, 0, JSON.stringify(stats));
  for (const text of ['The hub is up', 'keep their order', 'Sent while Ada was away', 'Welcome back']) {
    assert.equal(await bubbles(ada, text).count(), 1, `"${text}" shown once`);
  }
  // Offsets on the page are strictly increasing: nothing out of order, no gap.
  const offsets = await ada.locator('.msg').evaluateAll((els) => els.map((e) => Number(e.dataset.offset)));
  assert.deepEqual(offsets, offsets.map((_, i) => offsets[0] + i));

  // On a phone-sized screen: no sideways scrolling, the composer in view, people in a drawer.
  const phone = await openChat('Linus', { width: 390, height: 780 });
  await bubbles(phone, 'Welcome back').waitFor();
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the phone`);
  const send = await phone.locator('#send').boundingBox();
  assert.ok(send && send.x + send.width <= 390 && send.y + send.height <= 780, 'send button in view');
  const drawerRight = async () => {
    const box = await phone.locator('#sidebar').boundingBox();
    return box.x + box.width;
  };
  assert.ok((await drawerRight()) <= 0, 'rooms and people start in a closed drawer');
  await phone.click('#menu-button');
  await waitForOnline(phone, ['Ada', 'Grace', 'Linus']);
  await phone.waitForFunction(() => {
    const box = document.getElementById('sidebar').getBoundingClientRect();
    return box.x === 0;
  });
  await phone.click('#scrim', { position: { x: 370, y: 400 } }); // the dimmed strip beside it
  await phone.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().right <= 0);
  await phone.fill('#message-input', 'Hi from my phone');
  await phone.screenshot({ path: `${shots}/chat-phone.png` });

  assert.deepEqual((await online(grace)).sort(), ['Ada', 'Grace', 'Linus']);

  // Rooms: a message in a room Ada is not looking at shows as unread.
  await ada.fill('#room-input', 'design');
  await ada.press('#room-input', 'Enter');
  await ada.locator('#room-name', { hasText: 'design' }).waitFor();
  await ada.locator('#room-meta', { hasText: 'online' }).waitFor();
  await ada.locator('.room-link', { hasText: 'lobby' }).click();
  await ada.locator('#room-name', { hasText: 'lobby' }).waitFor();
  await grace.fill('#room-input', 'design');
  await grace.press('#room-input', 'Enter');
  await grace.locator('#room-meta', { hasText: '2 online' }).waitFor();
  await grace.fill('#message-input', 'New mockups are up in #design');
  await grace.press('#message-input', 'Enter');
  await ada.locator('.room-link', { hasText: 'design' }).locator('.badge', { hasText: '1' }).waitFor();
  assert.equal(await bubbles(ada, 'New mockups').count(), 0, 'not shown in #lobby');

  await ada.fill('#message-input', 'Perfect.');
  await ada.press('#message-input', 'Enter');
  await bubbles(phone, 'Perfect.').waitFor();
  await bubbles(ada, 'Perfect.').waitFor();
  await ada.fill('#message-input', 'Drafts stay in the box until Enter');
  await ada.mouse.move(700, 200);
  await ada.screenshot({ path: `${shots}/chat.png` });

  assert.deepEqual(pageErrors, [], 'no errors in the pages (CSP violations included)');
});

test('a message the backend publishes shows as the server\'s', async () => {
  const lin = await openChat('Lin');
  const answer = await fetch(`${baseUrl}api/publish`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ channel: 'lobby', data: { text: 'Deploy finished' } }),
  });
  assert.equal(answer.status, 200, await answer.text());
  const message = lin.locator('li', { has: bubbles(lin, 'Deploy finished') });
  await message.waitFor();
  assert.equal(await message.locator('.author').textContent(), 'server');
  assert.deepEqual(pageErrors, []);
});
