#!/usr/bin/env python3
"""The hub on broken networks, in network namespaces this test makes and removes (lab.py):

  1  lossy link     publishers and subscribers (the Rust client SDK, through
                    `switchboard connect --hub`) reach the hub over a link that drops LOSS% of
                    packets each way, through a relay adding DELAY ± JITTER per chunk each way
                    (delayproxy.py), each packet held REORDER ± REORDER on its own so that
                    packets overtake one another (reorder.py, an NFQUEUE reader), and the
                    link goes dark now and then (BLACKOUT seconds of drop-all,
                    past the hub's short keepalive, so connections die and the SDK recovers);
                    every acked message reaches every subscriber exactly once, in offset
                    order, and each publisher's messages in the order it sent them
  2  silent client  a client's link drops everything (no FIN, no RST): the server's keepalive
                    (short --idle-timeout and --pong-timeout) closes it with 1011, its presence
                    entry goes and the channel's other subscribers get its `leave`; once the
                    link is back, the SDK reconnects and is present again
  3  redis cut      node A loses Redis (every packet between them dropped) for FAULT seconds
                    while node B keeps it and takes publishes: A's /healthz answers 503, a
                    publish on A gets `unavailable`, A's clients drop out of presence after the
                    node timeout; once healed A's /healthz is 200 again by itself, its
                    subscribers get every acked message exactly once, in order, and its clients
                    are present again

Needs root (ip netns, veth pairs, nftables' `nft`; `iptables` for the packet queue where nft
has no `queue`). Where namespaces cannot be made, it says so
and fails. Every wait is bounded; every process is stopped by PID, and the namespaces are
deleted, also on failure, Ctrl-C or SIGTERM. Prints the figures of each check, then
"N passed, M failed".

  netfault.py [--binary target/release/switchboard] [--fault-seconds 20] [--json FILE] ...
"""
import argparse, json, os, signal, subprocess, sys, tempfile, threading, time, traceback

sys.dont_write_bytecode = True  # no __pycache__ left in the tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
from lab import Lab, NoNamespaces, View  # noqa: E402
from procs import Processes, free_port, wait_port  # noqa: E402
from procs import stop as stop_process  # noqa: E402
from hubclients import Closed, Probe, SdkClient, api, http_get, metric  # noqa: E402

STEP = 30.0      # the longest any single wait for something expected may take
API_KEY = "netfault-key"
NODE_TIMEOUT = 10.0  # the Redis broker's default: a silent node's clients leave after it


