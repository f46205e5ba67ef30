// The chat page in Debian's Chromium, driven by Playwright, against `switchboard serve`.
//
// Two people join #lobby, see each other online and talk; one reloads the page and finds the
// history. Then that page's network dies without a word: its connection runs through a
// loopback proxy of the test's own that stalls it (no FIN, no RST), so only the hub's
// heartbeat can tell. The indicator must leave "Connected"; the other person sends meanwhile;
// when the network is back the page shows those messages once, marked as recovered, with the
// notice below them. A send the hub refuses keeps its text; the disabled Send button must
// stand out from the composer in both themes.
// The README's screenshots go to target/e2e/ (UPDATE_SCREENSHOTS=1: docs/); the others, to
// look at, always to target/e2e/.
//
//   SWITCHBOARD_BIN  the binary under test (default target/release/switchboard)
//   CHROMIUM         the browser (default /usr/bin/chromium)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = fileURLToPath(new URL('../../', import.meta.url));
const binary = process.env.SWITCHBOARD_BIN || `${root}target/release/switchboard`;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const shots = process.env.UPDATE_SCREENSHOTS ? `${root}docs` : `${root}target/e2e`;
const looks = `${root}target/e2e`;
const STEP = 15_000; // the longest any single wait may take
const API_KEY = 'browser-test-key';
// A heartbeat of 1 s: a dead connection is noticed within about 2 s (2 intervals).
const SERVE = ['--heartbeat', '1s', '--rule', 'announcements=public-read', '--api-key', API_KEY];

let server;
let baseUrl;
let browser;
let proxy;
const pageErrors = [];

/**
 * A loopback TCP proxy to `port`. `stall()` is a dead network: what is open stops carrying
 * bytes both ways and stays open, new connections are held unanswered. `restore()` ends the
 * stalled connections (the page has given up on them) and lets the held ones through.
 */
