#!/usr/bin/env python3
"""Several `switchboard serve --broker redis://..` nodes sharing channels through one Redis,
then through two Redis shards (`--broker redis://A,redis://B`).

Starts Debian's `redis-server`s on free loopback ports with no persistence, and the nodes on
free ports, then checks what a user of a cluster relies on. Through one Redis:

  a  fan-out      three nodes, subscribers on each; messages published on every node reach
                  every subscriber exactly once, in offset order
  b  recovery     a client leaves node A, messages are published on node B, it comes back on
                  node C with `since` and gets exactly the ones it missed
  c  node crash   a node is killed with SIGKILL while its clients publish and read; they
                  reconnect to another node and lose no message that had been acked; the dead
                  node's clients leave presence after the node timeout
  d  redis restart Redis is killed and started again empty: publishes meanwhile get an
                  `unavailable` error and every node's /healthz answers 503; nodes reconnect
                  (/healthz 200 again), close their subscribers with 1012, and the clients,
                  subscribing again with `since`, are told of the new epoch

Through two shards, with channels chosen on each shard by the nodes' hash (its keys are
checked to be on that shard): (a) on a channel of each shard at once, (b) and (c) on a
channel of the second shard, and

  e  shard lost   the second shard is killed and started again empty while a publisher
                  keeps publishing to a channel of the first: every acked message reaches
                  that channel's subscribers, none of them is closed; the lost shard's
                  channel gets `unavailable`, /healthz answers 200 "degraded: ..shard 1.."
                  then "ok", and its subscribers are told of the new epoch

Every wait is bounded; every process started here is stopped by PID at the end. Prints
"N passed, M failed" and exits non-zero on a failure.

  cluster.py [--binary target/release/switchboard]
"""
import argparse, asyncio, base64, json, os, signal, socket, struct, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from procs import Processes, free_port, wait_port  # noqa: E402

STEP = 10.0          # seconds any single wait may take
NODE_TIMEOUT = 10.0  # the broker's default: a silent node's clients leave after this


# ---- processes --------------------------------------------------------------------------

def listen_or_fail(port, proc, what):
    if not wait_port(port, proc, STEP):
        state = f"exited with {proc.returncode}" if proc.poll() is not None else f"did not listen on {port}"
        raise RuntimeError(f"{what} {state}")