def until(what, condition, seconds=STEP, every=0.1):
    """Waits for `condition()`; returns the seconds it took, raises after `seconds`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"timed out after {seconds:.0f}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - started


class Run:
    """What the checks share: the lab, the binary, the processes, the logs."""

    def __init__(self, view, args, procs, logdir):
        self.view, self.args, self.procs, self.logdir = view, args, procs, logdir

    def serve(self, role, host, name, *flags):
        port = free_port()
        proc = self.procs.start(
            self.view.inside(role, [self.args.binary, "serve", "--listen", f"{host}:{port}",
                                    "--api-key", API_KEY, *flags]),
            os.path.join(self.logdir, f"serve-{name}.log"), env={"RUST_LOG": "info"})
        if not wait_port(port, proc, STEP, host=host):
            raise RuntimeError(f"server {name} did not listen on {host}:{port}")
        return port

    def client(self, role, host, port, name):
        return SdkClient(self.procs, self.args.binary, self.view.inside(role, []),
                         f"ws://{host}:{port}/ws", name, self.logdir)

    def check_logs(self):
        for entry in os.listdir(self.logdir):
            with open(os.path.join(self.logdir, entry), errors="replace") as f:
                text = f.read()
            assert "panicked" not in text, f"{entry}: a panic:\n{text[-2000:]}"


def keepalive(a):
    """The serve flags of a short keepalive."""
    return ["--idle-timeout", f"{a.idle:g}s", "--pong-timeout", f"{a.pong:g}s",
            "--close-timeout", f"{a.close:g}s"]


def delivery(subscribers, channel, acked, published):
    """Checks every subscriber against the acked publishes; returns the figures.

    acked: {offset: (publisher, i)}; published: {publisher: [i sent, in order]}."""
    figures = []
    for s in subscribers:
        got = s.messages(channel)
        offsets = [m["offset"] for m in got]
        duplicates = len(offsets) - len(set(offsets))
        lost = sorted(set(acked) - set(offsets))
        out_of_order = sum(1 for a, b in zip(offsets, offsets[1:]) if b <= a)
        keys = [(m["data"]["p"], m["data"]["i"]) if isinstance(m["data"], dict) else None
                for m in got]
        others = [m for m, k in zip(got, keys) if k is None]  # not from the publishers
        keys = [k for k in keys if k is not None]
        resent = len(keys) - len(set(keys))
        at = {}  # offset: what was delivered there
        for m in got:
            if isinstance(m["data"], dict):
                at.setdefault(m["offset"], []).append((m["data"]["p"], m["data"]["i"]))
        for offset, key in acked.items():
            matching = at.get(offset, [])
            assert matching in ([key], []), f"{s.name}: offset {offset} is {matching}, not {key}"
        for p in published:
            mine = [i for q, i in keys if q == p]
            assert mine == sorted(mine), f"{s.name}: {p}'s messages out of order"
        gaps = s.count("gap")
        assert not duplicates and not resent, \
            f"{s.name}: {duplicates} offsets twice, {resent} messages twice"
        assert not out_of_order, f"{s.name}: offsets out of order"
        assert not lost, f"{s.name}: lost acked offsets {lost[:10]}"
        assert not gaps, f"{s.name}: told of gaps {gaps}"
        figures.append({
            "client": s.name, "delivered": len(got), "duplicates": duplicates, "lost": len(lost),
            "others": [{"offset": m["offset"], "data": m["data"], "from": m["from"]["user"]}
                       for m in others],
            "reconnects": len(s.disconnects()),
            "recovered_events": len(s.count("recovered")),
            "replayed": sum(e.get("missed", 0) for e in s.count("recovered")),
            "disconnect_reasons": sorted({line[len("disconnected: "):].split(";")[0]
                                          for line in s.disconnects()}),
        })
    return figures


def publish_loop(publisher, channel, stop, acked, published, failures, every=0.0):
    """Publishes {"p": name, "i": i} until `stop` is set; records what was acked."""
    i = 0
    while not stop.is_set():
        try:
            kind, what = publisher.publish(channel, {"p": publisher.name, "i": i})
        except AssertionError as e:  # the publisher is gone: the check fails on what is missing
            failures.append(str(e))
            return
        published.setdefault(publisher.name, []).append(i)
        if kind == "ack":
            acked[what] = (publisher.name, i)
        else:
            failures.append(what)
        i += 1
        if every:
            stop.wait(every)


# ---- 1: loss and delay on the clients' link ----------------------------------------------

def lossy_link(run):
    a, view = run.args, run.view
    host = view.addr("c", "H")
    # Short keepalive, so that a blackout makes the hub drop connections and clients come
    # back through recovery; loss and delay alone are hidden by TCP.
    port = run.serve("H", host, "lossy", "--history-size", "10000", *keepalive(a))
    relay = free_port()
    proxy = run.procs.start(
        [sys.executable, os.path.join(HERE, "delayproxy.py"), "--listen", f"{host}:{relay}",
         "--to", f"{host}:{port}", "--delay", str(a.delay), "--jitter", str(a.jitter)],
        os.path.join(run.logdir, "delayproxy.log"))
    assert wait_port(relay, proxy, STEP, host=host), "the delay proxy did not listen"
    reorder = None
    if a.reorder:
        reorder_log = os.path.join(run.logdir, "reorder.log")
        reorder = run.procs.start(view.inside("C", [
            sys.executable, os.path.join(HERE, "reorder.py"), "--delay", str(a.reorder),
            "--jitter", str(a.reorder)]), reorder_log)
        until("the reorderer to read its queue", lambda: reorder.poll() is not None or
              "queue 0" in open(reorder_log).read())
        assert reorder.poll() is None, open(reorder_log).read()
        view.queue("C", "c")
    tcp = ["TCPOFOQueue", "TCPSACKReorder", "TCPTSReorder"]
    tcp_before = {r: view.tcp_counters(r, tcp) for r in "CH"}
    channel = "lossy"
    subscribers = [run.client("C", host, relay, f"sub{k}") for k in range(a.subscribers)]
    publishers = [run.client("C", host, relay, f"pub{k}") for k in range(a.publishers)]
    for s in subscribers:
        s.subscribe(channel)
    view.loss("C", "c", a.loss)
    acked, published, failures = {}, {}, []
    stop = threading.Event()
    threads = [threading.Thread(target=publish_loop,
                                args=(p, channel, stop, acked, published, failures))
               for p in publishers]
    closes = 'switchboard_closes_total{code="1011"}'
    before = metric(host, port, closes)
    started = time.monotonic()
    for t in threads:
        t.start()
    blackouts = []
    try:
        # Blackouts: everything dropped for a while, every `blackout_every` seconds.
        at = a.blackout_start
        while a.blackout and at + a.blackout <= a.fault_seconds:
            time.sleep(max(0.0, started + at - time.monotonic()))
            view.partition("C", "c")
            time.sleep(a.blackout)
            blackouts.append(sum(view.counters("C", "netfault_cut")))
            view.heal("C")
            at += a.blackout_every
        time.sleep(max(0.0, started + a.fault_seconds - time.monotonic()))
    finally:
        view.heal("C")
        stop.set()
        for t in threads:
            t.join(STEP + 15)
    publishing = time.monotonic() - started
    assert acked, "nothing was acked"
    for s in subscribers:
        until(f"{s.name} to get every acked message",
              lambda s=s: set(acked) <= {m["offset"] for m in s.messages(channel)}, 2 * STEP)
    time.sleep(1)  # time for a duplicate to show up
    hub_closes = metric(host, port, closes) - before
    # A blackout outlasts the keepalive (2 x idle + pong + close at most): connections died.
    assert hub_closes >= 1 or not blackouts, "no connection was closed by a blackout"
    seen_in, dropped_in, seen_out, dropped_out = view.counters("C", "netfault_loss")
    view.heal("C", "netfault_loss")
    reordered = {}
    if reorder is not None:
        view.unqueue("C")
        stop_process(reorder)
        with open(reorder_log) as f:
            reordered = json.loads(f.read().splitlines()[-1])
        assert reordered["overtaken"] > 0, reordered
    tcp_seen = {r: {k: v - tcp_before[r][k] for k, v in view.tcp_counters(r, tcp).items()}
                for r in "CH"}
    figures = {
        "fault_s": a.fault_seconds, "publishing_s": round(publishing, 1),
        "loss_percent": a.loss, "delay_ms": a.delay * 1000, "jitter_ms": a.jitter * 1000,
        "packets": {"in": seen_in, "dropped_in": dropped_in,
                    "out": seen_out, "dropped_out": dropped_out},
        "reorder": {"per_packet_delay_ms": a.reorder * 1000,
                    "jitter_ms": a.reorder * 1000, **reordered},
        "tcp_out_of_order": {"clients": tcp_seen["C"], "hub": tcp_seen["H"]},
        "blackouts": len(blackouts), "blackout_s": a.blackout,
        "packets_dropped_in_blackouts": sum(blackouts),
        "hub_keepalive_closes": hub_closes,
        "published": sum(len(v) for v in published.values()),
        "acked": len(acked), "not_acked": len(failures),
        "publisher_reconnects": sum(len(p.disconnects()) for p in publishers),
        "subscribers": delivery(subscribers, channel, acked, published),
    }
    return figures


# ---- 2: a client whose link goes silent ---------------------------------------------------

def silent_client(run):
    a, view = run.args, run.view
    host = view.addr("c", "H")
    idle, pong = a.idle, a.pong
    port = run.serve("H", host, "keepalive", *keepalive(a))
    channel = "quiet"
    silent = run.client("C", host, port, "silent")
    watcher = run.client("H", host, port, "watcher")
    for c in (silent, watcher):
        c.subscribe(channel)

    def present():
        return {c["user"] for c in api(host, port, API_KEY, "presence",
                                       {"channel": channel})["clients"]}

    until("both clients in presence", lambda: present() == {"silent", "watcher"})
    closes = 'switchboard_closes_total{code="1011"}'
    before = metric(host, port, closes)
    open_before = metric(host, port, "switchboard_connections_open")
    view.partition("C", "c")
    cut = time.monotonic()
    try:
        # The keepalive fails a silent peer idle + pong after its last input (a sweeper tick
        # late at most) and ends its connection then: twice that, and more, is the generous
        # bound.
        gone = until("the silent client to leave presence", lambda: "silent" not in present(),
                     seconds=2 * (idle + pong + a.close) + 20)
        left = until("the watcher to see the leave",
                     lambda: any(e["client"]["user"] == "silent" for e in watcher.count("leave")))
        closed = metric(host, port, closes) - before
        open_after = metric(host, port, "switchboard_connections_open")
        assert closed >= 1, f"no 1011 close counted (before {before})"
        assert open_after == open_before - 1, (open_before, open_after)
    finally:
        dropped = sum(view.counters("C", "netfault_cut"))
        view.heal("C")
    healed = time.monotonic()
    back = until("the silent client to be present again", lambda: "silent" in present(),
                 seconds=STEP + 10)
    return {
        "idle_timeout_s": idle, "pong_timeout_s": pong,
        "left_presence_after_s": round(gone, 1),
        "leave_event_after_s": round(gone + left, 1),
        "closes_1011": closed,
        "packets_dropped": dropped,
        "silent_for_s": round(healed - cut, 1),
        "client_back_after_heal_s": round(back, 1),
        "client_disconnects": silent.disconnects(),
    }


# ---- 3: a node cut off from Redis ---------------------------------------------------------

def redis_cut(run):
    a, view = run.args, run.view
    redis_port = free_port()
    redis = run.procs.start(
        view.inside("R", ["redis-server", "--port", str(redis_port),
                          "--bind", view.addr("r", "R"), view.addr("ar", "R"),
                          "--protected-mode", "no", "--save", "", "--appendonly", "no"]),
        os.path.join(run.logdir, "redis.log"))
    assert wait_port(redis_port, redis, STEP, host=view.addr("r", "R")), "redis did not start"
    history = "--history-size", "10000"
    a_host = view.addr("a", "A")
    a_port = run.serve("A", a_host, "node-a", "--broker",
                       f"redis://{view.addr('ar', 'R')}:{redis_port}", *history)
    b_host = "127.0.0.1"
    b_port = run.serve("H", b_host, "node-b", "--broker",
                       f"redis://{view.addr('r', 'R')}:{redis_port}", *history)
    channel = "cut"
    on_a = [run.client("H", a_host, a_port, f"a-sub{k}") for k in range(a.subscribers)]
    on_b = run.client("H", b_host, b_port, "b-sub")
    publisher = run.client("H", b_host, b_port, "b-pub")
    for s in on_a + [on_b]:
        s.subscribe(channel)

    def present():
        return {c["user"] for c in api(b_host, b_port, API_KEY, "presence",
                                       {"channel": channel})["clients"]}

    def health_a():
        return http_get(a_host, a_port, "/healthz")

    everyone = {s.name for s in on_a} | {"b-sub"}
    until("every subscriber in presence", lambda: present() == everyone)
    assert health_a()[0] == 200, health_a()
    acked, published, failures = {}, {}, []
    stop = threading.Event()
    thread = threading.Thread(target=publish_loop, args=(
        publisher, channel, stop, acked, published, failures, 1 / a.rate))
    thread.start()
    figures = {}
    try:
        until("some traffic", lambda: len(acked) >= 20)
        view.partition("A", "ar")
        cut = time.monotonic()
        took = until("node A's /healthz to answer 503", lambda: health_a()[0] == 503)
        figures["healthz_503_after_s"] = round(took, 1)
        figures["healthz_503_body"] = health_a()[1].strip()
        # A publish on the cut-off node: refused with `unavailable` (after the broker's
        # timeout), or the connection closed; never acked.
        probe = Probe(a_host, a_port, "probe")
        asked = time.monotonic()
        try:
            reply = probe.request({"op": "publish", "channel": channel, "data": "x"}, STEP)
            figures["publish_on_a"] = reply.get("code") or reply["type"]
        except Closed as e:
            figures["publish_on_a"] = f"closed {e.code}"
        figures["publish_on_a_answered_after_s"] = round(time.monotonic() - asked, 1)
        probe.close()
        assert figures["publish_on_a"] == "unavailable", figures["publish_on_a"]
        # A client new to node A: its subscribe needs Redis too.
        late = Probe(a_host, a_port, "late")
        asked = time.monotonic()
        try:
            reply = late.request({"op": "subscribe", "channel": channel}, STEP)
            figures["subscribe_on_a"] = reply.get("code") or reply["type"]
        except Closed as e:
            figures["subscribe_on_a"] = f"closed {e.code}"
        figures["subscribe_on_a_answered_after_s"] = round(time.monotonic() - asked, 1)
        late.close()
        until("node A's clients to leave presence (seen from node B)",
                      lambda: not (present() & {s.name for s in on_a}),
                      seconds=NODE_TIMEOUT + STEP)
        figures["a_clients_left_presence_after_s"] = round(time.monotonic() - cut, 1)
        remaining = a.fault_seconds - (time.monotonic() - cut)
        time.sleep(max(0.0, remaining))
    finally:
        view.heal("A")
    healed = time.monotonic()
    before_heal = set(acked)
    figures["cut_for_s"] = round(healed - cut, 1)
    rejoin = until("node A's /healthz to answer 200 again", lambda: health_a()[0] == 200,
                   seconds=2 * STEP)
    figures["rejoined_after_s"] = round(rejoin, 1)
    back = until("node A's clients in presence again", lambda: present() == everyone)
    figures["a_clients_present_again_after_s"] = round(rejoin + back, 1)
    caught_up = until("node A's subscribers to get what was acked during the cut", lambda: all(
        before_heal <= {m["offset"] for m in s.messages(channel)} for s in on_a))
    figures["a_subscribers_caught_up_after_s"] = round(rejoin + back + caught_up, 1)
    time.sleep(3)  # publishing goes on after the rejoin
    stop.set()
    thread.join(STEP + 15)
    for s in on_a + [on_b]:
        until(f"{s.name} to get every acked message",
              lambda s=s: set(acked) <= {m["offset"] for m in s.messages(channel)}, 2 * STEP)
    time.sleep(1)
    # The publish refused with `unavailable` on node A: was it applied after all?
    late = [m["offset"] for m in on_b.messages(channel) if m["from"]["user"] == "probe"]
    figures["refused_publish_applied_later"] = bool(late)
    figures.update({
        "published": sum(len(v) for v in published.values()),
        "acked": len(acked), "not_acked": len(failures),
        "subscribers": delivery(on_a + [on_b], channel, acked, published),
    })
    return figures


CHECKS = [("1. lossy link: loss, delay and jitter", lossy_link),
          ("2. silent client: keepalive and presence", silent_client),
          ("3. node cut off from redis", redis_cut)]


def terminated(*_):
    """SIGTERM: unwind, so that `finally` blocks stop processes and remove the lab."""
    raise SystemExit(143)


def inside(args):
    """Runs the checks; this process is in namespace H."""
    signal.signal(signal.SIGTERM, terminated)
    view = View(args.inside)
    passed = failed = 0
    results = {}
    logdir = args.logs
    selected = [c for k, c in enumerate(CHECKS, 1) if not args.only or str(k) in args.only]
    for title, check in selected:
        with Processes() as procs:
            run = Run(view, args, procs, logdir)
            started = time.monotonic()
            try:
                figures = check(run)
                run.check_logs()
                passed += 1
                print(f"ok    {title}  {time.monotonic() - started:.1f}s", flush=True)
                results[title] = figures
            except Exception as e:  # report every check, then fail
                failed += 1
                print(f"FAIL  {title}: {type(e).__name__}: {e}", flush=True)
                with open(os.path.join(logdir, "failures.log"), "a") as f:
                    traceback.print_exc(file=f)
                results[title] = {"failed": f"{type(e).__name__}: {e}"}
                figures = None
            finally:
                view.unqueue("C")
                view.heal("C", "netfault_loss")
                view.heal("C")
                view.heal("A")
        if figures is not None:
            print(json.dumps(figures, indent=1), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def outside(args):
    """Makes the lab, runs the checks in it, removes it whatever happens."""
    signal.signal(signal.SIGTERM, terminated)
    lab = Lab()
    logdir = args.logs or tempfile.mkdtemp(prefix="switchboard-netfault-")
    os.makedirs(logdir, exist_ok=True)
    print(f"logs in {logdir}", flush=True)
    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        print(f"FAIL: no binary at {binary} (cargo build --release -p switchboard-cli)")
        return 1
    child = None
    try:
        try:
            lab.make()
        except NoNamespaces as e:
            print(f"FAIL: network namespaces are not available on this machine: {e}\n"
                  "These checks need root, `ip netns` and nftables; they cannot pass without.",
                  flush=True)
            print("0 passed, 1 failed")
            return 1
        argv = [a for a in sys.argv[1:]]
        child = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns["H"], sys.executable, os.path.abspath(__file__),
             *argv, "--binary", binary, "--logs", logdir, "--inside", lab.describe()])
        return child.wait()
    except KeyboardInterrupt:
        print("interrupted: stopping everything and removing the namespaces", flush=True)
        return 130
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        lab.remove()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default="target/release/switchboard")
    parser.add_argument("--logs", default=None, help="where server and client logs go")
    parser.add_argument("--json", default=None, help="write every check's figures here")
    parser.add_argument("--only", default="", help="the checks to run, e.g. 13")
    parser.add_argument("--fault-seconds", type=float, default=20,
                        help="how long the loss (1) and the Redis cut (3) last")
    parser.add_argument("--publishers", type=int, default=2, help="in check 1")
    parser.add_argument("--subscribers", type=int, default=3, help="per check, in 1 and 3")
    parser.add_argument("--loss", type=int, default=5, help="percent of packets, each way")
    parser.add_argument("--delay", type=float, default=0.1, help="seconds per chunk")
    parser.add_argument("--jitter", type=float, default=0.05, help="± seconds per chunk")
    parser.add_argument("--reorder", type=float, default=0.02,
                        help="check 1: each packet of the link held R ± R seconds on its own "
                        "(reorder.py), so packets overtake one another; 0: none")
    parser.add_argument("--idle", type=float, default=2,
                        help="--idle-timeout in checks 1 and 2")
    parser.add_argument("--pong", type=float, default=2,
                        help="--pong-timeout in checks 1 and 2")
    parser.add_argument("--close", type=float, default=1,
                        help="--close-timeout in checks 1 and 2")
    parser.add_argument("--blackout", type=float, default=8,
                        help="seconds of each blackout in check 1 (0: none); longer than "
                        "2 x idle + pong + close, so that the hub's keepalive closes")
    parser.add_argument("--blackout-start", type=float, default=3,
                        help="when the first blackout starts, in seconds into check 1")
    parser.add_argument("--blackout-every", type=float, default=20,
                        help="seconds from one blackout's start to the next's")
    parser.add_argument("--rate", type=float, default=20, help="publishes per second in 3")
    parser.add_argument("--inside", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        sys.exit(inside(args))
    sys.exit(outside(args))
