#!/usr/bin/env python3
"""Abusive clients against `switchboard serve` in hub mode, and what a well-behaved client sees
meanwhile. Each attack runs SECONDS while a well-behaved client publishes one message at a time
and times each round trip to its ack; its p50/p99 are compared with a quiet baseline.

  flood        one connection sends publishes as fast as it can write them, and connects
               again each time it is closed
  connections  one address (forwarded by a trusted proxy) opens connections as fast as it can
  subscribes   one connection asks for 150 channels at once (within the message rate's burst)

With the limits on (the default) each attack must be stopped (closed with 1008; answered 429;
refused with too_many_subscriptions) and the well-behaved client served throughout without an
error. --no-limits runs the same attacks against a server without them, to show what they buy
(nothing is asserted then).

  e2e/storm/abuse.py [--seconds 5] [--no-limits] [--event-loop] [--json FILE]

--event-loop serves the hub from the event loop (serve --event-loop).
"""
import argparse, asyncio, json, multiprocessing, os, statistics, sys, tempfile, threading, time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
from procs import Processes, free_port, wait_port  # noqa: E402
from wsclient import frame, read_frame  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LIMITS = ["--message-rate", "100", "--max-connections-per-ip", "50",
          "--trusted-proxy", "127.0.0.1", "--max-subscriptions", "100"]
TEXT = 0x1


async def connect(port, forwarded, name):
    """A hub connection past its `connected` frame, or the HTTP status that refused it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"GET /ws?name={name} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  f"Sec-WebSocket-Version: 13\r\nX-Forwarded-For: {forwarded}\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split()[1])
    if status != 101:
        writer.close()
        return status, None
    _, payload = await read_frame(reader)
    assert json.loads(payload)["type"] == "connected", payload
    return 101, (reader, writer)


def send_json(writer, value):
    writer.write(frame(TEXT, json.dumps(value).encode()))


class Good:
    """The well-behaved client: one publish at a time, 50 a second (half the rate limit), each
    round trip to its ack timed. It runs in a process of its own, so that the attacks' work
    in this one does not delay it."""

    def __init__(self):
        self.times, self.errors, self.running = [], [], True
        self.lock = threading.Lock()

    async def run(self, port):
        status, conn = await connect(port, "198.51.100.7", "good")
        assert status == 101, status
        reader, writer = conn
        n = 0
        while self.running:
            n += 1
            start = time.perf_counter()
            send_json(writer, {"op": "publish", "id": n, "channel": "good", "data": n})
            await writer.drain()
            while True:
                opcode, payload = await asyncio.wait_for(read_frame(reader), 10)
                reply = json.loads(payload) if opcode == TEXT else {}
                if reply.get("id") == n:
                    break
            with self.lock:
                if reply["type"] != "ack":
                    self.errors.append(reply)
                self.times.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.02)
        writer.close()

    def take(self):
        with self.lock:
            times, self.times = self.times, []
        times.sort()
        if not times:
            return {"round_trips": 0}
        return {"round_trips": len(times), "p50_ms": round(statistics.median(times), 2),
                "p99_ms": round(times[int(len(times) * 0.99) - 1], 2)}


async def flood(port, seconds):
    """Floods publishes on one connection, and connects again each time it is closed."""
    payload = frame(TEXT, json.dumps({"op": "publish", "channel": "flood", "data": 0}).encode())
    # Written: into the socket, most of it never read (a connection is closed after its burst).
    totals = {"written": 0, "acked": 0, "rate_limited": 0, "closes": {}, "connections": 0}
    deadline = time.monotonic() + seconds

    async def one():
        status, conn = await connect(port, "203.0.113.66", "flood")
        if conn is None:
            totals["closes"][str(status)] = totals["closes"].get(str(status), 0) + 1
            await asyncio.sleep(0.05)
            return
        reader, writer = conn
        totals["connections"] += 1
        closed = None

        async def read():
            nonlocal closed
            while True:
                opcode, body = await read_frame(reader)
                if opcode == 0x8:
                    closed = int.from_bytes(body[:2], "big") if len(body) >= 2 else 1005
                    return
                if opcode == TEXT and b'"rate_limited"' in body:
                    totals["rate_limited"] += 1
                elif opcode == TEXT and b'"ack"' in body:
                    totals["acked"] += 1

        reading = asyncio.ensure_future(read())
        try:
            while time.monotonic() < deadline and closed is None and not reading.done():
                writer.write(payload * 100)
                totals["written"] += 100
                await writer.drain()
                await asyncio.sleep(0)
        except (ConnectionError, OSError):
            pass
        try:
            await asyncio.wait_for(reading, 5)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            reading.cancel()
        key = str(closed) if closed else "dropped"
        totals["closes"][key] = totals["closes"].get(key, 0) + 1
        writer.close()

    while time.monotonic() < deadline:
        await one()
    totals["answered_per_s"] = round((totals["acked"] + totals["rate_limited"]) / seconds)
    return totals


async def connections(port, seconds):
    opened, refused, other, conns = 0, 0, 0, []
    deadline = time.monotonic() + seconds

    async def one(i):
        nonlocal opened, refused, other
        try:
            status, conn = await connect(port, "203.0.113.66", f"c{i}")
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            other += 1
            return
        if status == 101:
            opened += 1
            conns.append(conn)
        elif status == 429:
            refused += 1
        else:
            other += 1

    i = 0
    while time.monotonic() < deadline and i < 20000:
        await asyncio.gather(*(one(i + k) for k in range(50)))
        i += 50
    for _, writer in conns:
        writer.close()
    return {"attempts": i, "rate_per_s": round(i / seconds), "opened": opened, "refused_429": refused,
            "failed_otherwise": other}


async def subscribes(port, seconds):
    status, (reader, writer) = await connect(port, "203.0.113.67", "subs")
    asked = 150
    for c in range(asked):
        send_json(writer, {"op": "subscribe", "id": c, "channel": f"s{c}"})
    await writer.drain()
    subscribed, refused, other = 0, 0, 0
    while subscribed + refused + other < asked:
        opcode, body = await asyncio.wait_for(read_frame(reader), 10)
        reply = json.loads(body) if opcode == TEXT else {}
        if reply.get("type") == "subscribed":
            subscribed += 1
        elif reply.get("code") == "too_many_subscriptions":
            refused += 1
        elif opcode == 0x8:
            break
        elif "id" in reply:
            other += 1
    await asyncio.sleep(seconds)
    writer.close()
    return {"asked": asked, "subscribed": subscribed, "refused": refused, "other": other}


def good_process(port, pipe):
    """The well-behaved client's process: answers `take` with its figures until `stop`."""
    good = Good()
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=lambda: loop.run_until_complete(good.run(port)),
                              daemon=True)
    runner.start()
    while True:
        command = pipe.recv()
        if command == "stop":
            good.running = False
            runner.join(15)
            pipe.send(good.errors)
            return
        pipe.send(good.take())


