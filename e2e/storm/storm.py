#!/usr/bin/env python3
"""A reconnect storm: CLIENTS hub clients (the Rust client SDK, in crates/switchboard-client's
`storm` example) on node A, subscribed to CHANNELS channels with history, while a publisher on
node B publishes RATE messages a second; both nodes share one Redis. Node A is restarted
(SIGTERM, then started again on its port) under that load, and every client reconnects and
recovers what it missed.

Checks: every client is back and recovered, nothing acked is lost or delivered twice (the
clients check offsets one by one), and no gap is reported. Reports: the time until the last
client recovered, node A's peak RSS and CPU during the storm (sampled from /proc every 100 ms),
handshakes node A refused, how the recoveries spread over time, and how many of node A's
recovery reads were answered by one read of the same channel made at the same time.

  e2e/storm/storm.py [--clients 2000] [--channels 100] [--rate 200] [--no-admission]
                     [--event-loop] [--json FILE]

--no-admission runs node A without the storm defences (no bound on handshakes under way, and
no restart hint: clients come back on their own backoff), to show what they buy.
--event-loop has both nodes serve the hub from the event loop (serve --event-loop).

Needs the release builds: `switchboard` and the `storm` example. Every process is stopped by
PID; every wait is bounded.
"""
import argparse, json, os, resource, signal, subprocess, sys, tempfile, threading, time, urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
from procs import Processes, free_port, stop, wait_port  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TICKS = os.sysconf("SC_CLK_TCK")


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 1 << 20)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    """Peak RSS and CPU (cores busy, over 100 ms) of whichever process `target()` names."""

    def __init__(self, target):
        super().__init__(daemon=True)
        self.target, self.peak_rss, self.peak_cpu, self.done = target, 0.0, 0.0, False
        self.cpu_total = 0.0

    def run(self):
        last = None
        while not self.done:
            pid = self.target()
            try:
                now, cpu = time.monotonic(), cpu_seconds(pid)
                self.peak_rss = max(self.peak_rss, rss_mb(pid))
                if last and last[0] == pid and now > last[1]:
                    busy = (cpu - last[2]) / (now - last[1])
                    self.peak_cpu = max(self.peak_cpu, busy)
                    self.cpu_total += cpu - last[2]
                last = (pid, now, cpu)
            except (OSError, IndexError, ValueError):
                last = None
            time.sleep(0.1)


