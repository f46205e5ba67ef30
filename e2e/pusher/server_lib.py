#!/usr/bin/env python3
"""The Python `pusher` server library against `switchboard serve --pusher-app`: it triggers
events (one, to several channels, skipping a socket, in a batch) that Pusher protocol clients
on the server receive, signs a user in (authenticate_user) and sends to it (send_to_user),
reads channels and presence users, ends a user's connections (terminate_user_connections,
which this library posts to /users/ID/terminate_connections, without the /apps/ID prefix),
and is refused with a wrong secret or an unknown app; and the app's webhooks pass its
validate_webhook. The clients are raw WebSocket clients (e2e/pylib), so the check needs
nothing but the library.

With --cluster, the same checks run against three nodes sharing a redis-server of their own
(`serve --broker redis://...`): the library calls node A, client a is on node B and client b
on node C, and a user's second connection is on the node of the other; then node B is killed
with SIGKILL, and its presence member is removed after the broker's node timeout.

Usage: server_lib.py BINARY [--cluster]
"""
import asyncio, http.server, json, os, sys, tempfile, threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))

import pusher  # noqa: E402
from procs import Processes, free_port, wait_port  # noqa: E402
from wsclient import frame, open_ws, read_frame  # noqa: E402

APP_ID, KEY, SECRET = "1", "app-key", "app-secret"
STEP = 5  # seconds any wait for a frame may take
PASSED = []
LOGS = []  # the servers' logs, shown on a failure
NODES = {}  # the nodes' processes by port: node A first
NODE_TIMEOUT = 10  # seconds: the broker's, after which a dead node's members leave


def passed(what):
    PASSED.append(what)
    print(f"ok: {what}")


class Client:
    """A Pusher protocol client: subscribes, reads frames, answers nothing else."""

    @classmethod
    async def connect(cls, port):
        self = cls()
        self.reader, self.writer = await open_ws(port, f"/app/{KEY}?protocol=7&client=py")
        established = await self.next()
        assert established["event"] == "pusher:connection_established", established
        self.socket_id = json.loads(established["data"])["socket_id"]
        return self

    async def send(self, value):
        self.writer.write(frame(0x1, json.dumps(value).encode()))
        await self.writer.drain()

    async def next(self, seconds=STEP):
        """The next text frame as JSON, or {"closed": code}."""
        while True:
            opcode, payload = await asyncio.wait_for(read_frame(self.reader), seconds)
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x8:
                return {"closed": int.from_bytes(payload[:2], "big") if payload else None}

    async def subscribe(self, channel, user_id=None):
        data = {"channel": channel}
        if channel.startswith(("private-", "presence-")):
            member = {"user_id": user_id} if user_id is not None else None
            data.update(server(SECRET).authenticate(channel, self.socket_id, member))
        await self.send({"event": "pusher:subscribe", "data": data})
        answer = await self.next()
        assert answer["event"] == "pusher_internal:subscription_succeeded", answer
        return answer

    async def signin(self, user):
        """Signs in as `user` with what the library's authenticate_user signs."""
        data = server(SECRET).authenticate_user(self.socket_id, user)
        await self.send({"event": "pusher:signin", "data": data})
        answer = await self.next()
        assert answer["event"] == "pusher:signin_success", answer
        return answer

    async def sync(self):
        """The frames that come before the answer to a ping."""
        await self.send({"event": "pusher:ping", "data": {}})
        before = []
        while (got := await self.next())["event"] != "pusher:pong":
            before.append(got)
        return before


def server(secret, app_id=APP_ID):
    return pusher.Pusher(app_id=app_id, key=KEY, secret=secret, host="127.0.0.1",
                         port=PORT, ssl=False)


