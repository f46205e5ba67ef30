#!/usr/bin/env python3
"""A backend integrated with `switchboard serve`: proxies, webhooks and the server API.

Starts the backend app of app.py (session cookies, proxies, a webhook receiver) and checks,
with WebSocket clients and the server API (driven with curl and with urllib):

  one node, in-process broker
    connect proxy   a cookie's user, its info and personal channel; an unknown session refused
    subscribe/publish proxies  allow, refuse, rewrite data; a proxy too slow refuses
    personal channel  refused to another user
    server API      every endpoint, with curl and with urllib; every error status
    webhooks        occupied, vacated, member added and removed, signed; the first delivery
                    answered 500 is sent again
  three nodes on one Redis (Debian's redis-server, no persistence)
    a publish on node A reaches subscribers on B and C; an idempotent publish repeated on
    another node is delivered once; history and presence show the whole cluster
    cluster-wide actions (info, channels, disconnect, subscribe, unsubscribe over all nodes)
    the admin dashboard's data on node A: all three nodes, the connections of every node
    Redis gone: the API answers 503 unavailable

Prints one line per check and "N passed, M failed"; exits non-zero on a failure. Every wait
is bounded; every process started here is stopped by PID on every exit path.

  backend.py [--binary target/release/switchboard] [--logs DIR] [--show-wire]

--show-wire prints one connect proxy call and one webhook delivery as the app received them.
"""
import argparse, asyncio, base64, json, os, signal, struct, subprocess, sys, tempfile, time
import urllib.error, urllib.request, uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
from procs import Processes, free_port, wait_port  # noqa: E402

STEP = 10.0              # seconds any single wait may take
ABSENT = 1.5             # seconds to wait for something that must not happen (a duplicate)
PROXY_TIMEOUT = "500ms"  # serve's --proxy-timeout, well under the app's slow answer
SLOW = 3.0               # seconds the app's slow endpoint takes
KEYS = ("key-one", "key-two")
WEBHOOK_SECRET = "hook-secret"
ADMIN_PASSWORD = "admin-secret"
SERVER = {"user": "", "conn": "", "authenticated": True}  # `from` of a server publish


# ---- the server API, over urllib and over curl ----------------------------------------------

class Answer:
    def __init__(self, status, headers, text):
        self.status, self.text = status, text
        self.headers = {name.lower(): value for name, value in headers.items()}
        try:
            self.json = json.loads(text)
        except ValueError:
            self.json = None

    def error_code(self):
        return (self.json or {}).get("error", {}).get("code")

    def __repr__(self):
        return f"{self.status} {self.text[:300]}"


def urllib_call(port, path, body=None, key=KEYS[0], method="POST",
                content_type="application/json", raw=None):
    data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    if key:
        headers["Authorization"] = "Bearer " + key
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=None if method == "GET" else data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=STEP) as response:
            return Answer(response.status, dict(response.headers), response.read().decode())
    except urllib.error.HTTPError as e:
        return Answer(e.code, dict(e.headers), e.read().decode())


def curl_call(port, path, body=None, key=KEYS[0], method="POST",
              content_type="application/json", raw=None):
    data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
    cmd = ["curl", "-sS", "--max-time", str(int(STEP)), "-X", method, "-D", "-",
           "-w", "\n%{http_code}", f"http://127.0.0.1:{port}{path}"]
    if content_type:
        cmd += ["-H", "Content-Type: " + content_type]
    if key:
        cmd += ["-H", "Authorization: Bearer " + key]
    if method != "GET":
        cmd += ["--data-binary", "@-"]
    out = subprocess.run(cmd, input=data, capture_output=True, timeout=STEP + 5, check=True)
    text, _, status = out.stdout.decode().rpartition("\n")
    head, _, body_text = text.partition("\r\n\r\n")
    headers = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return Answer(int(status), headers, body_text)