async def run(port, seconds):
    pipe, child = multiprocessing.Pipe()
    good = multiprocessing.Process(target=good_process, args=(port, child), daemon=True)
    good.start()

    def take():
        pipe.send("take")
        return pipe.recv()

    try:
        await asyncio.sleep(seconds)
        results = {"baseline": take()}
        for name, attack in (("flood", flood), ("connections", connections),
                             ("subscribes", subscribes)):
            outcome = await attack(port, seconds)
            results[name] = {"attack": outcome, "good_client": take()}
            await asyncio.sleep(1)
            take()
        pipe.send("stop")
        errors = pipe.recv() if pipe.poll(20) else ["no answer from the well-behaved client"]
        results["good_client_errors"] = len(errors)
        results["good_client_first_errors"] = errors[:3]
    finally:
        good.join(5)
        if good.is_alive():
            good.kill()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--no-limits", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--event-loop", action="store_true")
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/switchboard"))
    args = parser.parse_args()
    logdir = tempfile.mkdtemp(prefix="switchboard-abuse-")
    port = free_port()
    flags = ([] if args.no_limits else LIMITS) + (["--event-loop"] if args.event_loop else [])
    with Processes() as procs:
        server = procs.start([args.binary, "serve", "--listen", f"127.0.0.1:{port}", *flags],
                             os.path.join(logdir, "serve.log"))
        if not wait_port(port, server):
            sys.exit(f"FAIL: serve did not start (log: {logdir})")
        results = asyncio.run(run(port, args.seconds))
    results["limits"] = not args.no_limits
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    with open(os.path.join(logdir, "serve.log"), "rb") as f:
        log_lines = sum(1 for _ in f)
    print(f"server log: {log_lines} lines")
    if args.no_limits:
        return
    problems = []
    if not results["flood"]["attack"]["closes"].get("1008"):
        problems.append(f"the flood was not closed with 1008: {results['flood']['attack']}")
    if results["connections"]["attack"]["opened"] > 50 or \
            results["connections"]["attack"]["refused_429"] == 0:
        problems.append(f"the address limit did not hold: {results['connections']['attack']}")
    if results["subscribes"]["attack"]["subscribed"] != 100:
        problems.append(f"the subscription limit did not hold: {results['subscribes']['attack']}")
    if results["good_client_errors"]:
        problems.append(f"the well-behaved client got errors: {results['good_client_first_errors']}")
    for name in ("baseline", "flood", "connections", "subscribes"):
        good = results[name] if name == "baseline" else results[name]["good_client"]
        if good["round_trips"] == 0:
            problems.append(f"the well-behaved client got no answer during {name}")
    # A flood must not fill the disk: refusals are logged at most once a second.
    if log_lines > 100:
        problems.append(f"the server wrote {log_lines} log lines")
    if problems:
        sys.exit("FAIL: " + "; ".join(problems) + f" (log: {logdir})")
    print("abuse: every attack stopped at its limit; the well-behaved client was served")


if __name__ == "__main__":
    main()