async def check():
    api = server(SECRET)
    a, b = await Client.connect(WS_PORTS[0]), await Client.connect(WS_PORTS[-1])
    for client in (a, b):
        await client.subscribe("news")
    await b.subscribe("private-b")

    assert api.trigger(["news", "private-b"], "update", {"n": 1}) == {}
    expected = {"event": "update", "channel": "news", "data": '{"n": 1}'}
    assert await a.next() == expected
    assert await b.next() == expected
    assert (await b.next())["channel"] == "private-b"
    passed("trigger to two channels reached both clients")

    api.trigger("news", "skip", "x", socket_id=a.socket_id)
    assert (await b.next())["event"] == "skip"
    assert await a.sync() == [], "the socket_id's connection gets nothing"
    passed("trigger with socket_id skipped that connection")

    batch = [{"channel": "news", "name": "one", "data": "1"},
             {"channel": "private-b", "name": "two", "data": "2"}]
    api.trigger_batch(batch)
    assert [(await b.next())["event"] for _ in range(2)] == ["one", "two"]
    assert (await a.next())["event"] == "one"
    passed("trigger_batch")

    # Cat signs in on a connection of her own: a signed-in connection is its user's, which
    # terminate_user_connections of ann (below) must not reach.
    cat = await Client.connect(WS_PORTS[0])
    await cat.signin({"id": "cat", "user_info": {"name": "Cat"}})
    api.send_to_user("cat", "notice", {"n": 2})
    assert await cat.next() == {"event": "notice", "channel": "#server-to-user-cat",
                                "data": '{"n": 2}'}
    assert await b.sync() == [], "another connection gets nothing of cat's"
    passed("authenticate_user signs a sign-in; send_to_user reaches that user")

    await a.subscribe("presence-room", user_id="ann")
    await b.subscribe("presence-room", user_id="bob")
    assert (await a.next())["event"] == "pusher_internal:member_added"
    channels = api.channels_info()["channels"]
    assert set(channels) == {"news", "private-b", "presence-room"}, channels
    counted = api.channels_info(prefix_filter="presence-", attributes=["user_count"])
    assert counted == {"channels": {"presence-room": {"user_count": 2}}}, counted
    room = api.channel_info("presence-room", ["user_count", "subscription_count"])
    assert room == {"occupied": True, "user_count": 2, "subscription_count": 2}, room
    assert api.channel_info("nobody-here") == {"occupied": False}
    users = sorted(u["id"] for u in api.users_info("presence-room")["users"])
    assert users == ["ann", "bob"], users
    passed("channels_info, channel_info, users_info")
    await check_webhooks()

    # Ann again, on b's node: one user with two connections, on two nodes in a cluster.
    await b.sync()  # past ann's member_added, when b's subscription came before her join
    a2 = await Client.connect(WS_PORTS[-1])
    await a2.subscribe("presence-room", user_id="ann")
    assert api.channel_info("presence-room", ["user_count"]) == {"occupied": True, "user_count": 2}
    assert await b.sync() == [], "no member_added for ann's second connection"
    api.terminate_user_connections("ann")
    assert await a.next() == {"closed": 4009}
    assert await a2.next() == {"closed": 4009}
    removed = await b.next()
    assert removed["event"] == "pusher_internal:member_removed", removed
    assert json.loads(removed["data"]) == {"user_id": "ann"}
    assert await b.sync() == [], "one member_removed, b stays"
    assert await cat.sync() == [], "another user's connection stays"
    passed("terminate_user_connections closed both of ann's connections")
    await check_webhooks(("member_added", "ann"), ("member_removed", "ann"),
                         what="ann added and removed once for her two connections")
    if len(NODES) > 1:
        await check_node_death(api, b)

    for refused_by, expected in ((server("not-the-secret"), pusher.errors.PusherBadAuth),
                                 (server(SECRET, app_id="99"), pusher.errors.PusherBadStatus)):
        try:
            refused_by.trigger("news", "x", "y")
        except expected as e:
            passed(f"refused: {type(e).__name__}: {str(e).strip()}")
        else:
            raise AssertionError("a request the server must refuse was answered")