def fnv1a(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def shard_of(channel, shards):
    """The shard the nodes put `channel` on: jump consistent hash of its FNV-1a hash."""
    key, b, j = fnv1a(channel.encode()), -1, 0
    while j < shards:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def redis_command(port, *args):
    """One command to the Redis on `port` (RESP); its reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=STEP) as s:
        request = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        s.sendall(request.encode())
        return s.makefile("rb").readline().decode().strip()


class Cluster:
    def __init__(self, binary, logdir, shards=1):
        self.binary, self.logdir = binary, logdir
        os.makedirs(logdir, exist_ok=True)
        self.redis_ports = [free_port() for _ in range(shards)]
        self.redis = [None] * shards
        self.nodes = {}  # name -> (port, Popen)
        self.procs = Processes()

    @property
    def shards(self):
        return len(self.redis_ports)

    def channel(self, base, shard=0):
        """`base` through one Redis; with shards, the first `base-N` on `shard`, with its
        keys checked to be on that shard once it is used (see `check_home`)."""
        if self.shards == 1:
            return base
        return next(f"{base}-{i}" for i in range(1000) if shard_of(f"{base}-{i}", self.shards) == shard)

    def check_home(self, channel):
        """The channel's keys are on its shard and on no other."""
        home = shard_of(channel, self.shards)
        for i, port in enumerate(self.redis_ports):
            exists = redis_command(port, "EXISTS", f"switchboard:meta:{channel}")
            assert exists == (":1" if i == home else ":0"), (channel, i, exists)

    def start_redis(self, i=None):
        for i in range(self.shards) if i is None else [i]:
            port = self.redis_ports[i]
            self.redis[i] = self.procs.start(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no"],
                os.path.join(self.logdir, f"redis-{i}.log"), append=True)
            listen_or_fail(port, self.redis[i], "redis-server")

    def kill_redis(self, i=None):
        for i in range(self.shards) if i is None else [i]:
            self.redis[i].send_signal(signal.SIGKILL)
            self.redis[i].wait()

    def start_node(self, name):
        port = free_port()
        broker = ",".join(f"redis://127.0.0.1:{p}" for p in self.redis_ports)
        proc = self.procs.start(
            [self.binary, "serve", "--listen", f"127.0.0.1:{port}", "--broker", broker],
            os.path.join(self.logdir, f"node-{name}.log"), env={"RUST_LOG": "info"}, append=True)
        listen_or_fail(port, proc, f"node {name}")
        self.nodes[name] = (port, proc)
        return port

    def port(self, name):
        return self.nodes[name][0]

    def kill_node(self, name):
        _, proc = self.nodes[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self):
        self.procs.stop_all()

    def check_logs(self):
        """Nothing may panic in any node."""
        for name in self.nodes:
            with open(os.path.join(self.logdir, f"node-{name}.log"), errors="replace") as f:
                text = f.read()
            assert "panicked" not in text, f"node {name} panicked:\n{text[-2000:]}"


# ---- a minimal WebSocket client (RFC 6455) -----------------------------------------------

class Closed(Exception):
    """The server closed the connection (code None: the TCP connection just ended)."""

    def __init__(self, code):
        super().__init__(f"closed with {code}")
        self.code = code


class Client:
    def __init__(self, reader, writer, hello):
        self.reader, self.writer, self.hello = reader, writer, hello
        self.backlog = []  # frames read while waiting for a reply
        self.next_id = 0

    @classmethod
    async def connect(cls, port, name):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), STEP)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /ws?name={name} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP)
        assert head.startswith(b"HTTP/1.1 101"), head
        client = cls(reader, writer, None)
        client.hello = await client.read()
        assert client.hello["type"] == "connected", client.hello
        return client

    def _frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))

    def send(self, obj):
        self.writer.write(self._frame(0x1, json.dumps(obj).encode()))

    async def _read_frame(self):
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return b0 & 0x80, b0 & 0x0F, await self.reader.readexactly(n)

    async def read(self, timeout=STEP):
        """The next JSON frame from the server; raises Closed when the connection ends."""
        async def one():
            data = b""
            while True:
                try:
                    fin, opcode, payload = await self._read_frame()
                except (asyncio.IncompleteReadError, ConnectionError):
                    raise Closed(None)
                if opcode == 0x8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    raise Closed(code)
                if opcode == 0x9:
                    self.writer.write(self._frame(0xA, payload))
                    continue
                if opcode in (0x1, 0x0):
                    data += payload
                    if fin:
                        return json.loads(data)
        return await asyncio.wait_for(one(), timeout)

    async def next(self, timeout=STEP):
        if self.backlog:
            return self.backlog.pop(0)
        return await self.read(timeout)

    async def request(self, obj):
        """Sends a request with a fresh id; returns its reply, keeping other frames."""
        self.next_id += 1
        obj = {**obj, "id": self.next_id}
        self.send(obj)
        while True:
            frame = await self.read()
            if frame.get("id") == obj["id"]:
                return frame
            self.backlog.append(frame)

    async def subscribe(self, channel, since=None):
        request = {"op": "subscribe", "channel": channel}
        if since is not None:
            request["since"] = since
        reply = await self.request(request)
        assert reply["type"] == "subscribed", reply
        return reply

    async def publish(self, channel, data):
        return await self.request({"op": "publish", "channel": channel, "data": data})

    def close(self):
        self.writer.close()


