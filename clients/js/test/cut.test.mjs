// The cut test: clients of switchboard.js behind loopback proxies that cut (FIN), reset (RST)
// and stall (blackhole) their connections at random while 3 publishers publish, against one
// `serve` node and against 2 nodes on Redis. At the end every subscriber must hold every
// acked message of its channels exactly once, in offset order. Then the same check runs on
// copies of the client with `since` or dedup taken out, and must see the gaps and
// duplicates that follow: a check that cannot fail proves nothing.
//
//   CUTS         cuts per run against the real client (default 200)
//   CUT_SECONDS  how long those cuts are spread over (default 25)
//   SWITCHBOARD_BIN  the binary (default target/release/switchboard)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { ChaosProxy, Processes, STEP, redis, serve, sleep, until } from './support.mjs';

const CUTS = Number(process.env.CUTS || 200);
const SECONDS = Number(process.env.CUT_SECONDS || 25);
// Heartbeat 1 s: a stalled connection is found dead within about 2.5 s. History holds far
// more than is published during the longest outage, so every reconnect can recover.
const SERVE_ARGS = ['--heartbeat', '1s', '--history-size', '20000'];
const CLIENT_OPTIONS = { timeout: 4_000, minDelay: 20, maxDelay: 500 };

const source = new URL('../switchboard.js', import.meta.url);
const procs = new Processes();
let scratch;
let single; // the port of the one-node server

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'switchboard-js-'));
  single = await serve(procs, SERVE_ARGS);
});

