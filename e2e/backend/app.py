#!/usr/bin/env python3
"""A small backend for switchboard's proxies and webhooks, as an application with session
cookies would write one (standard library only). backend.py starts it and asserts on what it
logged.

  POST /sb/connect    session cookie -> user, info and the user's personal channel; an
                      unknown or missing session is refused with 4403 and a reason
  POST /sb/subscribe  `private:*`: alice only
  POST /sb/publish    `chat:*`: data {"text": str} is published with "by": the user added;
                      anything else is refused
  POST /sb/slow       answers after --slow seconds (longer than serve's --proxy-timeout)
  POST /hooks         webhooks: checks the signature and timestamp; answers 500 to the first
                      delivery and 200 to the others, so that the hub must retry
  GET  /_log          everything above as JSON: {"calls": [..], "webhooks": [..]}

  app.py --port PORT --webhook-secret SECRET [--slow SECONDS]
"""
import argparse, hashlib, hmac, json, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SESSIONS = {"alice-secret": ("alice", {"name": "Alice"}),
            "bob-secret": ("bob", {"name": "Bob"}),
            "carol-secret": ("carol", {"name": "Carol"}),
            "dave-secret": ("dave", {"name": "Dave"}),
            "erin-secret": ("erin", {"name": "Erin"})}
PRIVATE_MEMBERS = {"alice"}
MAX_AGE = 300  # seconds a webhook's timestamp may be off: older ones could be replays


class Log:
    """What the app received, shared by the handler threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []     # proxy calls: {"path", "headers", "body", "answer"}
        self.webhooks = []  # deliveries: {"headers", "body", "verified", "status"}

    def add_call(self, entry):
        with self.lock:
            self.calls.append(entry)

    def add_webhook(self, verified, entry):
        """Records a delivery; returns the status to answer: 500 for the first, 200 after."""
        with self.lock:
            status = 500 if not self.webhooks else 200 if verified else 401
            self.webhooks.append({**entry, "verified": verified, "status": status})
            return status

    def snapshot(self):
        with self.lock:
            return {"calls": list(self.calls), "webhooks": list(self.webhooks)}


def cookie(headers, name):
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def connect(call):
    session = cookie(call.get("headers", {}), "session")
    if session is None:
        return {"disconnect": {"code": 4403, "reason": "no session"}}
    if session not in SESSIONS:
        return {"disconnect": {"code": 4403, "reason": "unknown session"}}
    user, info = SESSIONS[session]
    return {"result": {"user": user, "info": info, "channels": [f"user:{user}"]}}


def subscribe(call):
    if call["user"] in PRIVATE_MEMBERS:
        return {"result": {}}
    return {"error": {"code": 403, "message": f"{call['channel']} is for members"}}


def publish(call):
    data = call.get("data")
    if isinstance(data, dict) and isinstance(data.get("text"), str):
        return {"result": {"data": {**data, "by": call["user"]}}}
    return {"error": {"code": 400, "message": "a chat message is {\"text\": \"...\"}"}}


def signed(secret, headers, body):
    """The README's check: sha256=HMAC(secret, timestamp "." body), and a fresh timestamp."""
    timestamp = headers.get("X-Switchboard-Timestamp", "")
    expected = "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
    fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= MAX_AGE
    return fresh and hmac.compare_digest(expected, headers.get("X-Switchboard-Signature", ""))


def handler(log, secret, slow):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the hub's client uses it

        def log_message(self, *_):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/_log":
                self.answer(200, log.snapshot())
            else:
                self.answer(404, {"error": "not found"})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = dict(self.headers.items())
            if self.path == "/hooks":
                entry = {"headers": headers, "body": body.decode(errors="replace")}
                status = log.add_webhook(signed(secret, self.headers, body), entry)
                self.answer(status, {})
                return
            routes = {"/sb/connect": connect, "/sb/subscribe": subscribe,
                      "/sb/publish": publish, "/sb/slow": None}
            if self.path not in routes:
                self.answer(404, {"error": "not found"})
                return
            try:
                call = json.loads(body)
            except ValueError:
                self.answer(400, {"error": "not JSON"})
                return
            if routes[self.path] is None:
                time.sleep(slow)
                reply = {"result": {}}
            else:
                reply = routes[self.path](call)
            log.add_call({"path": self.path, "headers": headers, "body": body.decode(),
                          "answer": reply})
            self.answer(200, reply)

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--webhook-secret", required=True)
    parser.add_argument("--slow", type=float, default=3.0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port),
                                 handler(Log(), args.webhook_secret.encode(), args.slow))
    server.daemon_threads = True
    print(f"backend listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