class Reader:
    """A subscriber that follows one channel and keeps what it receives, reconnecting (to
    `fallback` nodes in turn) with `since` when its connection ends."""

    def __init__(self, name, channel):
        self.name, self.channel = name, channel
        self.messages = []  # (offset, data) in arrival order
        self.epoch, self.offset = None, 0
        self.closes = []    # close codes seen
        self.replies = []   # subscribed replies after a reconnect

    async def start(self, port):
        self.client = await Client.connect(port, self.name)
        reply = await self.client.subscribe(self.channel)
        self.epoch, self.offset = reply["epoch"], reply["offset"]
        return self

    def _take(self, frame):
        if frame["type"] == "message" and frame["channel"] == self.channel:
            self.messages.append((frame["offset"], frame["data"]))
            self.offset = frame["offset"]

    async def run(self, ports):
        """Reads until cancelled; after a close, reconnects to the next of `ports`."""
        turn = 0
        while True:
            try:
                self._take(await self.client.next(timeout=3600))
            except Closed as e:
                self.closes.append(e.code)
                deadline = time.monotonic() + 3 * STEP
                while True:
                    port = ports[turn % len(ports)]
                    turn += 1
                    try:
                        self.client = await Client.connect(port, self.name)
                        since = {"epoch": self.epoch, "offset": self.offset}
                        reply = await self.client.subscribe(self.channel, since)
                        break
                    except (OSError, Closed, asyncio.TimeoutError, AssertionError):
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.2)
                self.replies.append(reply)
                if reply.get("recovered"):
                    for p in reply["publications"]:
                        self.messages.append((p["offset"], p["data"]))
                self.epoch, self.offset = reply["epoch"], reply["offset"]
                for frame in self.client.backlog:
                    self._take(frame)
                self.client.backlog.clear()


async def healthz(port, path="/healthz"):
    """GET /healthz (or `path`): the status and the body."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), STEP)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        response = await asyncio.wait_for(reader.read(), STEP)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def until_healthz(port, status, timeout=STEP, body=""):
    """Asks /healthz until it answers `status` with a body starting with `body`."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await healthz(port)
        if answer[0] == status and answer[1].startswith(body):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"/healthz of :{port} answers {answer}, not {status}")
        await asyncio.sleep(0.05)


async def until(what, condition, timeout=STEP):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def stop_all(tasks):
    for t in tasks:
        t.cancel()


# ---- the checks ---------------------------------------------------------------------------

async def fan_out(cluster, channel="a-room"):
    """(a) every message published on one node arrives exactly once at every subscriber, in
    offset order."""
    names = ["A", "B", "C"]
    readers = [await Reader(f"r{n}{i}", channel).start(cluster.port(n))
               for n in names for i in range(2)]
    tasks = [asyncio.create_task(r.run([cluster.port(n) for n in names])) for r in readers]
    per_node = 100
    publishers = [await Client.connect(cluster.port(n), f"p{n}") for n in names]

    async def publish_all(client, node):
        acked = []
        for i in range(per_node):
            ack = await client.publish(channel, {"node": node, "i": i})
            assert ack["type"] == "ack", ack
            acked.append(ack["offset"])
        return acked

    acks = await asyncio.gather(*(publish_all(c, n) for c, n in zip(publishers, names)))
    total = per_node * len(names)
    assert sorted(sum(acks, [])) == list(range(1, total + 1)), "each offset given once"
    for r in readers:
        await until(f"{r.name} to get {total} messages", lambda r=r: len(r.messages) >= total)
    await asyncio.sleep(0.3)  # time for a duplicate to show up
    stop_all(tasks)
    for r in readers:
        offsets = [o for o, _ in r.messages]
        assert offsets == list(range(1, total + 1)), f"{r.name}: {offsets[:20]}..."
        sent = {(n, i) for n in names for i in range(per_node)}
        got = [(d["node"], d["i"]) for _, d in r.messages]
        assert len(got) == len(set(got)) and set(got) == sent, f"{r.name} data"
        assert not r.closes, f"{r.name} was closed: {r.closes}"
        # From each publisher, its messages arrive in the order it sent them.
        for n in names:
            mine = [d["i"] for _, d in r.messages if d["node"] == n]
            assert mine == sorted(mine), f"{r.name}: {n}'s messages out of order"
    for c in publishers:
        c.close()
    if cluster.shards > 1:
        cluster.check_home(channel)


async def fan_out_on_each_shard(cluster):
    """(a) on a channel of each shard at once."""
    await asyncio.gather(*(fan_out(cluster, cluster.channel("a-room", shard))
                           for shard in range(cluster.shards)))


