#!/usr/bin/env python3
"""Hostile clients against `switchboard serve --mode echo`.

Starts the server on a free loopback port, then runs each attack for a bounded time while a
well-behaved client keeps checking that echoes still come back intact:

  tiny-fragments    a message in endless empty continuation frames (the ws 2026 advisory)
  endless-message   continuation frames of 1 KiB until the message limit is passed
  ping-flood        pings as fast as possible, pongs never read
  never-read        clients that send and never read what is echoed
  cut-mid-frame     connections dropped (RST) in the middle of a frame
  cut-mid-handshake connections dropped in the middle of the request head
  malformed         garbage and broken handshakes
  half-open         peers that vanish without a FIN (never send, never read): the server's
                    keepalive pings them and closes them with 1011

Checks: every attack that breaks a rule gets the right close code or HTTP status; the server
stays up and keeps serving; its RSS stays under a bound during the attacks; no panic appears
in its log. Prints "N passed, M failed" and exits non-zero on a failure.

  hostile.py [--binary target/release/switchboard] [--seconds 4] [--event-loop]

--event-loop serves the echo from the event loop (serve --event-loop), whose connections meet
the same attacks.
"""
import argparse, asyncio, os, random, socket, struct, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from procs import Processes, free_port, rss_mb, wait_port  # noqa: E402
from wsclient import KEY_REQUEST, frame, open_ws, read_frame  # noqa: E402

MAX_MESSAGE = 1 << 20
RSS_BOUND_MB = 400