def admin_call(port, path, body=None, cookie=None):
    """The admin dashboard's `path` under /admin/api/: GET without a body, else a POST of it."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if cookie:
        headers["Cookie"] = cookie
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}/admin/api/{path}", data=data,
                                     method="GET" if body is None else "POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=STEP) as response:
            return Answer(response.status, dict(response.headers), response.read().decode())
    except urllib.error.HTTPError as e:
        return Answer(e.code, dict(e.headers), e.read().decode())


async def api(port, endpoint, body=None, client=urllib_call, **kw):
    return await asyncio.to_thread(client, port, "/api/" + endpoint, body, **kw)


async def api_ok(port, endpoint, body=None, client=urllib_call, **kw):
    answer = await api(port, endpoint, body, client, **kw)
    assert answer.status == 200 and answer.json is not None, f"{endpoint}: {answer}"
    return answer.json


# ---- a WebSocket client that keeps every frame it receives --------------------------------

class Client:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.frames = []    # JSON frames in arrival order
        self.close = None   # (code, reason) once the connection ended
        self.next_id = 0
        self.pump = asyncio.create_task(self._read_all())

    @classmethod
    async def open(cls, port, cookie=None):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), STEP)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = f"Cookie: {cookie}\r\n" if cookie else ""
        writer.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                      f"{extra}\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    @classmethod
    async def user(cls, port, session):
        """A connection with `session=SESSION`, once the hub said who it is."""
        client = await cls.open(port, f"session={session}")
        hello = await client.wait(lambda f: True)
        assert hello["type"] == "connected", hello
        return client

    def _frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        else:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))

    async def _read_all(self):
        data = b""
        try:
            while True:
                b0, b1 = await self.reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", await self.reader.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
                payload = await self.reader.readexactly(n)
                opcode = b0 & 0x0F
                if opcode == 0x8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    self.close = (code, payload[2:].decode(errors="replace"))
                    self.writer.write(self._frame(0x8, payload[:2]))
                    return
                if opcode == 0x9:
                    self.writer.write(self._frame(0xA, payload))
                elif opcode in (0x0, 0x1):
                    data += payload
                    if b0 & 0x80:
                        self.frames.append(json.loads(data))
                        data = b""
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close = self.close or (None, "")

    def send(self, obj):
        self.writer.write(self._frame(0x1, json.dumps(obj).encode()))

    def matching(self, predicate):
        return [f for f in self.frames if predicate(f)]

    async def wait(self, predicate, timeout=STEP, what="a frame"):
        """The first frame received (now or within `timeout`) for which `predicate` holds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.matching(predicate)
            if found:
                return found[0]
            if self.close is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {what}; closed {self.close}; got {self.frames[-5:]}")
            await asyncio.sleep(0.02)

    async def closed(self, timeout=STEP):
        """(code, reason) of the Close the server sends within `timeout`."""
        await until("the connection to close", lambda: self.close is not None, timeout)
        return self.close

    async def request(self, obj):
        self.next_id += 1
        request_id = self.next_id
        self.send({**obj, "id": request_id})
        return await self.wait(lambda f: f.get("id") == request_id, what=f"reply to {obj}")

    async def subscribe(self, channel):
        reply = await self.request({"op": "subscribe", "channel": channel})
        assert reply["type"] == "subscribed", reply
        return reply

    def messages(self, channel):
        return [f for f in self.frames if f["type"] == "message" and f["channel"] == channel]

    def end(self):
        self.pump.cancel()
        self.writer.close()


async def until(what, condition, timeout=STEP):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def message_with(channel, data):
    return lambda f: f["type"] == "message" and f["channel"] == channel and f["data"] == data


# ---- processes ------------------------------------------------------------------------------