async function startProxy(port) {
  const pairs = new Set();
  let stalled = false;
  const forward = (pair) => {
    const upstream = net.connect(port, '127.0.0.1');
    pair.upstream = upstream;
    upstream.on('error', () => {});
    upstream.on('close', () => pair.client.destroy());
    pair.client.pipe(upstream);
    upstream.pipe(pair.client);
    pair.client.resume();
  };
  const listener = net.createServer((client) => {
    const pair = { client, upstream: null };
    pairs.add(pair);
    client.on('error', () => {});
    client.on('close', () => {
      pairs.delete(pair);
      pair.upstream?.destroy();
    });
    if (stalled) client.pause();
    else forward(pair);
  });
  await new Promise((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(0, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${listener.address().port}/`,
    stall() {
      stalled = true;
      for (const { client, upstream } of pairs) {
        client.unpipe();
        upstream?.unpipe();
        client.pause();
        upstream?.pause();
      }
    },
    restore() {
      stalled = false;
      for (const pair of [...pairs]) {
        if (pair.upstream) {
          pair.client.destroy();
          pair.upstream.destroy();
        } else {
          forward(pair);
        }
      }
    },
    close() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream?.destroy();
      }
      return new Promise((resolve) => listener.close(resolve));
    },
  };
}

before(async () => {
  // SERVE_FLAGS: more flags for the server, e.g. `--event-loop`.
  const flags = (process.env.SERVE_FLAGS || '').split(/\s+/).filter(Boolean);
  server = spawn(binary, ['serve', '--listen', '127.0.0.1:0', ...SERVE, ...flags], {
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
  proxy = await startProxy(Number(new URL(baseUrl).port));
  // Playwright gives every launch a fresh, temporary --user-data-dir.
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    timeout: STEP,
  });
  await mkdir(shots, { recursive: true });
  await mkdir(looks, { recursive: true });
});

after(async () => {
  await browser?.close();
  await proxy?.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.on('exit', resolve));
    server.kill('SIGTERM');
    await exited;
  }
});

async function openChat(name, { viewport = { width: 1180, height: 760 }, colorScheme = 'light', via = baseUrl } = {}) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, locale: 'en-GB', colorScheme });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP);
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(`${name}: ${m.text()}`);
  });
  await page.goto(`${via}#lobby`);
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

/** The WCAG contrast ratio of two computed `rgb(..)` colours. */
function contrast(a, b) {
  const luminance = (color) => {
    const [r, g, bl] = color.match(/[\d.]+/g).slice(0, 3).map((v) => {
      const c = Number(v) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

const sendColors = (page) => page.evaluate(() => {
  const send = getComputedStyle(document.getElementById('send'));
  return {
    disabled: document.getElementById('send').disabled,
    text: send.color,
    background: send.backgroundColor,
    border: send.borderTopColor,
    composer: getComputedStyle(document.getElementById('composer')).backgroundColor,
  };
});

// Disabled, Send must read as a control (its outline against the composer, 3:1, and its
// label against its own background, 4.5:1) and as off (not the enabled button's fill).
async function checkDisabledSend(page, theme) {
  await page.fill('#message-input', '');
  const off = await sendColors(page);
  assert.ok(off.disabled, `${theme}: Send is disabled with an empty box`);
  const label = contrast(off.text, off.background);
  const outline = contrast(off.border, off.composer);
  assert.ok(label >= 4.5, `${theme}: label contrast ${label.toFixed(2)} (${JSON.stringify(off)})`);
  assert.ok(outline >= 3, `${theme}: outline contrast ${outline.toFixed(2)} (${JSON.stringify(off)})`);
  await page.fill('#message-input', 'x');
  const on = await sendColors(page);
  assert.ok(!on.disabled, `${theme}: Send is enabled with text`);
  assert.notEqual(on.background, off.background, `${theme}: disabled looks like enabled`);
  await page.fill('#message-input', '');
}

// Sends with Enter and waits for the hub's ack: the box empties only then.
async function send(page, text) {
  await page.fill('#message-input', text);
  await page.press('#message-input', 'Enter');
  await page.waitForFunction(() => document.getElementById('message-input').value === '');
}

const status = (page) => page.evaluate(() => document.getElementById('app').dataset.status);

test('two people chat, come back after a reload, and survive a dead network', async () => {
  // Ada goes through the proxy (her network is the one that dies), Grace straight to the hub.
  const ada = await openChat('Ada', { via: proxy.url });
  const grace = await openChat('Grace', { colorScheme: 'dark' });

  await waitForOnline(ada, ['Ada', 'Grace']);
  await waitForOnline(grace, ['Ada', 'Grace']);
  await checkDisabledSend(ada, 'light');
  await checkDisabledSend(grace, 'dark');

  // Enter sends; the button sends.
  await send(ada, 'Hi Grace! The hub is up on this machine.');
  await bubbles(grace, 'The hub is up').waitFor();
  await bubbles(ada, 'The hub is up').waitFor();
  assert.equal(await ada.locator('.msg.own .bubble', { hasText: 'The hub is up' }).count(), 1);
  await grace.fill('#message-input', 'Hello Ada. Messages keep their order, with offsets.');
  await grace.click('#send');
  await bubbles(ada, 'keep their order').waitFor();
  // Ada may see the message before Grace's page has read the ack that empties her box.
  await grace.waitForFunction(() => document.getElementById('message-input').value === '');
  const author = ada.locator('.msg:not(.own)', { hasText: 'keep their order' }).locator('.author');
  assert.equal(await author.textContent(), 'Grace');

  // Ada comes back (a reload): her name is remembered and the room's history is there.
  await ada.reload();
  await ada.locator('#status-text', { hasText: 'Connected' }).waitFor();
  await bubbles(ada, 'keep their order').waitFor();
  assert.equal(await bubbles(ada, 'The hub is up').count(), 1);
  assert.equal(await ada.locator('.msg.own .bubble', { hasText: 'The hub is up' }).count(), 1, 'her own message is still hers');
  await waitForOnline(ada, ['Ada', 'Grace']);
  await waitForOnline(grace, ['Ada', 'Grace']);
  const connectsBefore = await ada.evaluate(() => window.chat.stats.connects);

  // Ada's network dies: her socket stays open and silent. Only the heartbeat can tell.
  proxy.stall();
  await ada.waitForFunction(() => document.getElementById('app').dataset.status !== 'open', null, { timeout: STEP });
  assert.doesNotMatch(await ada.locator('#status-text').textContent(), /^Connected/);
  const dot = await ada.locator('.dot').evaluate((e) => getComputedStyle(e).backgroundColor);
  assert.notEqual(dot, 'rgb(22, 163, 74)', 'the dot is not green');
  await ada.locator('#status-text', { hasText: /Reconnecting|Offline/ }).waitFor();
  await ada.screenshot({ path: `${looks}/chat-offline.png` });

  await send(grace, 'Sent while Ada was away: she should still get this once.');
  await send(grace, 'And a second one, also while she was offline.');
  await bubbles(grace, 'also while she was offline').waitFor();
  // On the hub, not on Ada's page: they can only reach her by recovery.
  assert.equal(await bubbles(ada, 'Sent while Ada was away').count(), 0);
  assert.notEqual(await status(ada), 'open', 'Ada reconnected before the messages were sent; the test proves nothing');

  proxy.restore();
  await ada.locator('#status-text', { hasText: 'Connected' }).waitFor();
  await ada.locator('.notice', { hasText: '2 missed messages recovered' }).waitFor();
  await bubbles(ada, 'also while she was offline').waitFor();
  // The notice comes right after the two recovered messages, and only they are marked.
  const order = await ada.locator('#messages > li').evaluateAll((els) => els.map((e) => {
    if (e.classList.contains('recovered')) return `R:${e.querySelector('.bubble').textContent.slice(0, 10)}`;
    if (e.classList.contains('msg')) return 'msg';
    return e.textContent.includes('recovered') ? 'NOTICE' : 'other';
  }));
  const at = order.indexOf('NOTICE');
  assert.deepEqual(order.slice(at - 2, at + 1), ['R:Sent while', 'R:And a seco', 'NOTICE'], order.join(' '));
  assert.equal(order.filter((o) => o.startsWith('R:')).length, 2, order.join(' '));
  await ada.locator('.msg.recovered .tag', { hasText: 'recovered' }).first().waitFor({ state: 'visible' });
  await ada.screenshot({ path: `${looks}/chat-recovered.png` });
  await waitForOnline(ada, ['Ada', 'Grace']);
  await waitForOnline(grace, ['Ada', 'Grace']);

  await send(grace, 'Welcome back! Nothing lost, nothing twice.');
  await bubbles(ada, 'Welcome back').waitFor();

  const stats = await ada.evaluate(() => ({ ...window.chat.stats, duplicates: window.chat.stats.duplicates }));
  assert.ok(stats.connects > connectsBefore, JSON.stringify(stats));
  assert.equal(stats.recovered, 2, JSON.stringify(stats));
  assert.equal(stats.duplicates, 0, JSON.stringify(stats));
  for (const text of ['The hub is up', 'keep their order', 'Sent while Ada was away', 'also while she', 'Welcome back']) {
    assert.equal(await bubbles(ada, text).count(), 1, `"${text}" shown once`);
  }
  // Offsets on the page are strictly increasing: nothing out of order, no gap.
  const offsets = await ada.locator('.msg').evaluateAll((els) => els.map((e) => Number(e.dataset.offset)));
  assert.deepEqual(offsets, offsets.map((_, i) => offsets[0] + i));

  // On a phone-sized screen: no sideways scrolling, the composer in view, people in a drawer.
  const phone = await openChat('Linus', { viewport: { width: 390, height: 780 } });
  await bubbles(phone, 'Welcome back').waitFor();
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the phone`);
  const sendBox = await phone.locator('#send').boundingBox();
  assert.ok(sendBox && sendBox.x + sendBox.width <= 390 && sendBox.y + sendBox.height <= 780, 'send button in view');
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
  await send(grace, 'New mockups are up in #design');
  await ada.locator('.room-link', { hasText: 'design' }).locator('.badge', { hasText: '1' }).waitFor();
  assert.equal(await bubbles(ada, 'New mockups').count(), 0, 'not shown in #lobby');

  await send(ada, 'Perfect.');
  await bubbles(phone, 'Perfect.').waitFor();
  await bubbles(ada, 'Perfect.').waitFor();
  await ada.fill('#message-input', 'Drafts stay in the box until Enter');
  await ada.mouse.move(700, 200);
  await ada.screenshot({ path: `${shots}/chat.png` });
  await grace.screenshot({ path: `${looks}/chat-dark.png` });

  assert.deepEqual(pageErrors, [], 'no errors in the pages (CSP violations included)');
});

test('a send the hub refuses keeps its text in the box', async () => {
  const kim = await openChat('Kim');
  // Anyone reads #announcements, only token holders write (the server's --rule).
  await kim.fill('#room-input', 'announcements');
  await kim.press('#room-input', 'Enter');
  await kim.locator('#room-meta', { hasText: 'online' }).waitFor();
  const text = 'Can I post here?';
  await kim.fill('#message-input', text);
  await kim.press('#message-input', 'Enter');
  await kim.locator('#toast', { hasText: 'Not sent' }).waitFor();
  assert.equal(await kim.inputValue('#message-input'), text, 'the text is still in the box');
  await kim.waitForFunction(() => !document.getElementById('send').disabled);
  assert.equal(await kim.locator('#message-input').evaluate((e) => e.readOnly), false, 'the box can be edited again');
  assert.equal(await bubbles(kim, text).count(), 0);
  await kim.screenshot({ path: `${looks}/chat-not-sent.png` });
  assert.deepEqual(pageErrors, []);
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
