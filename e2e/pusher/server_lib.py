#!/usr/bin/env python3
"""The Python `pusher` server library against `switchboard serve --pusher-app`: it triggers
events (one, to several channels, skipping a socket, in a batch) that a Pusher protocol client
on the server receives, signs a user in (authenticate_user) and sends to it (send_to_user),
reads channels and presence users, and is refused with a wrong secret or an unknown app; and
the app's webhooks pass its validate_webhook. (Its terminate_user_connections posts to /users/ID/terminate_connections,
without the /apps/ID/ prefix Pusher's API has, so it is not called here; the Node library's
is, in pusher.test.mjs.) The client is a raw WebSocket client (e2e/pylib), so the
check needs nothing but the library.

Usage: server_lib.py BINARY
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

    async def next(self):
        """The next text frame as JSON, or {"closed": code}."""
        while True:
            opcode, payload = await asyncio.wait_for(read_frame(self.reader), STEP)
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
    a, b = await Client.connect(PORT), await Client.connect(PORT)
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

    await a.signin({"id": "cat", "user_info": {"name": "Cat"}})
    api.send_to_user("cat", "notice", {"n": 2})
    assert await a.next() == {"event": "notice", "channel": "#server-to-user-cat",
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

    for refused_by, expected in ((server("not-the-secret"), pusher.errors.PusherBadAuth),
                                 (server(SECRET, app_id="99"), pusher.errors.PusherBadStatus)):
        try:
            refused_by.trigger("news", "x", "y")
        except expected as e:
            passed(f"refused: {type(e).__name__}: {str(e).strip()}")
        else:
            raise AssertionError("a request the server must refuse was answered")


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


async def check_webhooks():
    for _ in range(STEP * 20):
        names = {(e["name"], e.get("user_id")) for e in HOOKS if e["channel"] == "presence-room"}
        if {("channel_occupied", None), ("member_added", "ann"), ("member_added", "bob")} <= names:
            return passed("webhooks validated by validate_webhook")
        await asyncio.sleep(0.05)
    raise AssertionError(f"webhooks missing: {HOOKS}")


def main():
    global PORT
    binary = sys.argv[1]
    PORT = free_port()
    hooks = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HookHandler)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{hooks.server_address[1]}/hooks"
    with Processes() as procs, tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "serve.log")
        proc = procs.start([binary, "serve", "--listen", f"127.0.0.1:{PORT}",
                            "--pusher-app", f"{APP_ID}:{KEY}:{SECRET}",
                            "--pusher-webhook", f"{APP_ID}={hook_url}"], log)
        if not wait_port(PORT, proc):
            sys.exit("serve did not listen:\n" + open(log).read())
        try:
            asyncio.run(check())
        except BaseException:
            print(open(log).read(), file=sys.stderr)
            raise
        finally:
            hooks.shutdown()
    print(f"server_lib.py: {len(PASSED)} passed, 0 failed")


if __name__ == "__main__":
    main()