class Setup:
    """The app, the nodes and Redis, each stopped by PID when the test ends."""

    def __init__(self, binary, logdir, procs):
        self.binary, self.logdir, self.procs = binary, logdir, procs
        self.app_port = free_port()
        self.redis_port = free_port()
        self.redis = None
        self.logs = []
        # A node reads these from the environment too: only the flags given here count.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}

    def _start(self, cmd, name, env=None):
        log = os.path.join(self.logdir, f"{name}.log")
        self.logs.append(log)
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    env={**self.env, **(env or {})})
        self.procs.procs.append(proc)
        return proc

    def _listen(self, port, proc, what):
        if not wait_port(port, proc, STEP):
            state = f"exited with {proc.returncode}" if proc.poll() is not None else "is silent"
            raise RuntimeError(f"{what} {state} (logs in {self.logdir})")

    def start_app(self):
        proc = self._start([sys.executable, os.path.join(HERE, "app.py"),
                            "--port", str(self.app_port), "--webhook-secret", WEBHOOK_SECRET,
                            "--slow", str(SLOW)], "app")
        self._listen(self.app_port, proc, "the backend app")

    def backend_flags(self):
        url = f"http://127.0.0.1:{self.app_port}"
        return ["--rule", "user:*=personal",
                "--connect-proxy", f"{url}/sb/connect",
                "--subscribe-proxy", f"private:*={url}/sb/subscribe",
                "--subscribe-proxy", f"slow:*={url}/sb/slow",
                "--publish-proxy", f"chat:*={url}/sb/publish",
                "--proxy-timeout", PROXY_TIMEOUT,
                "--webhook-url", f"{url}/hooks", "--webhook-secret", WEBHOOK_SECRET]

    def start_node(self, name, flags):
        port = free_port()
        proc = self._start([self.binary, "serve", "--mode", "hub",
                            "--listen", f"127.0.0.1:{port}", *flags],
                           f"node-{name}", env={"RUST_LOG": "info"})
        self._listen(port, proc, f"node {name}")
        return port

    def start_redis(self):
        self.redis = self._start(["redis-server", "--port", str(self.redis_port),
                                  "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                                 "redis")
        self._listen(self.redis_port, self.redis, "redis-server")

    def kill_redis(self):
        self.redis.send_signal(signal.SIGKILL)
        self.redis.wait()

    def app_log(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.app_port}/_log",
                                    timeout=STEP) as response:
            return json.load(response)

    def panics(self):
        found = []
        for log in self.logs:
            with open(log, errors="replace") as f:
                if "panicked" in f.read():
                    found.append(os.path.basename(log))
        return found


# ---- the checks -----------------------------------------------------------------------------

class Report:
    def __init__(self):
        self.passed, self.failed = 0, []

    async def check(self, title, coro, timeout=3 * STEP):
        started = time.monotonic()
        try:
            note = await asyncio.wait_for(coro, timeout)
            self.passed += 1
            extra = f" ({note})" if note else ""
            print(f"ok    {title}  {time.monotonic() - started:.1f}s{extra}", flush=True)
            return True
        except Exception as e:  # every check is reported, then the run fails
            self.failed.append(title)
            print(f"FAIL  {title}: {type(e).__name__}: {e}", flush=True)
            return False


async def one_node(setup, report):
    port = setup.start_node("one", [*setup.backend_flags(),
                                    "--api-key", KEYS[0], "--api-key", KEYS[1]])
    keyless = setup.start_node("keyless", [])
    open_clients = []

    async def user(session):
        client = await Client.user(port, session)
        open_clients.append(client)
        return client

    state = {}

    async def connect_with_cookie():
        alice = await Client.open(port, "theme=dark; session=alice-secret")
        open_clients.append(alice)
        hello = await alice.wait(lambda f: True)
        assert hello["type"] == "connected", hello
        client = hello["client"]
        assert client["user"] == "alice" and client["authenticated"] is True, hello
        assert client.get("info") == {"name": "Alice"}, hello
        auto = await alice.wait(lambda f: f["type"] == "subscribed", what="auto subscription")
        assert auto["channel"] == "user:alice" and "id" not in auto, auto
        calls = [c for c in setup.app_log()["calls"] if c["path"] == "/sb/connect"]
        sent = json.loads(calls[-1]["body"])
        assert sent["headers"]["cookie"] == "theme=dark; session=alice-secret", sent
        assert sent["transport"] == "websocket" and "remote_addr" in sent, sent
        state["alice"] = alice
        return f"conn {client['conn']}"

    async def personal_channel_gets_api_publish():
        alice = state["alice"]
        data = {"text": "your order shipped"}
        position = await api_ok(port, "publish", {"channel": "user:alice", "data": data})
        message = await alice.wait(message_with("user:alice", data))
        assert message["offset"] == position["offset"] and message["from"] == SERVER, message
        return f"offset {position['offset']}"

    async def unknown_cookie_refused():
        for cookie, reason in (("session=mallory", "unknown session"), (None, "no session")):
            client = await Client.open(port, cookie)
            first = await client.wait(lambda f: True)
            assert first == {"type": "error", "code": "unauthorized", "reason": reason}, first
            close = await client.closed()
            assert close == (4403, reason), close
            client.end()

    async def subscribe_proxy():
        bob = state["bob"] = await user("bob-secret")
        reply = await state["alice"].request({"op": "subscribe", "channel": "private:club"})
        assert reply["type"] == "subscribed", reply
        reply = await bob.request({"op": "subscribe", "channel": "private:club"})
        assert reply["type"] == "error" and reply["code"] == "forbidden", reply
        assert reply["reason"] == "private:club is for members", reply
        calls = [json.loads(c["body"]) for c in setup.app_log()["calls"]
                 if c["path"] == "/sb/subscribe"]
        assert [c["user"] for c in calls[-2:]] == ["alice", "bob"], calls

    async def publish_proxy():
        alice, bob = state["alice"], state["bob"]
        await alice.subscribe("chat:1")
        await bob.subscribe("chat:1")
        ack = await bob.request({"op": "publish", "channel": "chat:1", "data": {"text": "hi"}})
        assert ack["type"] == "ack", ack
        seen = await alice.wait(message_with("chat:1", {"text": "hi", "by": "bob"}))
        assert seen["offset"] == ack["offset"], seen
        bad = await bob.request({"op": "publish", "channel": "chat:1", "data": {"text": 5}})
        assert bad["type"] == "error" and bad["code"] == "forbidden", bad
        assert bad["reason"] == 'a chat message is {"text": "..."}', bad
        await asyncio.sleep(ABSENT / 3)
        assert len(alice.messages("chat:1")) == 1, alice.messages("chat:1")

    async def proxy_timeout():
        reply = await state["alice"].request({"op": "subscribe", "channel": "slow:1"})
        assert reply["type"] == "error" and reply["code"] == "forbidden", reply
        assert reply["reason"] == "the subscribe proxy failed: no answer in time", reply

    async def personal_channel_refused():
        reply = await state["bob"].request({"op": "subscribe", "channel": "user:alice"})
        assert reply == {"type": "error", "id": reply.get("id"), "code": "forbidden",
                         "reason": "channel user:alice is another user's"}, reply

    for title, check in (
            ("connect proxy: the cookie's user, info and personal channel",
             connect_with_cookie()),
            ("personal channel: a publish through the API arrives",
             personal_channel_gets_api_publish()),
            ("connect proxy: unknown or missing session refused with 4403 and its reason",
             unknown_cookie_refused()),
            ("subscribe proxy: alice allowed, bob refused with the backend's reason",
             subscribe_proxy()),
            ("publish proxy: data rewritten for subscribers, bad data refused",
             publish_proxy()),
            (f"proxy timeout ({PROXY_TIMEOUT}, backend takes {SLOW:g}s): subscribe refused",
             proxy_timeout()),
            ("personal channel user:alice refused to bob", personal_channel_refused())):
        await report.check(title, check)

    # -- the server API, with both clients --
    carol = await user("carol-secret")
    await carol.subscribe("lobby")
    for name, client in (("curl", curl_call), ("urllib", urllib_call)):
        await api_endpoints(report, name, client, port, carol, user, open_clients)

    await api_errors(report, port, keyless)
    await webhooks(report, setup, port)
    for client in open_clients:
        client.end()


async def api_endpoints(report, name, client, port, carol, user, open_clients):
    ops = f"ops-{name}"

    async def publish():
        data = {"text": f"deploy finished ({name})"}
        answer = await api_ok(port, "publish", {"channel": "lobby", "data": data}, client)
        assert set(answer) == {"epoch", "offset"}, answer
        seen = await carol.wait(message_with("lobby", data))
        assert seen["offset"] == answer["offset"] and seen["from"] == SERVER, seen
        return json.dumps(answer)

    async def broadcast():
        data = {"text": f"maintenance ({name})"}
        answer = await api_ok(port, "broadcast", {"channels": ["lobby", ops], "data": data},
                              client)
        results = answer["results"]
        assert [r["channel"] for r in results] == ["lobby", ops], answer
        assert all("offset" in r and "epoch" in r for r in results), answer
        await carol.wait(message_with("lobby", data))
        state[name] = (data, results[0]["offset"])

    async def history():
        data, offset = state[name]
        answer = await api_ok(port, "history", {"channel": "lobby", "limit": 1}, client)
        assert answer["offset"] == offset, answer
        [publication] = answer["publications"]
        assert publication["data"] == data and publication["offset"] == offset, answer
        assert publication["from"] == SERVER, answer

    async def presence():
        answer = await api_ok(port, "presence", {"channel": "lobby"}, client)
        assert [c["user"] for c in answer["clients"]] == ["carol"], answer

    async def channels():
        answer = await api_ok(port, "channels", {"pattern": "lob*"}, client)
        assert answer == {"channels": [{"channel": "lobby", "subscribers": 1}]}, answer

    async def info():
        answer = await api_ok(port, "info", {}, client)
        open_now = sum(1 for c in open_clients if c.close is None)
        assert answer["connections"] == open_now, (answer, open_now)
        assert answer["version"] and [n["connections"] for n in answer["nodes"]] == [open_now], answer
        return json.dumps(answer)

    async def subscribe():
        answer = await api_ok(port, "subscribe", {"user": "carol", "channel": ops}, client)
        assert answer == {"connections": 1}, answer
        reply = await carol.wait(lambda f: f["type"] == "subscribed" and f["channel"] == ops)
        assert "id" not in reply, reply
        data = {"text": f"to ops ({name})"}
        await api_ok(port, "publish", {"channel": ops, "data": data}, client)
        await carol.wait(message_with(ops, data))

    async def unsubscribe():
        answer = await api_ok(port, "unsubscribe", {"user": "carol", "channel": ops}, client)
        assert answer == {"connections": 1}, answer
        reply = await carol.wait(lambda f: f["type"] == "unsubscribed" and f["channel"] == ops)
        assert reply == {"type": "unsubscribed", "channel": ops}, reply

    async def disconnect():
        dave = await user("dave-secret")
        body = {"user": "dave", "code": 4001, "reason": f"account closed ({name})"}
        answer = await api_ok(port, "disconnect", body, client)
        assert answer == {"connections": 1}, answer
        close = await dave.closed()
        assert close == (4001, body["reason"]), close

    state = {}
    for endpoint, check in (("publish", publish()), ("broadcast", broadcast()),
                            ("history", history()), ("presence", presence()),
                            ("channels", channels()), ("info", info()),
                            ("subscribe", subscribe()), ("unsubscribe", unsubscribe()),
                            ("disconnect", disconnect())):
        await report.check(f"api with {name}: {endpoint}", check)


async def api_errors(report, port, keyless):
    def refused(answer, status, code):
        assert answer.status == status and answer.error_code() == code, answer
        assert answer.headers.get("content-type") == "application/json", answer.headers
        return answer.json["error"]["message"]

    async def bad_json():
        for client in (urllib_call, curl_call):
            message = refused(await api(port, "publish", raw=b'{"channel": ', client=client),
                              400, "bad_request")
            assert message.startswith("body: "), message
        return message

    async def wrong_type():
        answer = await api(port, "publish", {"channel": 5, "data": {}})
        message = refused(answer, 400, "bad_request")
        assert message.startswith("channel: "), message
        message = refused(await api(port, "publish", {"channel": "lobby"}), 400, "bad_request")
        assert message == "data: missing", message
        return answer.text

    async def keys():
        for client in (urllib_call, curl_call):
            refused(await api(port, "info", client=client, key=None), 401, "unauthorized")
            refused(await api(port, "info", client=client, key="wrong"), 401, "unauthorized")
        for key in KEYS:
            await api_ok(port, "info", key=key)
            await api_ok(port, "publish", {"channel": "keys", "data": key}, curl_call, key=key)

    async def unknown_endpoint():
        for client in (urllib_call, curl_call):
            refused(await api(port, "nope", client=client), 404, "not_found")

    async def no_key_configured():
        for endpoint in ("publish", "info"):
            for client in (urllib_call, curl_call):
                answer = await api(keyless, endpoint, {"channel": "c", "data": 1}, client)
                assert answer.status == 404, answer

    async def wrong_method():
        for client in (urllib_call, curl_call):
            answer = await api(port, "publish", client=client, method="GET")
            refused(answer, 405, "method_not_allowed")
            assert answer.headers.get("allow") == "POST", answer.headers

    async def too_large():
        # curl sends `Expect: 100-continue` and is refused before it sends the body; urllib
        # sends the whole body first, which the server reads and drops so that the 413
        # arrives (8 MiB: more than the socket buffers hold).
        for client, size in ((curl_call, 1024 * 1024 + 1), (urllib_call, 8 << 20)):
            data = "x" * size
            answer = await api(port, "publish", {"channel": "big", "data": data}, client)
            refused(answer, 413, "too_large")

    async def wrong_content_type():
        for client in (urllib_call, curl_call):
            answer = await api(port, "publish", {"channel": "c", "data": 1}, client,
                               content_type="text/plain")
            refused(answer, 415, "unsupported_media_type")

    for title, check in (
            ("api 400: body not JSON (message names the body)", bad_json()),
            ("api 400: a field of the wrong type or missing is named", wrong_type()),
            ("api 401: no key, wrong key; either of two keys works (rotation)", keys()),
            ("api 404: unknown endpoint", unknown_endpoint()),
            ("api 404: no --api-key, no API", no_key_configured()),
            ("api 405: GET, with Allow: POST", wrong_method()),
            ("api 413: body over 1 MiB, with and without Expect: 100-continue", too_large()),
            ("api 415: Content-Type text/plain", wrong_content_type())):
        await report.check(title, check)


def deliveries(setup):
    """The app's webhook deliveries, each with its events parsed."""
    found = []
    for d in setup.app_log()["webhooks"]:
        headers = {name.lower(): value for name, value in d["headers"].items()}
        found.append({**d, "headers": headers, "events": json.loads(d["body"])["events"]})
    return found


async def webhooks(report, setup, port):
    def accepted_events():
        """Events of the deliveries the app accepted; fails on any badly signed one."""
        found = deliveries(setup)
        for d in found:
            assert d["verified"], f"bad signature or timestamp: {d}"
            assert d["headers"].get("content-type") == "application/json", d["headers"]
        return [e for d in found if d["status"] == 200 for e in d["events"]]

    async def channel_and_presence():
        watcher = await Client.user(port, "erin-secret")
        await watcher.subscribe("hooks-room")
        conn = next(f for f in watcher.frames if f["type"] == "connected")["client"]["conn"]
        watcher.end()
        wanted = [("channel_occupied", None), ("member_added", "erin"),
                  ("member_removed", "erin"), ("channel_vacated", None)]

        def got():
            return [(e["type"], e.get("user")) for e in accepted_events()
                    if e["channel"] == "hooks-room"]
        await until(f"webhook events {wanted}", lambda: got() == wanted)
        for e in accepted_events():
            if e["channel"] == "hooks-room" and e.get("user"):
                assert e["conn"] == conn, e
        return " ".join(t for t, _ in wanted)

    async def retried():
        first, *later = deliveries(setup)
        assert first["status"] == 500, first
        accepted = [e for d in later if d["status"] == 200 for e in d["events"]]
        missing = [e for e in first["events"] if e not in accepted]
        assert not missing, f"never delivered after the 500: {missing}"
        return f"{len(first['events'])} events answered 500, then accepted"

    await report.check("webhooks: occupied, member added/removed, vacated; all signed",
                       channel_and_presence())
    await report.check("webhooks: the delivery answered 500 is sent again, complete", retried())


async def cluster(setup, report):
    setup.start_redis()
    flags = [*setup.backend_flags(), "--api-key", KEYS[0], "--admin-password", ADMIN_PASSWORD,
             "--broker", f"redis://127.0.0.1:{setup.redis_port}"]
    a, b, c = (setup.start_node(f"cluster-{n}", flags) for n in "abc")
    clients = []

    async def user(port, session):
        client = await Client.user(port, session)
        clients.append(client)
        return client

    # Subscribers on every node.
    on = {"a": await user(a, "alice-secret"), "b": await user(b, "bob-secret"),
          "c": await user(c, "carol-secret")}
    for client in on.values():
        await client.subscribe("fan")

    async def fan_out():
        data = {"text": "from the API on A"}
        answer = await api_ok(a, "publish", {"channel": "fan", "data": data})
        for name, client in on.items():
            seen = await client.wait(message_with("fan", data), what=f"the message on {name}")
            assert seen["offset"] == answer["offset"], seen

    async def idempotent():
        key = f"order-{uuid.uuid4().hex}"
        body = {"channel": "fan", "data": {"text": "once"}, "idempotency_key": key}
        # The backend's retry goes to another node, and through another client (curl).
        first = await api_ok(a, "publish", body)
        again = await api_ok(b, "publish", body, curl_call)
        assert first == again, (first, again)
        for client in on.values():
            await client.wait(message_with("fan", body["data"]))
        await asyncio.sleep(ABSENT)
        for name, client in on.items():
            got = client.matching(message_with("fan", body["data"]))
            assert len(got) == 1, f"{name} got {got}"
        return json.dumps(first)

    async def history_and_presence():
        for port, client in ((a, urllib_call), (b, curl_call), (c, urllib_call)):
            answer = await api_ok(port, "history", {"channel": "fan", "limit": 10}, client)
            texts = [p["data"]["text"] for p in answer["publications"]]
            assert texts == ["from the API on A", "once"], answer
            answer = await api_ok(port, "presence", {"channel": "fan"}, client)
            users = sorted(cl["user"] for cl in answer["clients"])
            assert users == ["alice", "bob", "carol"], answer

    await report.check("cluster: API publish on A reaches subscribers on A, B and C", fan_out())
    await report.check("cluster: idempotent publish on A then B: same answer, delivered once",
                       idempotent())
    await report.check("cluster: history and presence through the API on each node",
                       history_and_presence())

    # Cluster-wide actions, asked of one node: bob has connections on B and C, dave on B and C.
    bob_c = await user(c, "bob-secret")
    dave = {"b": await user(b, "dave-secret"), "c": await user(c, "dave-secret")}

    async def info():
        answer = await api_ok(a, "info", client=curl_call)
        nodes = answer.get("nodes")
        assert isinstance(nodes, list) and len(nodes) == 3, answer
        assert answer["connections"] == sum(n["connections"] for n in nodes), answer
        assert answer["connections"] == len(clients), (answer, len(clients))
        assert all(n["node"] and n["version"] for n in nodes) and answer["version"], answer
        assert len({n["node"] for n in nodes}) == 3, answer
        return json.dumps(answer)

    async def admin():
        login = await asyncio.to_thread(admin_call, a, "login", {"password": ADMIN_PASSWORD})
        assert login.status == 200, login
        cookie = login.headers["set-cookie"].split(";")[0]
        nodes = await asyncio.to_thread(admin_call, a, "nodes", cookie=cookie)
        assert nodes.status == 200 and len(nodes.json["nodes"]) == 3, nodes
        listed = await asyncio.to_thread(admin_call, a, "connections", cookie=cookie)
        assert listed.status == 200, listed
        by_node = {c["node"] for c in listed.json["clients"]}
        assert by_node == {n["node"] for n in nodes.json["nodes"]}, listed
        assert len(listed.json["clients"]) == len(clients), (listed, len(clients))
        bobs = await asyncio.to_thread(admin_call, a, "connections?user=bo", cookie=cookie)
        assert sorted(c["user"] for c in bobs.json["clients"]) == ["bob", "bob"], bobs
        refused = await asyncio.to_thread(admin_call, a, "nodes")
        assert refused.status == 401, refused
        return f"{len(nodes.json['nodes'])} nodes, {len(listed.json['clients'])} connections"

    async def channels():
        answer = await api_ok(b, "channels", {"pattern": "fan"})
        assert answer == {"channels": [{"channel": "fan", "subscribers": 3}]}, answer

    async def subscribe():
        answer = await api_ok(a, "subscribe", {"user": "bob", "channel": "remote"})
        assert answer == {"connections": 2}, answer
        for client in (on["b"], bob_c):
            await client.wait(lambda f: f["type"] == "subscribed" and f["channel"] == "remote")
        data = {"text": "to bob everywhere"}
        await api_ok(a, "publish", {"channel": "remote", "data": data})
        for client in (on["b"], bob_c):
            await client.wait(message_with("remote", data))

    async def unsubscribe():
        answer = await api_ok(a, "unsubscribe", {"user": "bob", "channel": "remote"})
        assert answer == {"connections": 2}, answer
        for client in (on["b"], bob_c):
            await client.wait(lambda f: f["type"] == "unsubscribed" and f["channel"] == "remote")

    async def disconnect():
        body = {"user": "dave", "code": 4002, "reason": "banned everywhere"}
        answer = await api_ok(a, "disconnect", body)
        assert answer == {"connections": 2}, answer
        for name, client in dave.items():
            close = await client.closed()
            assert close == (4002, "banned everywhere"), f"{name}: {close}"

    for title, check in (
            ("POST /api/info lists the 3 nodes, connections summed", info()),
            ("admin on A: the 3 nodes, the connections of every node", admin()),
            ("POST /api/channels on B counts subscribers of every node", channels()),
            ("POST /api/subscribe on A subscribes bob on B and C", subscribe()),
            ("POST /api/unsubscribe on A unsubscribes bob on B and C", unsubscribe()),
            ("POST /api/disconnect on A closes dave on B and C", disconnect())):
        await report.check("cluster: " + title, check)

    async def unavailable():
        setup.kill_redis()
        answer = await api(a, "publish", {"channel": "fan", "data": {"text": "lost"}})
        assert answer.status == 503 and answer.error_code() == "unavailable", answer
        return answer.text

    await report.check("api 503: Redis killed, publish on A is unavailable", unavailable())
    for client in clients:
        client.end()


async def main(setup, show_wire):
    report = Report()
    setup.start_app()
    await one_node(setup, report)
    await cluster(setup, report)

    async def all_signed():
        found = deliveries(setup)
        bad = [d for d in found if not d["verified"]]
        assert not bad, f"bad signature or timestamp: {bad}"
        return f"{len(found)} deliveries"

    await report.check("webhooks: every delivery of every node was signed", all_signed())
    panics = setup.panics()
    if panics:
        report.failed.append("panics")
        print(f"FAIL  a process panicked: {panics}")
    if show_wire:
        log = setup.app_log()
        call = next(c for c in log["calls"] if c["path"] == "/sb/connect")
        hook = next(d for d in log["webhooks"] if d["status"] == 200)
        print("connect proxy headers:", json.dumps(call["headers"]))
        print("connect proxy request:", call["body"])
        print("connect proxy answer: ", json.dumps(call["answer"]))
        print("webhook headers:", json.dumps(hook["headers"]))
        print("webhook body:   ", hook["body"])
    print(f"{report.passed} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default="target/release/switchboard")
    parser.add_argument("--logs", default=None, help="where the app, node and redis logs go")
    parser.add_argument("--show-wire", action="store_true",
                        help="print a connect proxy call and a webhook delivery")
    args = parser.parse_args()
    logdir = args.logs or tempfile.mkdtemp(prefix="switchboard-backend-")
    os.makedirs(logdir, exist_ok=True)
    print(f"logs in {logdir}")
    # SIGTERM unwinds like Ctrl-C, so that the processes below are stopped on it too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with Processes() as procs:
        code = asyncio.run(main(Setup(args.binary, logdir, procs), args.show_wire))
    sys.exit(code)
