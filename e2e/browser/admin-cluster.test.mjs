// The admin dashboard of one node of a three-node deployment on Redis, in Debian's Chromium:
// its Nodes table lists all three, each with its own figures (a chat client on each of the
// other two nodes shows in that node's connections; publishing to their channel raises the
// deliveries of exactly those nodes). A picture of the table goes to target/e2e/admin-nodes.png.
//
//   SWITCHBOARD_BIN  the binary under test (default target/release/switchboard)
//   CHROMIUM         the browser (default /usr/bin/chromium)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { chromium } from 'playwright-core';
import { Processes, STEP, redis, root, serve } from '../../clients/js/test/support.mjs';

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const PASSWORD = 'cluster-admin-password';
const API_KEY = 'cluster-admin-key';

const procs = new Processes();
let browser;
const urls = [];

before(async () => {
  const redisPort = await redis(procs);
  for (let i = 0; i < 3; i += 1) {
    const port = await serve(procs, [
      '--broker', `redis://127.0.0.1:${redisPort}`,
      '--admin-password', PASSWORD,
      '--api-key', API_KEY,
    ]);
    urls.push(`http://127.0.0.1:${port}/`);
  }
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    timeout: STEP,
  });
});

after(async () => {
  await browser?.close();
  await procs.stopAll();
});

async function api(url, name, body = {}) {
  const response = await fetch(`${url}api/${name}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200, `${name} on ${url}`);
  return response.json();
}

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-GB' });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP);
  return page;
}

async function chatClient(url, name) {
  const page = await newPage();
  await page.goto(`${url}#lobby`);
  await page.fill('#name-input', name);
  await page.click('#welcome-form button[type=submit]');
  await page.locator('#status-text', { hasText: 'Connected' }).waitFor();
  return page;
}

/** The figure in column `label` of node `name`'s row, as the page shows it. */
const figure = (page, name, label) => page.evaluate(([n, l]) => {
  const cell = document.querySelector(`#nodes tbody tr[data-node="${n}"] td[data-label="${l}"]`);
  return cell ? cell.textContent : null;
}, [name, label]);

test('the admin page of one node shows all three nodes, each with its own figures', async () => {
  // Each node's own name: `info` lists the answering node first.
  const names = [];
  for (const url of urls) names.push((await api(url, 'info')).nodes[0].node);
  assert.equal(new Set(names).size, 3, `three distinct nodes: ${names}`);

  const admin = await newPage();
  await admin.goto(`${urls[0]}admin`);
  await admin.fill('#password', PASSWORD);
  await admin.click('#login-button');
  await admin.locator('#status-text', { hasText: 'Live' }).waitFor();
  await admin.locator('#nodes-note', { hasText: '3 nodes' }).waitFor();
  for (const name of names) await admin.locator(`#nodes tbody tr[data-node="${name}"]`).waitFor();

  // A client on the second and one on the third node: each counts on its own node only.
  const ann = await chatClient(urls[1], 'ann');
  const bob = await chatClient(urls[2], 'bob');
  // Each on its own node only, subscribed to its channel there.
  await admin.waitForFunction((ns) => {
    const cell = (n, label) => document.querySelector(`#nodes tbody tr[data-node="${n}"] td[data-label="${label}"]`)?.textContent;
    const count = (n) => cell(n, 'Connections');
    return count(ns[0]) === '0' && count(ns[1]) === '1' && count(ns[2]) === '1'
      && cell(ns[1], 'Channels') === '1' && cell(ns[2], 'Channels') === '1';
  }, names);

  // Publishing to their channel: the two nodes with a subscriber deliver, the first does not.
  let running = true;
  const load = (async () => {
    for (let n = 1; running; n += 1) {
      await api(urls[0], 'publish', { channel: 'lobby', data: { text: `load ${n}` } });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  try {
    await admin.waitForFunction((ns) => {
      const rate = (n) => Number(document.querySelector(`#nodes tbody tr[data-node="${n}"] td[data-label="Deliveries / s"]`)?.textContent);
      return rate(ns[1]) >= 5 && rate(ns[2]) >= 5;
    }, names);
  } finally {
    running = false;
    await load;
  }
  assert.equal(await figure(admin, names[0], 'Deliveries / s'), '0');
  assert.equal(await figure(admin, names[0], 'Channels'), '0');
  await mkdir(`${root}target/e2e`, { recursive: true });
  await admin.locator('#nodes').screenshot({ path: `${root}target/e2e/admin-nodes.png` });
  await ann.context().close();
  await bob.context().close();
  await admin.context().close();
});