after(async () => {
  await procs.stopAll();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/**
 * The client module with `patches` ([from, to] pairs) applied: a changed copy made here,
 * so that the shipped module has no switch to turn its guarantees off.
 */
async function clientWith(name, patches) {
  let text = await readFile(source, 'utf8');
  for (const [from, to] of patches) {
    assert.ok(text.includes(from), `patch ${name}: ${from} is not in switchboard.js`);
    text = text.replaceAll(from, to);
  }
  const path = join(scratch, `switchboard-${name}.js`);
  await writeFile(path, text);
  return (await import(pathToFileURL(path).href)).Switchboard;
}

const SINCE = '    if (position) frame.since = { epoch: position.epoch, offset: position.offset };';
const DEDUP = '    if (p.offset <= this.#position.offset) {';
const NO_SINCE = [[SINCE, '']];
// A server that replays from a bit before where the client was (at least once): only the
// client's dedup keeps the stream exactly-once.
const REWOUND = [[SINCE, '    if (position) frame.since = { epoch: position.epoch, offset: Math.max(0, position.offset - 20) };']];
const NO_DEDUP = [[DEDUP, '    if (false) {']];

/**
 * One run: subscribers and 3 publishers on `proxies` (round robin), `cuts` cuts spread over
 * `seconds`; returns the figures.
 */
async function cutRun({ Switchboard, proxies, cuts, seconds, kinds, label }) {
  const channels = [`${label}-a`, `${label}-b`];
  const clients = [];
  const errors = new Map();
  let reconnects = 0;
  let next = 0;
  const client = (name) => {
    const proxy = proxies[next++ % proxies.length];
    const c = new Switchboard(`ws://127.0.0.1:${proxy.port}/ws`, { name, ...CLIENT_OPTIONS });
    c.on('error', (e) => errors.set(e.code, (errors.get(e.code) ?? 0) + 1));
    c.on('connected', (e) => {
      if (e.reconnected) reconnects += 1;
    });
    clients.push(c);
    return c;
  };

  // Subscribers: two on a, one on b, one on both.
  const followed = [[channels[0]], [channels[0]], [channels[1]], channels];
  const subs = [];
  const gapEvents = [];
  followed.forEach((chans, i) => {
    const c = client(`sub${i}`);
    for (const channel of chans) {
      const got = [];
      const sub = c.subscribe(channel, { message: (m) => got.push(m), gap: (g) => gapEvents.push(g) });
      subs.push({ channel, sub, got });
    }
  });
  await until(() => subs.every((s) => s.sub.state === 'subscribed'), 'every subscription');

  // Publishers: each publishes, waits for the ack (or the failure), and goes on.
  const acked = new Map(channels.map((c) => [c, new Map()]));
  let failed = 0;
  let stop = false;
  const publishers = [0, 1, 2].map(async (i) => {
    const c = client(`pub${i}`);
    for (let seq = 0; !stop; seq += 1) {
      const channel = i < 2 ? channels[i] : channels[seq % 2];
      const data = { p: i, seq };
      try {
        const offset = await c.publish(channel, data);
        acked.get(channel).set(offset, `${i}:${seq}`);
      } catch {
        failed += 1; // connection lost or timed out: it may or may not be in the stream
      }
      await sleep(10);
    }
  });

  // The cuts, each on a random live connection of a random proxy.
  const done = { fin: 0, rst: 0, stall: 0 };
  for (let n = 0; n < cuts; ) {
    await sleep((seconds * 1000) / cuts);
    const live = proxies.flatMap((p) => p.live().map((pair) => [p, pair]));
    if (live.length === 0) continue;
    const [proxy, pair] = live[Math.floor(Math.random() * live.length)];
    const kind = kinds[Math.floor(Math.random() * kinds.length)];
    proxy.cut(pair, kind);
    done[kind] += 1;
    n += 1;
  }
  stop = true;
  await Promise.all(publishers);

  // Every subscriber catches up with the last acked offset of its channels (bounded).
  const last = (channel) => Math.max(0, ...acked.get(channel).keys());
  const caughtUp = () => subs.every((s) => (s.sub.position?.offset ?? 0) >= last(s.channel));
  await until(caughtUp, 'subscribers to catch up', 2 * STEP).catch(() => {});
  for (const c of clients) c.close();

  const figures = { cuts: done, acked: 0, failed, deliveries: 0, duplicates: 0, gaps: 0, disorder: 0, mismatched: 0 };
  for (const channel of channels) figures.acked += acked.get(channel).size;
  for (const { channel, sub, got } of subs) {
    const seen = new Map();
    let previous = 0;
    for (const m of got) {
      figures.deliveries += 1;
      if (seen.has(m.offset)) figures.duplicates += 1;
      if (m.offset <= previous) figures.disorder += 1;
      previous = m.offset;
      seen.set(m.offset, `${m.data.p}:${m.data.seq}`);
    }
    for (const [offset, key] of acked.get(channel)) {
      if (!seen.has(offset)) figures.gaps += 1;
      else if (seen.get(offset) !== key) figures.mismatched += 1;
    }
    figures.dropped = (figures.dropped ?? 0) + sub.stats.duplicates;
    figures.recovered = (figures.recovered ?? 0) + sub.stats.recovered;
  }
  figures.reconnects = reconnects;
  figures.gapEvents = gapEvents.length;
  figures.errors = Object.fromEntries(errors);
  console.log(`${label}: ${JSON.stringify(figures)}`);
  return figures;
}

async function proxiesFor(ports) {
  const proxies = [];
  for (const port of ports) {
    const proxy = new ChaosProxy(port);
    await proxy.listen();
    proxies.push(proxy);
  }
  return proxies;
}

function assertExactlyOnce(f) {
  assert.equal(f.cuts.fin + f.cuts.rst + f.cuts.stall, CUTS);
  assert.ok(f.acked > 100, `too few acked messages to mean anything: ${f.acked}`);
  assert.ok(f.reconnects > CUTS / 2, `the cuts did not reconnect the clients: ${f.reconnects}`);
  assert.equal(f.duplicates, 0, 'duplicates');
  assert.equal(f.gaps, 0, 'gaps (acked messages a subscriber never got)');
  assert.equal(f.disorder, 0, 'messages out of offset order');
  assert.equal(f.mismatched, 0, 'an offset with another message than the one acked');
  assert.equal(f.gapEvents, 0, 'gap events');
}

test('one node: every acked message exactly once, in order, through random cuts', async () => {
  const { Switchboard } = await import(source.href);
  const proxies = await proxiesFor([single]);
  try {
    const f = await cutRun({ Switchboard, proxies, cuts: CUTS, seconds: SECONDS, kinds: ['fin', 'rst', 'stall'], label: 'single' });
    assertExactlyOnce(f);
    assert.ok(f.cuts.stall > 0 && f.errors.heartbeat_missed > 0, 'stalls were found by the heartbeat');
  } finally {
    await Promise.all(proxies.map((p) => p.close()));
  }
});

test('two nodes on Redis: every acked message exactly once, in order, through random cuts', async () => {
  const redisPort = await redis(procs);
  const broker = ['--broker', `redis://127.0.0.1:${redisPort}`];
  const nodes = [await serve(procs, [...SERVE_ARGS, ...broker]), await serve(procs, [...SERVE_ARGS, ...broker])];
  const { Switchboard } = await import(source.href);
  const proxies = await proxiesFor(nodes);
  try {
    const f = await cutRun({ Switchboard, proxies, cuts: CUTS, seconds: SECONDS, kinds: ['fin', 'rst', 'stall'], label: 'cluster' });
    assertExactlyOnce(f);
  } finally {
    await Promise.all(proxies.map((p) => p.close()));
  }
});

// The variants: fewer cuts, no stalls (they only slow a run down), on the one node.
const VARIANT = { cuts: 40, seconds: 6, kinds: ['fin', 'rst'] };

test('the check sees gaps when the client resubscribes without since', async () => {
  const Switchboard = await clientWith('no-since', NO_SINCE);
  const proxies = await proxiesFor([single]);
  try {
    const f = await cutRun({ Switchboard, proxies, ...VARIANT, label: 'no-since' });
    assert.ok(f.gaps > 0, `no gap found: ${JSON.stringify(f)}`);
    assert.ok(f.gapEvents > 0, 'the client did not report the gaps it could see');
  } finally {
    await Promise.all(proxies.map((p) => p.close()));
  }
});

test('replayed messages are dropped by offset; without dedup the check sees duplicates', async () => {
  const proxies = await proxiesFor([single]);
  try {
    const rewound = await clientWith('rewound', REWOUND);
    const f = await cutRun({ Switchboard: rewound, proxies, ...VARIANT, label: 'rewound' });
    assert.ok(f.dropped > 0, `the server replayed nothing twice: ${JSON.stringify(f)}`);
    assert.equal(f.duplicates, 0, 'dedup let a replayed message through');
    assert.equal(f.gaps, 0);

    const undeduped = await clientWith('rewound-no-dedup', [...REWOUND, ...NO_DEDUP]);
    const g = await cutRun({ Switchboard: undeduped, proxies, ...VARIANT, label: 'no-dedup' });
    assert.ok(g.duplicates > 0, `no duplicate found: ${JSON.stringify(g)}`);
  } finally {
    await Promise.all(proxies.map((p) => p.close()));
  }
});