def metric(port, name):
    """The sum of a metric's samples on a node's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def parse(line):
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--no-admission", action="store_true")
    parser.add_argument("--down", type=float, default=2.0, help="seconds node A stays down")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--event-loop", action="store_true",
                        help="both nodes serve the hub from the event loop (serve --event-loop)")
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/switchboard"))
    parser.add_argument("--storm", default=os.path.join(ROOT, "target/release/examples/storm"))
    args = parser.parse_args()
    for path in (args.binary, args.storm):
        if not os.access(path, os.X_OK):
            fail(f"{path} not built (cargo build --release -p switchboard-cli; "
                 "cargo build --release -p switchboard-client --example storm)")
    raise_fd_limit()
    logdir = tempfile.mkdtemp(prefix="switchboard-storm-")
    redis_port, port_a, port_b = free_port(), free_port(), free_port()
    # History must hold what is published while node A is down and its clients come back.
    common = ["--broker", f"redis://127.0.0.1:{redis_port}", "--history-size", "1000",
              "--max-connections", str(args.clients + 1000)]
    if args.event_loop:
        common.append("--event-loop")
    node_a = common + (["--max-handshakes", "1000000", "--restart-spread", "0s"]
                       if args.no_admission else [])
    with Processes() as procs:
        redis = procs.start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"],
                            os.path.join(logdir, "redis.log"))
        if not wait_port(redis_port, redis):
            fail("redis-server did not start")

        def start_node(name, port, flags):
            proc = procs.start([args.binary, "serve", "--listen", f"127.0.0.1:{port}", *flags],
                               os.path.join(logdir, f"node-{name}.log"), append=True)
            if not wait_port(port, proc):
                fail(f"node {name} did not start (log: {logdir})")
            return proc

        a = start_node("a", port_a, node_a)
        start_node("b", port_b, common)
        storm = subprocess.Popen(
            [args.storm, "--url", f"ws://127.0.0.1:{port_a}/ws",
             "--publish-url", f"ws://127.0.0.1:{port_b}/ws", "--clients", str(args.clients),
             "--channels", str(args.channels), "--rate", str(args.rate)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(os.path.join(logdir, "storm.log"), "wb"), text=True)
        procs.procs.append(storm)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(iter(storm.stdout.readline, "")),
                                  daemon=True)
        reader.start()

        def wait_line(key, seconds):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                for value in map(parse, list(lines)):
                    if key in value:
                        return value
                if storm.poll() is not None and not reader.is_alive():
                    break
                time.sleep(0.1)
            fail(f"no {key!r} from the storm clients within {seconds} s (log: {logdir})")

        started = time.monotonic()
        wait_line("ready", 60 + args.clients / 50)
        print(f"{args.clients} clients subscribed in {time.monotonic() - started:.1f} s; "
              f"publishing {args.rate}/s")
        time.sleep(2)

        current = {"pid": a.pid}
        sampler = Sampler(lambda: current["pid"])
        sampler.start()
        storm.stdin.write("restart\n")
        storm.stdin.flush()
        stop(a, grace=30)
        time.sleep(args.down)
        a = start_node("a", port_a, node_a)
        current["pid"] = a.pid

        deadline = time.monotonic() + 60 + args.clients / 100
        while time.monotonic() < deadline:
            progress = [v for v in map(parse, list(lines)) if "recovered" in v and "of" in v]
            if progress and progress[-1]["recovered"] == progress[-1]["of"]:
                break
            time.sleep(0.2)
        sampler.done = True
        failures = metric(port_a, "switchboard_handshake_failures_total")
        refused = sum(metric(port_a, f'switchboard_handshake_failures_total{{reason="{r}"}}')
                      for r in ("over_capacity", "address_limit"))
        held = metric(port_a, "switchboard_accepts_held_total")
        # Node A started afresh, so its counters cover the storm alone.
        reads = metric(port_a, "switchboard_redis_history_reads_total")
        coalesced = metric(port_a, "switchboard_redis_history_reads_coalesced_total")
        storm.stdin.write("stop\n")
        storm.stdin.flush()
        result = wait_line("result", 120)["result"]
        figures = {
            "clients": args.clients, "channels": args.channels, "rate": args.rate,
            "admission": not args.no_admission, "down_s": args.down,
            "all_recovered_s": round(result["recovery_ms_slowest"] / 1000, 2),
            "peak_rss_mb": round(sampler.peak_rss, 1),
            "peak_cpu_cores": round(sampler.peak_cpu, 2),
            "cpu_s_during_storm": round(sampler.cpu_total, 2),
            "handshakes_refused_503_429": int(refused), "handshake_failures": int(failures),
            "accepts_held": int(held),
            "history_reads_sent": int(reads), "history_reads_coalesced": int(coalesced),
            **result,
        }
        print(json.dumps(figures, indent=1))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(figures, f, indent=1)
        problems = []
        if result["recovered"] != args.clients:
            problems.append(f"{args.clients - result['recovered']} clients did not recover")
        for key in ("lost", "duplicated", "out_of_order", "gaps"):
            if result[key]:
                problems.append(f"{key}: {result[key]}")
        if not result["settled"]:
            problems.append("deliveries did not settle")
        if result["published"] == 0:
            problems.append("nothing was published")
        if problems:
            fail("; ".join(problems) + f" (logs: {logdir})")
        print(f"storm: {args.clients} clients back and recovered "
              f"{figures['all_recovered_s']} s after the restart; "
              f"{result['received']} deliveries, 0 lost, 0 duplicated; "
              f"{int(reads + coalesced)} recovery reads, {int(coalesced)} of them "
              f"answered by a read made at the same time")


if __name__ == "__main__":
    main()
