// What the client tests share: the binary and redis-server started on free loopback ports
// and stopped by PID, a chaos TCP proxy, fake WebSocket servers, and bounded waits.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('../../../', import.meta.url));
export const binary = process.env.SWITCHBOARD_BIN || `${root}target/release/switchboard`;
export const STEP = 15_000; // the longest a single wait may take

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `check()` is true, polling; throws `what` after `ms`. */
export async function until(check, what, ms = STEP) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A free loopback port (closed again, for a program that binds it itself). */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Started processes, stopped by PID (SIGTERM, then SIGKILL after a grace). */
export class Processes {
  children = [];

  start(cmd, args, { logName } = {}) {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    child.log = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      child.log = (child.log + chunk).slice(-20_000);
    });
    child.logName = logName ?? cmd;
    this.children.push(child);
    return child;
  }

  async stopAll() {
    await Promise.all(this.children.splice(0).map(stop));
  }
}

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  process.kill(child.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
  }, 5_000);
  await exited;
  clearTimeout(timer);
}

/** Flags every `serve` of the tests gets, from SERVE_FLAGS (e.g. `--event-loop`). */
const serveFlags = (process.env.SERVE_FLAGS || '').split(/\s+/).filter(Boolean);

/** `switchboard serve` on a free port; resolves with its port once it listens. */
export async function serve(procs, args = []) {
  const child = procs.start(binary, ['serve', '--listen', '127.0.0.1:0', ...args, ...serveFlags], { logName: 'serve' });
  let port;
  await until(() => {
    if (child.exitCode !== null) throw new Error(`serve exited (${child.exitCode}):\n${child.log}`);
    port = child.log.match(/hub protocol on ws:\/\/127\.0\.0\.1:(\d+)\//)?.[1];
    return port;
  }, `serve to listen:\n${child.log}`);
  return Number(port);
}

/** redis-server on a free port, no persistence. */
export async function redis(procs) {
  const port = await freePort();
  const child = procs.start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    logName: 'redis',
  });
  await waitPort(port, child);
  return port;
}

/** Waits until `port` accepts connections (and `child`, if given, is still running). */
export async function waitPort(port, child) {
  const deadline = Date.now() + STEP;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`${child.logName} exited (${child.exitCode}):\n${child.log}`);
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} never listened`);
    await sleep(50);
  }
}

/**
 * A loopback TCP proxy to `target` that can, for any connection, cut it (FIN both ways),
 * reset it (RST both ways), or stall it: stop forwarding without closing, like a network that
 * went away (only a heartbeat tells).
 */
export class ChaosProxy {
  /** @type {Set<{client: net.Socket, upstream: net.Socket, stalled: boolean}>} */
  pairs = new Set();

  constructor(target) {
    this.target = target;
    this.server = net.createServer((client) => this.#accept(client));
  }

  async listen() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
    return this.port;
  }

  #accept(client) {
    const upstream = net.connect(this.target, '127.0.0.1');
    const pair = { client, upstream, stalled: false };
    this.pairs.add(pair);
    const forward = (from, to) => {
      from.on('data', (chunk) => {
        if (pair.stalled) return; // blackhole: read and drop, send nothing, close nothing
        if (!to.write(chunk)) {
          from.pause();
          to.once('drain', () => from.resume());
        }
      });
      from.on('end', () => {
        if (!pair.stalled) to.end();
      });
    };
    forward(client, upstream);
    forward(upstream, client);
    const gone = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', gone);
    upstream.on('close', gone);
    client.on('error', () => {});
    upstream.on('error', () => {});
  }

  /** Live connections that are not stalled. */
  live() {
    return [...this.pairs].filter((p) => !p.stalled && !p.client.destroyed);
  }

  cut(pair, kind) {
    switch (kind) {
      case 'fin':
        pair.client.end();
        pair.upstream.end();
        break;
      case 'rst':
        pair.client.resetAndDestroy();
        pair.upstream.resetAndDestroy();
        break;
      case 'stall':
        pair.stalled = true;
        break;
      default:
        throw new Error(kind);
    }
  }

  async close() {
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/**
 * A fake WebSocket server (the handshake by hand on node:http): `onSocket(ws)` gets an object
 * that sends text and close frames, so tests can play a server that misbehaves.
 */
export async function fakeWsServer(onSocket) {
  const server = http.createServer((_, response) => response.writeHead(426).end());
  const sockets = new Set();
  server.on('upgrade', (request, socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const accept = createHash('sha1')
      .update(request.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
      .digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    onSocket({
      url: request.url,
      text: (s) => socket.write(frame(0x1, Buffer.from(s))),
      close: (code, reason = '') => {
        const body = Buffer.alloc(2 + Buffer.byteLength(reason));
        body.writeUInt16BE(code);
        body.write(reason, 2);
        socket.write(frame(0x8, body));
        socket.end();
      },
      socket,
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

function frame(opcode, payload) {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, n]) : Buffer.from([0x80 | opcode, 126, n >> 8, n & 0xff]);
  return Buffer.concat([head, payload]);
}
