"""Processes the end-to-end checks start: free loopback ports, waiting until a process
listens, its resident memory, and stopping it by PID (SIGTERM, then SIGKILL), alone or all
those a check started."""
import os, signal, socket, subprocess, time


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_port(port, proc=None, seconds=20, host="127.0.0.1"):
    """Waits until host:port accepts TCP connections: True, or False after `seconds` or as
    soon as `proc` exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        if listening(port, host):
            return True
        time.sleep(0.05)
    return False


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stop(proc, grace=10, group=False):
    """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code. `group`: signal the
    process group `proc` leads (started with start_new_session), e.g. a shell and its server."""
    if proc is None:
        return None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    return proc.wait()


class Processes:
    """The processes a check starts, each stopped by PID when the `with` block ends."""

    def __init__(self):
        self.procs = []

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.stop_all()

    def start(self, cmd, log_path, env=None, append=False):
        """Starts `cmd` with its output in `log_path` (`env`: variables added to ours)."""
        with open(log_path, "ab" if append else "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, **(env or {})})
        self.procs.append(proc)
        return proc

    def stop_all(self, grace=5):
        """SIGTERM to all at once, then each gets `grace` seconds before SIGKILL."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            stop(p, grace)
        self.procs.clear()
