"""The clients the fault checks use.

- `SdkClient`: `switchboard connect --hub`, which runs the Rust client SDK: it reconnects by
  itself with backoff and resubscribes with each channel's position, dropping duplicates. Its
  stdout (one JSON event per line) and stderr (connection changes, errors) are read by threads.
- `Probe`: a bare WebSocket client of the hub protocol (no reconnect), to see exactly what the
  hub answers during a fault.
- `http_get`/`api`: /healthz, /metrics and the server API, never through an HTTP proxy.
"""
import json, os, queue, socket, struct, subprocess, sys, threading, time, urllib.error, urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from wsclient import frame  # noqa: E402

_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(host, port, path, timeout=5):
    """(status, body) of GET path; (None, why) when the server cannot be reached."""
    try:
        with _direct.open(f"http://{host}:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (OSError, urllib.error.URLError) as e:
        return None, str(e)


def api(host, port, key, name, body, timeout=10):
    request = urllib.request.Request(
        f"http://{host}:{port}/api/{name}", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with _direct.open(request, timeout=timeout) as r:
        return json.loads(r.read())


def metric(host, port, name):
    """The value of one line of /metrics (`name` with its labels), 0 when absent."""
    status, body = http_get(host, port, "/metrics")
    assert status == 200, (status, body)
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


class SdkClient:
    """One `switchboard connect --hub` process; `cmd_prefix` runs it in a namespace."""

    def __init__(self, procs, binary, cmd_prefix, url, name, logdir):
        self.name = name
        self.events = []      # (monotonic time, JSON object) from stdout
        self.status = []      # (monotonic time, line) from stderr
        self.replies = queue.Queue()  # acks and errors, for `publish`
        self.lock = threading.Lock()
        self.log = open(os.path.join(logdir, f"client-{name}.log"), "w")
        self.proc = subprocess.Popen(
            cmd_prefix + [binary, "connect", "--hub", "--name", name, url, "-w", "3600"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            bufsize=1)
        procs.procs.append(self.proc)
        self.threads = [threading.Thread(target=self._out, daemon=True),
                        threading.Thread(target=self._err, daemon=True)]
        for t in self.threads:
            t.start()

    def _out(self):
        for line in self.proc.stdout:
            self.log.write(f"{time.monotonic():.3f} out {line}")
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append((time.monotonic(), event))
            if event.get("type") == "ack":
                self.replies.put(("ack", event))

    def _err(self):
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            self.log.write(f"{time.monotonic():.3f} err {line}\n")
            with self.lock:
                self.status.append((time.monotonic(), line))
            if line.startswith("error: "):
                self.replies.put(("error", line))

    def command(self, line):
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except OSError as e:  # the process is gone
            raise AssertionError(f"{self.name} exited ({self.proc.poll()}): {e}") from e

    def wait_status(self, prefix, seconds):
        """Waits for a stderr line starting with `prefix`; False after `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.proc.poll() is None:
            with self.lock:
                if any(line.startswith(prefix) for _, line in self.status):
                    return True
            time.sleep(0.05)
        return False

    def subscribe(self, channel, seconds=30):
        self.command(f"subscribe {channel}")
        if not self.wait_status(f"subscribed to {channel}", seconds):
            raise AssertionError(f"{self.name} did not subscribe to {channel}: "
                                 f"{self.status[-5:]}")

    def publish(self, channel, data, seconds=30):
        """Publishes and waits for the outcome: ("ack", offset) or ("error", line); the SDK
        bounds each request by its own timeout (10 s), `seconds` is a safety net."""
        self.command(f"publish {channel} {json.dumps(data, separators=(',', ':'))}")
        try:
            kind, what = self.replies.get(timeout=seconds)
        except queue.Empty:
            raise AssertionError(f"{self.name}: no answer to a publish in {seconds}s")
        return (kind, what["offset"]) if kind == "ack" else (kind, what)

    def messages(self, channel):
        with self.lock:
            return [e for _, e in self.events
                    if e.get("type") == "message" and e.get("channel") == channel]

    def count(self, kind):
        """Events of one type on stdout (`recovered`, `gap`, `join`, `leave`, ...)."""
        with self.lock:
            return [e for _, e in self.events if e.get("type") == kind]

    def disconnects(self):
        with self.lock:
            return [line for _, line in self.status if line.startswith("disconnected: ")]


class Closed(Exception):
    def __init__(self, code):
        super().__init__(f"closed with {code}")
        self.code = code


class Probe:
    """A bare hub client over one TCP connection (RFC 6455, blocking, with timeouts)."""

    def __init__(self, host, port, name, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        self.sock.sendall((f"GET /ws?name={name} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self.next_id = 0
        self.hello = self.read(timeout)
        assert self.hello["type"] == "connected", self.hello

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise Closed(None)
        self.buffer += data

    def _take(self, n):
        while len(self.buffer) < n:
            self._fill()
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def read(self, timeout):
        """The next JSON frame; raises Closed (with the close code) when the hub closes."""
        self.sock.settimeout(timeout)
        while True:
            b0, b1 = self._take(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._take(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._take(8))[0]
            opcode, payload = b0 & 0x0F, self._take(n)
            if opcode == 0x8:
                raise Closed(struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None)
            if opcode == 0x9:
                self.sock.sendall(frame(0xA, payload))
            elif opcode == 0x1:
                return json.loads(payload)

    def request(self, obj, timeout):
        """Sends a request and returns its reply (other frames are skipped)."""
        self.next_id += 1
        self.sock.sendall(frame(0x1, json.dumps({**obj, "id": self.next_id}).encode()))
        deadline = time.monotonic() + timeout
        while True:
            reply = self.read(max(0.01, deadline - time.monotonic()))
            if reply.get("id") == self.next_id:
                return reply

    def close(self):
        self.sock.close()