async def recovery_on_another_node(cluster):
    """(b) leave node A, messages published on node B, come back on node C with `since`."""
    room = cluster.channel("b-room", cluster.shards - 1)
    reader = await Client.connect(cluster.port("A"), "wanderer")
    reply = await reader.subscribe(room)
    writer = await Client.connect(cluster.port("B"), "writer")
    for i in range(3):
        assert (await writer.publish(room, {"i": i}))["type"] == "ack"
    seen = []
    while len(seen) < 3:
        frame = await reader.next()
        if frame["type"] == "message":
            seen.append(frame["offset"])
    position = {"epoch": reply["epoch"], "offset": seen[-1]}
    reader.close()

    missed = []
    for i in range(3, 23):
        ack = await writer.publish(room, {"i": i})
        missed.append(ack["offset"])
    back = await Client.connect(cluster.port("C"), "wanderer")
    reply = await back.subscribe(room, position)
    assert reply["recovered"] is True, reply
    assert [p["offset"] for p in reply["publications"]] == missed, reply
    assert [p["data"]["i"] for p in reply["publications"]] == list(range(3, 23))
    # Live delivery resumes right after, without a duplicate.
    ack = await writer.publish(room, {"i": 23})
    while True:
        frame = await back.next()
        if frame["type"] == "message":
            assert frame["offset"] == ack["offset"] == missed[-1] + 1, frame
            break
    back.close()
    writer.close()


async def node_crash(cluster):
    """(c) SIGKILL a node: its clients reconnect elsewhere and lose no acked message; the dead
    node's clients leave presence after the node timeout."""
    room = cluster.channel("c-room", cluster.shards - 1)
    d = cluster.start_node("D")
    others = [cluster.port("A"), cluster.port("B")]
    reader = await Reader("crash-reader", room).start(d)
    task = asyncio.create_task(reader.run(others))
    observer = await Client.connect(cluster.port("C"), "observer")
    await observer.subscribe(room)
    acked = []
    stop = asyncio.Event()

    async def publisher(port, name, reconnect_to):
        client = await Client.connect(port, name)
        i = 0
        while not stop.is_set():
            try:
                ack = await client.publish(room, {"from": name, "i": i})
                assert ack["type"] == "ack", ack
                acked.append(ack["offset"])
            except (Closed, ConnectionError, asyncio.TimeoutError):
                # Not acked: it may or may not have been published. Go on elsewhere.
                client = await Client.connect(reconnect_to, name)
            i += 1
            await asyncio.sleep(0.005)
        client.close()

    publishers = [asyncio.create_task(publisher(d, "on-d", others[0])),
                  asyncio.create_task(publisher(cluster.port("A"), "on-a", others[1]))]
    await until("some traffic", lambda: len(acked) >= 60)
    present = await observer.request({"op": "presence", "channel": room})
    assert "crash-reader" in {c["user"] for c in present["clients"]}, present
    cluster.kill_node("D")
    killed_at = time.monotonic()
    await until("the reader to come back", lambda: reader.replies, timeout=2 * STEP)
    count = len(acked)
    await until("more traffic", lambda: len(acked) >= count + 60)
    stop.set()
    await asyncio.gather(*publishers)
    top = max(acked)
    await until("every acked message", lambda: reader.offset >= top)
    stop_all([task])
    offsets = [o for o, _ in reader.messages]
    assert reader.closes == [None], reader.closes
    assert reader.replies[0]["recovered"] is True, reader.replies[0]
    assert offsets == list(range(1, offsets[-1] + 1)), "no gap, no duplicate"
    assert set(acked) <= set(offsets), "every acked message arrived"
    # The killed node's clients leave presence once its heartbeat is overdue.
    async def gone():
        while True:
            present = await observer.request({"op": "presence", "channel": room})
            users = [c["user"] for c in present["clients"]]
            if users.count("crash-reader") == 1:  # only the reconnected one, on a live node
                return time.monotonic() - killed_at
            await asyncio.sleep(0.25)
    after = await asyncio.wait_for(gone(), NODE_TIMEOUT + 2 * STEP)
    observer.close()
    return f"{len(acked)} acked, all delivered; dead node's client left presence after {after:.1f}s"


