#!/usr/bin/env python3
"""Soak: mixed publish/subscribe load on the hub, with clients joining and leaving.

Starts `switchboard serve` (hub mode) on a free loopback port and, for --seconds, runs:
  - steady subscribers, each on a few of the channels, connected for the whole run;
  - churners that subscribe, read a while and leave, again and again;
  - publishers sending to random channels at a fixed total rate, each publish acked with its
    offset.
Checks at the end: every steady subscriber received, on each of its channels, every acked
message after its subscription exactly once and in order (offsets contiguous, no duplicate);
the server's RSS at the end is within 10% of its RSS after the warm-up; no panic in the log.
Prints message counts and "N passed, M failed"; exits non-zero on a failure.

  soak.py [--binary target/release/switchboard] [--seconds 60] [--rate 150]
"""
import argparse, asyncio, json, os, random, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from procs import Processes, free_port, rss_mb, wait_port  # noqa: E402
from wsclient import frame, open_ws, read_frame  # noqa: E402

CHANNELS = [f"room{i}" for i in range(8)]


class Client:
    def __init__(self, reader, writer):
        self.reader, self.writer, self.next_id = reader, writer, 1

    async def send(self, obj):
        self.writer.write(frame(1, json.dumps(obj).encode()))
        await self.writer.drain()

    async def recv(self):
        while True:
            op, payload = await read_frame(self.reader)
            if op == 1:
                return json.loads(payload)
            if op == 9:  # the server pings clients that stay silent: answer, as browsers do
                self.writer.write(frame(10, payload))
            elif op == 8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                raise ConnectionError(f"closed by the server with {code}")

    async def request(self, obj, until):
        """Sends obj with a fresh id; returns (reply, other messages received meanwhile)."""
        obj["id"] = self.next_id
        self.next_id += 1
        await self.send(obj)
        others = []
        while True:
            m = await self.recv()
            if m.get("id") == obj["id"] and m.get("type") in until:
                return m, others
            others.append(m)


async def connect(port, name):
    reader, writer = await open_ws(port, f"/ws?name={name}")
    c = Client(reader, writer)
    assert (await c.recv())["type"] == "connected"
    return c


class Soak:
    def __init__(self, port, seconds, rate):
        self.port, self.seconds, self.rate = port, seconds, rate
        self.acked = {ch: set() for ch in CHANNELS}
        self.publish_errors = 0
        self.churn_cycles = 0
        self.dropped = []  # steady subscribers the server disconnected
        self.stop = asyncio.Event()

    async def steady(self, i):
        c = await connect(self.port, f"steady{i}")
        mine = random.sample(CHANNELS, 3)
        start, got = {}, {ch: [] for ch in mine}
        for ch in mine:
            reply, others = await c.request({"op": "subscribe", "channel": ch}, ("subscribed",))
            start[ch] = reply["offset"]
            for m in others:
                if m.get("type") == "message":
                    got[m["channel"]].append(m["offset"])
        while not self.stop.is_set():
            try:
                m = await asyncio.wait_for(c.recv(), 0.5)
            except asyncio.TimeoutError:
                continue
            except (ConnectionError, asyncio.IncompleteReadError) as e:
                self.dropped.append(f"steady{i}: {e}")
                return start, got
            if m.get("type") == "message" and m["channel"] in got:
                got[m["channel"]].append(m["offset"])
        # Drain what is still in flight after the publishers stopped.
        try:
            while True:
                m = await asyncio.wait_for(c.recv(), 2)
                if m.get("type") == "message" and m["channel"] in got:
                    got[m["channel"]].append(m["offset"])
        except asyncio.TimeoutError:
            pass
        c.writer.close()
        return start, got

    async def churner(self, i):
        while not self.stop.is_set():
            c = await connect(self.port, f"churn{i}")
            for ch in random.sample(CHANNELS, 2):
                await c.request({"op": "subscribe", "channel": ch}, ("subscribed",))
            end = time.monotonic() + random.uniform(0.2, 1.5)
            while time.monotonic() < end:
                try:
                    await asyncio.wait_for(c.recv(), 0.2)
                except asyncio.TimeoutError:
                    pass
            c.writer.close()
            self.churn_cycles += 1

    async def publisher(self, i, per_second):
        c = await connect(self.port, f"pub{i}")
        n = 0
        while not self.stop.is_set():
            ch = random.choice(CHANNELS)
            reply, _ = await c.request(
                {"op": "publish", "channel": ch, "data": {"n": n, "pad": "x" * random.randint(0, 200)}},
                ("ack", "error"))
            if reply["type"] == "ack":
                self.acked[ch].add(reply["offset"])
            else:
                self.publish_errors += 1
            n += 1
            await asyncio.sleep(1 / per_second)
        c.writer.close()