async def close_code(reader, timeout=10):
    """Reads frames until a Close; returns its code (None if the connection just ended)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                op, payload = await read_frame(reader)
                if op == 8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


class Run:
    def __init__(self, port, pid, seconds):
        self.port, self.pid, self.seconds = port, pid, seconds
        self.passed = self.failed = 0
        self.peak_rss = 0.0
        self.pings = 0

    def check(self, ok, what):
        print(("  ok    " if ok else "  FAIL  ") + what, flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1

    async def watch(self, stop):
        """A well-behaved client echoing throughout; counts its good round trips."""
        good = bad = 0
        reader, writer = await open_ws(self.port)
        while not stop.is_set():
            payload = os.urandom(random.randint(1, 2000))
            writer.write(frame(2, payload))
            try:
                async with asyncio.timeout(5):
                    op, echoed = await read_frame(reader)
                    # The server pings a client that has been silent for the idle timeout,
                    # as this one is while an echo is slow to come: it answers, as a
                    # well-behaved client does.
                    while op == 9:
                        self.pings += 1
                        writer.write(frame(10, echoed))
                        op, echoed = await read_frame(reader)
                good += op == 2 and echoed == payload
                bad += not (op == 2 and echoed == payload)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                bad += 1
                break
            self.peak_rss = max(self.peak_rss, rss_mb(self.pid))
            await asyncio.sleep(0.01)
        writer.close()
        return good, bad

    async def attack(self, name, coro):
        self.peak_rss = rss_mb(self.pid)
        self.pings = 0
        stop = asyncio.Event()
        watcher = asyncio.create_task(self.watch(stop))
        print(f"{name}:", flush=True)
        try:
            await coro
        except Exception as e:  # an attack that errors out is a failed check, not a crash
            self.check(False, f"{name} raised {e!r}")
        stop.set()
        good, bad = await watcher
        self.check(good > 0 and bad == 0, f"well-behaved client served during {name} "
                   f"({good} echoes, {bad} bad, {self.pings} pings answered)")
        self.check(self.peak_rss < RSS_BOUND_MB,
                   f"server RSS peak during {name} {self.peak_rss:.0f} MB < {RSS_BOUND_MB} MB")

    async def tiny_fragments(self):
        async def one():
            reader, writer = await open_ws(self.port)
            writer.write(frame(1, b"x", fin=False))
            chunk = frame(0, b"", fin=False) * 1000
            code = None
            try:
                for _ in range(400):  # up to 400k fragments; the limit is 131,072
                    writer.write(chunk)
                    await writer.drain()
            except ConnectionError:
                pass
            code = await close_code(reader)
            writer.close()
            return code
        codes = await asyncio.gather(*(one() for _ in range(8)))
        self.check(all(c in (1008, None) for c in codes) and 1008 in codes,
                   f"fragment floods closed with 1008 (got {codes})")

    async def endless_message(self):
        reader, writer = await open_ws(self.port)
        writer.write(frame(2, b"x" * 1024, fin=False))
        try:
            for _ in range(MAX_MESSAGE // 1024 + 64):
                writer.write(frame(0, b"x" * 1024, fin=False))
                await writer.drain()
        except ConnectionError:
            pass
        code = await close_code(reader)
        self.check(code == 1009, f"endless message closed with 1009 (got {code})")
        writer.close()

    async def ping_flood(self):
        async def one():
            _, writer = await open_ws(self.port)
            deadline = time.monotonic() + self.seconds
            ping = frame(9, b"p" * 125) * 100
            try:
                while time.monotonic() < deadline:
                    writer.write(ping)
                    async with asyncio.timeout(1):
                        await writer.drain()  # blocks once the server stops reading us
            except (TimeoutError, ConnectionError):
                pass
            writer.transport.abort()
        await asyncio.gather(*(one() for _ in range(20)))

    async def never_read(self):
        async def one():
            _, writer = await open_ws(self.port)
            deadline = time.monotonic() + self.seconds
            msg = frame(2, os.urandom(60000))
            try:
                while time.monotonic() < deadline:
                    writer.write(msg)
                    async with asyncio.timeout(1):
                        await writer.drain()
            except (TimeoutError, ConnectionError):
                pass
            return writer
        writers = await asyncio.gather(*(one() for _ in range(50)))
        self.peak_rss = max(self.peak_rss, rss_mb(self.pid))
        for w in writers:
            w.transport.abort()

    async def cut_mid_frame(self):
        for i in range(300):
            reader, writer = await open_ws(self.port)
            whole = frame(1 + (i & 1), os.urandom(random.randint(10, 5000)))
            writer.write(whole[: random.randint(1, len(whole) - 1)])
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # RST

    async def cut_mid_handshake(self):
        for _ in range(300):
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(KEY_REQUEST[: random.randint(1, len(KEY_REQUEST) - 1)])
            await writer.drain()
            writer.transport.abort()

    async def half_open(self):
        conns = [await open_ws(self.port) for _ in range(20)]
        # Silent for longer than the server's idle + pong timeouts (1 s + 1 s here).
        await asyncio.sleep(3.5)
        codes = await asyncio.gather(*(close_code(reader) for reader, _ in conns))
        for _, writer in conns:
            writer.transport.abort()
        self.check(all(c == 1011 for c in codes), f"silent peers closed with 1011 (got {set(codes)})")

    async def malformed(self):
        cases = [
            (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(64) + b"\r\n\r\n", b"400"),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"426"),
            (KEY_REQUEST.replace(b"Version: 13", b"Version: 7"), b"426"),
            (KEY_REQUEST.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short"), b"400"),
            (b"GET / HTTP/1.1\r\n" + b"X-Fill: " + b"a" * 20000 + b"\r\n\r\n", b"431"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", b"400"),
        ]
        for _ in range(200):
            garbage = os.urandom(random.randint(1, 300))
            # Line ends before a request line are skipped (RFC 9112, 2.2): bytes that are only
            # line ends are no request yet, and get no answer.
            if not garbage.strip(b"\r\n"):
                garbage = b"x" + garbage
            cases.append((garbage + b"\r\n\r\n", b"400"))
        wrong = []
        for request, status in cases:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(request)
            try:
                async with asyncio.timeout(15):
                    answer = await reader.read(200)
            except (TimeoutError, ConnectionError):
                answer = b""
            if not answer.startswith(b"HTTP/1.1 " + status):
                wrong.append((request[:40], answer[:40]))
            writer.close()
        self.check(not wrong, f"{len(cases)} malformed handshakes got their 4xx ({len(wrong)} wrong: {wrong[:3]})")


async def main_async(args, port, server):
    run = Run(port, server.pid, args.seconds)
    for name in ("tiny_fragments", "endless_message", "ping_flood", "never_read",
                 "cut_mid_frame", "cut_mid_handshake", "malformed", "half_open"):
        await run.attack(name.replace("_", "-"), getattr(run, name)())
        run.check(server.poll() is None, "server still running")
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/switchboard")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of the timed attacks")
    ap.add_argument("--event-loop", action="store_true", help="serve from the event loop")
    args = ap.parse_args()
    port = free_port()
    log_path = os.path.join(os.path.dirname(os.path.abspath(args.binary)), "hostile-server.log")
    with Processes() as procs:
        server = procs.start(
            [args.binary, "serve", "--mode", "echo", "--listen", f"127.0.0.1:{port}",
             "--max-message-size", str(MAX_MESSAGE), "--idle-timeout", "1s", "--pong-timeout", "1s",
             *(["--event-loop"] if args.event_loop else [])],
            log_path, env={"RUST_LOG": "info"})
        if not wait_port(port, server):
            sys.exit(f"the server did not listen on {port}; see {log_path}")
        run = asyncio.run(main_async(args, port, server))
    panics = [l for l in open(log_path) if "panicked" in l]
    run.check(not panics, f"no panic in the server log ({len(panics)} found)")
    print(f"{run.passed} passed, {run.failed} failed")
    sys.exit(1 if run.failed else 0)


if __name__ == "__main__":
    main()