async def redis_restart(cluster):
    """(d) Redis killed and started again without its data."""
    names = ["A", "B", "C"]
    readers = [await Reader(f"d{n}", "d-room").start(cluster.port(n)) for n in names]
    tasks = [asyncio.create_task(r.run([cluster.port(n)])) for r, n in zip(readers, names)]
    writer = await Client.connect(cluster.port("A"), "d-writer")
    for i in range(5):
        assert (await writer.publish("d-room", {"i": i}))["type"] == "ack"
    for r in readers:
        await until(f"{r.name} to read 5", lambda r=r: len(r.messages) == 5)
    old_epoch = readers[0].epoch
    for n in names:
        assert await healthz(cluster.port(n)) == (200, "ok\n"), n

    cluster.kill_redis()
    reply = await writer.publish("d-room", {"i": "during the outage"})
    assert reply["type"] == "error" and reply["code"] == "unavailable", reply
    for n in names:
        status, body = await until_healthz(cluster.port(n), 503)
        assert body.startswith("unavailable: ") and "redis" in body, (n, body)
    await asyncio.sleep(0.5)
    cluster.start_redis()
    for n in names:
        await until_healthz(cluster.port(n), 200, 2 * STEP)

    for r in readers:
        await until(f"{r.name} to be told of the new epoch", lambda r=r: r.replies, 3 * STEP)
    for r in readers:
        assert r.closes == [1012], f"{r.name}: {r.closes}"
        reply = r.replies[0]
        assert reply["recovered"] is False and reply["code"] == "epoch_changed", reply
        assert reply["epoch"] != old_epoch, reply
    # Publishing works again (the writer's node may need a moment to reconnect), and every
    # node delivers in the new epoch.
    deadline = time.monotonic() + 2 * STEP
    while True:
        try:
            ack = await writer.publish("d-room", {"i": "after"})
        except Closed:
            writer = await Client.connect(cluster.port("A"), "d-writer")
            continue
        if ack["type"] == "ack":
            break
        assert time.monotonic() < deadline, ack
        await asyncio.sleep(0.2)
    for r in readers:
        await until(f"{r.name} to read in the new epoch",
                    lambda r=r: r.messages[-1][1] == {"i": "after"})
        assert r.messages[-1][0] == ack["offset"], r.messages[-1]
    stop_all(tasks)
    writer.close()