async def run(args, port, pid):
    soak = Soak(port, args.seconds, args.rate)
    publishers = 5
    steady = [asyncio.create_task(soak.steady(i)) for i in range(args.subscribers)]
    await asyncio.sleep(1)
    tasks = [asyncio.create_task(soak.churner(i)) for i in range(args.churners)]
    tasks += [asyncio.create_task(soak.publisher(i, args.rate / publishers)) for i in range(publishers)]
    warmup = min(10.0, args.seconds / 4)
    await asyncio.sleep(warmup)
    rss_warm = rss_mb(pid)
    await asyncio.sleep(args.seconds - warmup)
    rss_end = rss_mb(pid)
    soak.stop.set()
    await asyncio.gather(*tasks)
    results = await asyncio.gather(*steady)
    return soak, results, rss_warm, rss_end


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/switchboard")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=float, default=150, help="publishes per second, all publishers")
    ap.add_argument("--subscribers", type=int, default=40)
    ap.add_argument("--churners", type=int, default=20)
    args = ap.parse_args()
    port = free_port()
    log_path = os.path.join(os.path.dirname(os.path.abspath(args.binary)), "soak-server.log")
    # The default history (100 per channel) fills during the warm-up, so growth after it
    # would be a leak, not history.
    with Processes() as procs:
        server = procs.start([args.binary, "serve", "--listen", f"127.0.0.1:{port}"], log_path)
        if not wait_port(port, server):
            sys.exit(f"the server did not listen on {port}; see {log_path}")
        soak, results, rss_warm, rss_end = asyncio.run(run(args, port, server.pid))
    passed = failed = 0

    def check(ok, what):
        nonlocal passed, failed
        print(("  ok    " if ok else "  FAIL  ") + what)
        passed, failed = passed + ok, failed + (not ok)

    published = sum(len(s) for s in soak.acked.values())
    delivered = sum(len(offs) for _, got in results for offs in got.values())
    bad = []
    for i, (start, got) in enumerate(results):
        for ch, offsets in got.items():
            expected = sorted(o for o in soak.acked[ch] if o > start[ch])
            if offsets != list(range(start[ch] + 1, start[ch] + 1 + len(offsets))):
                bad.append((i, ch, "gap, duplicate or disorder"))
            elif not set(expected) <= set(offsets):
                bad.append((i, ch, f"missing {sorted(set(expected) - set(offsets))[:5]}"))
    print(f"published {published} (acked), {soak.publish_errors} publish errors, "
          f"{delivered} deliveries to {len(results)} steady subscribers, {soak.churn_cycles} churn cycles")
    print(f"server RSS after warm-up {rss_warm:.1f} MB, at the end {rss_end:.1f} MB")
    check(published > 0 and soak.publish_errors == 0, "every publish acked")
    check(not soak.dropped, f"steady subscribers stayed connected ({soak.dropped[:3]})")
    check(not bad, f"steady subscribers got every message once, in order ({len(bad)} bad: {bad[:3]})")
    check(rss_end <= rss_warm * 1.10, "RSS at the end within 10% of after warm-up")
    panics = [l for l in open(log_path) if "panicked" in l]
    check(not panics, f"no panic in the server log ({len(panics)} found)")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