async def check_node_death(api, watcher):
    """A member on node B, which dies: the watcher on node C is told it left, after the
    broker's node timeout, and the users listed by node A no longer have it."""
    dana = await Client.connect(WS_PORTS[0])
    await dana.subscribe("presence-room", user_id="dana")
    added = await watcher.next()
    assert added["event"] == "pusher_internal:member_added", added
    # Its webhook posted before the node dies: one queued there would die with it.
    await check_webhooks(("member_added", "dana"), what="dana added")
    NODES[WS_PORTS[0]].kill()  # SIGKILL, by PID: no goodbye to Redis
    NODES[WS_PORTS[0]].wait()
    removed = await watcher.next(NODE_TIMEOUT + STEP)
    assert removed["event"] == "pusher_internal:member_removed", removed
    assert json.loads(removed["data"]) == {"user_id": "dana"}
    users = [u["id"] for u in api.users_info("presence-room")["users"]]
    assert users == ["bob"], users
    passed("a member of a node killed with SIGKILL was removed after the node timeout")
    await check_webhooks(("member_removed", "dana"),
                         what="its member_removed webhook, sent once by a node still up")


HOOKS = []  # the events of every webhook request that validate_webhook accepted


class HookHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        key, signature = self.headers["X-Pusher-Key"], self.headers["X-Pusher-Signature"]
        webhook = server(SECRET).validate_webhook(key, signature, body)
        forged = server(SECRET).validate_webhook(key, signature, body.replace("channel", "channeI"))
        if webhook is not None and forged is None:
            HOOKS.extend(webhook["events"])
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_):
        pass


async def check_webhooks(*wanted, what="webhooks validated by validate_webhook"):
    """Waits until each (name, user_id) of `wanted` was told on presence-room, once."""
    wanted = wanted or (("channel_occupied", None), ("member_added", "ann"),
                        ("member_added", "bob"))
    for _ in range(STEP * 20):
        told = [(e["name"], e.get("user_id")) for e in HOOKS if e["channel"] == "presence-room"]
        if set(wanted) <= set(told):
            twice = [hook for hook in wanted if told.count(hook) != 1]
            assert not twice, f"told more than once: {twice} in {HOOKS}"
            return passed(what)
        await asyncio.sleep(0.05)
    raise AssertionError(f"webhooks missing: {HOOKS}")


def start(procs, tmp, name, cmd, port):
    """Starts `cmd`, which listens on `port`, and waits until it does."""
    log = os.path.join(tmp, f"{name}.log")
    LOGS.append(log)
    proc = procs.start(cmd, log)
    if not wait_port(port, proc):
        sys.exit(f"{name} did not listen:\n" + open(log).read())
    return proc


def main():
    global PORT, WS_PORTS
    binary, cluster = sys.argv[1], "--cluster" in sys.argv[2:]
    hooks = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HookHandler)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{hooks.server_address[1]}/hooks"
    serve = [binary, "serve", "--pusher-app", f"{APP_ID}:{KEY}:{SECRET}",
             "--pusher-webhook", f"{APP_ID}={hook_url}"]
    with Processes() as procs, tempfile.TemporaryDirectory() as tmp:
        if cluster:
            port = free_port()
            start(procs, tmp, "redis", ["redis-server", "--bind", "127.0.0.1", "--save", "",
                                        "--appendonly", "no", "--port", str(port)], port)
            serve += ["--broker", f"redis://127.0.0.1:{port}"]
        for name in ("node-a", "node-b", "node-c")[:3 if cluster else 1]:
            port = free_port()
            NODES[port] = start(procs, tmp, name, serve + ["--listen", f"127.0.0.1:{port}"], port)
        nodes = list(NODES)
        PORT, WS_PORTS = nodes[0], nodes[1:] or nodes
        try:
            asyncio.run(check())
        except BaseException:
            for log in LOGS:
                print(f"--- {log}:\n" + open(log).read(), file=sys.stderr)
            raise
        finally:
            hooks.shutdown()
    mode = "3 nodes on redis" if cluster else "1 node"
    print(f"server_lib.py ({mode}): {len(PASSED)} passed, 0 failed")


if __name__ == "__main__":
    main()