async def shard_lost(cluster):
    """(e) the last shard killed and started again empty while the first keeps serving."""
    names = ["A", "B", "C"]
    lost_shard = cluster.shards - 1
    kept, lost = cluster.channel("e-kept", 0), cluster.channel("e-lost", lost_shard)
    kept_readers = [await Reader(f"ek{n}", kept).start(cluster.port(n)) for n in names]
    lost_readers = [await Reader(f"el{n}", lost).start(cluster.port(n)) for n in names]
    tasks = [asyncio.create_task(r.run([cluster.port(n)]))
             for r, n in zip(kept_readers + lost_readers, names + names)]
    writer = await Client.connect(cluster.port("A"), "e-writer")
    for channel in (kept, lost):
        for i in range(5):
            assert (await writer.publish(channel, {"i": i}))["type"] == "ack"
        cluster.check_home(channel)
    for r in kept_readers + lost_readers:
        await until(f"{r.name} to read 5", lambda r=r: len(r.messages) == 5)
    old_epoch = lost_readers[0].epoch

    acked = []
    stop = asyncio.Event()

    async def keep_publishing():
        client = await Client.connect(cluster.port("B"), "e-kept-writer")
        i = 5
        while not stop.is_set():
            ack = await client.publish(kept, {"i": i})
            assert ack["type"] == "ack", ack
            acked.append(ack["offset"])
            i += 1
            await asyncio.sleep(0.005)
        client.close()

    publisher = asyncio.create_task(keep_publishing())
    await until("some traffic on the kept shard", lambda: len(acked) >= 20)
    cluster.kill_redis(lost_shard)
    reply = await writer.publish(lost, {"i": "during the outage"})
    assert reply["type"] == "error" and reply["code"] == "unavailable", reply
    for n in names:
        status, body = await until_healthz(cluster.port(n), 200, body="degraded: ")
        assert f"shard {lost_shard} (" in body, (n, body)
    _, metrics = await healthz(cluster.port("A"), "/metrics")
    for shard in range(cluster.shards):
        up = "0" if shard == lost_shard else "1"
        assert f'switchboard_redis_up{{shard="{shard}"}} {up}\n' in metrics, metrics[-600:]
    count = len(acked)
    await until("traffic during the outage", lambda: len(acked) >= count + 50)
    cluster.start_redis(lost_shard)
    for n in names:
        await until_healthz(cluster.port(n), 200, 2 * STEP, body="ok")
    for r in lost_readers:
        await until(f"{r.name} to be told of the new epoch", lambda r=r: r.replies, 3 * STEP)
        assert r.closes == [1012], f"{r.name}: {r.closes}"
        reply = r.replies[0]
        assert reply["recovered"] is False and reply["code"] == "epoch_changed", reply
        assert reply["epoch"] != old_epoch, reply
    stop.set()
    await publisher
    top = max(acked)
    for r in kept_readers:
        await until(f"{r.name} to read every acked message", lambda r=r: r.offset >= top)
    # The lost shard's channel works again, from offset 1 of its new epoch.
    deadline = time.monotonic() + 2 * STEP
    while True:
        ack = await writer.publish(lost, {"i": "after"})
        if ack["type"] == "ack":
            break
        assert time.monotonic() < deadline, ack
        await asyncio.sleep(0.2)
    assert ack["offset"] == 1, ack
    for r in lost_readers:
        await until(f"{r.name} to read in the new epoch",
                    lambda r=r: r.messages[-1] == (1, {"i": "after"}))
    stop_all(tasks)
    for r in kept_readers:
        offsets = [o for o, _ in r.messages]
        assert offsets == list(range(1, top + 1)), f"{r.name}: no gap, no duplicate"
        assert not r.closes, f"{r.name} was closed: {r.closes}"
    writer.close()
    return f"{len(acked)} acked on shard 0, {len(acked) - count} of them during the outage, all delivered"


async def run_checks(cluster, checks):
    """Runs each check, printing its outcome; returns (passed, failed)."""
    passed = failed = 0
    try:
        cluster.start_redis()
        for name in "ABC":
            cluster.start_node(name)
        for title, check in checks:
            started = time.monotonic()
            try:
                note = await asyncio.wait_for(check(cluster), 120)
                passed += 1
                extra = f" ({note})" if note else ""
                print(f"ok    {title}  {time.monotonic() - started:.1f}s{extra}", flush=True)
            except Exception as e:  # report every check, then fail
                failed += 1
                print(f"FAIL  {title}: {type(e).__name__}: {e}", flush=True)
        cluster.check_logs()
    finally:
        cluster.stop()
    return passed, failed


async def main(binary, logdir):
    one = [("a. fan-out across three nodes", fan_out),
           ("b. recovery on another node", recovery_on_another_node),
           ("c. a node killed with SIGKILL", node_crash),
           ("d. redis restarted without its data", redis_restart)]
    two = [("a. fan-out across three nodes, a channel on each shard", fan_out_on_each_shard),
           ("b. recovery on another node", recovery_on_another_node),
           ("c. a node killed with SIGKILL", node_crash),
           ("e. one shard lost and restarted empty", shard_lost)]
    passed = failed = 0
    for title, shards, checks in [("one redis", 1, one), ("two redis shards", 2, two)]:
        print(f"-- {title}", flush=True)
        cluster = Cluster(binary, os.path.join(logdir, f"shards-{shards}"), shards)
        p, f = await run_checks(cluster, checks)
        passed, failed = passed + p, failed + f
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default="target/release/switchboard")
    parser.add_argument("--logs", default=None, help="where node and redis logs go")
    args = parser.parse_args()
    import tempfile
    logdir = args.logs or tempfile.mkdtemp(prefix="switchboard-cluster-")
    os.makedirs(logdir, exist_ok=True)
    print(f"logs in {logdir}")
    sys.exit(asyncio.run(main(args.binary, logdir)))
