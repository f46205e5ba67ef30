"""Network namespaces for the fault tests: made here, used by the checks, always removed.

The lab is four namespaces joined by veth pairs, each pair a /30 of its own, so every address
exists only inside namespaces this run made (nothing is added to the machine's own namespace,
and no packet is routed: each pair's two ends talk directly):

    clients (C) ── 10.231.0.1/.2 ── hub (H) ── 10.231.0.5/.6 ── node A (A)
                                      │                            │
                              10.231.0.9/.10               10.231.0.13/.14
                                      └──────── redis (R) ─────────┘

H holds the servers of the client-link checks, the Redis node B, the delay proxy and the checks
themselves (run there with `ip netns exec`); C the clients whose link loses packets or goes
silent; A the node that is cut off from Redis; R Redis. Faults are nftables tables inside one
namespace: loss (`numgen random mod 100 < N drop`), drop-all (a partition: no FIN, no RST
reaches either side), and a queue that hands each packet to reorder.py (NFQUEUE; through
iptables where the kernel lacks nft's `queue` expression, as this one does).

Names carry the PID, so runs side by side do not meet. `Lab.remove` stops whatever still runs
in the namespaces (by PID, from `ip netns pids`), deletes the veth pairs and the namespaces; it
is called from a `finally` and on SIGTERM, and is harmless to call twice.
"""
import json, os, shutil, signal, subprocess, time

# Each link: (name, namespace of end a, address a, namespace of end b, address b).
LINKS = [
    ("c", "H", "10.231.0.1", "C", "10.231.0.2"),
    ("a", "H", "10.231.0.5", "A", "10.231.0.6"),
    ("r", "H", "10.231.0.9", "R", "10.231.0.10"),
    ("ar", "A", "10.231.0.13", "R", "10.231.0.14"),
]


class NoNamespaces(Exception):
    """This machine does not let the test make network namespaces (or lacks `ip`/`nft`)."""


def run(cmd, stdin=None, check=True):
    result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {result.returncode}: {result.stderr.strip()}")
    return result


class Lab:
    def __init__(self):
        self.tag = f"nf{os.getpid()}"
        self.ns = {role: f"{self.tag}{role.lower()}" for role in "HCAR"}
        self.made_ns, self.made_links = [], []
        # Interface names (at most 15 bytes), the same in both namespaces of a pair.
        self.ifname = {}
        self.addr = {}

    # ---- making and removing -----------------------------------------------------------

    def make(self):
        for tool in ("ip", "nft"):
            if shutil.which(tool) is None:
                raise NoNamespaces(f"`{tool}` is not installed (iproute2, nftables)")
        for role, name in self.ns.items():
            result = run(["ip", "netns", "add", name], check=False)
            if result.returncode != 0:
                raise NoNamespaces(f"`ip netns add` failed: {result.stderr.strip()}")
            self.made_ns.append(name)
            run(["ip", "-n", name, "link", "set", "lo", "up"])
        for link, ra, aa, rb, ab in LINKS:
            a, b = f"{self.tag}{link}a", f"{self.tag}{link}b"
            run(["ip", "link", "add", a, "netns", self.ns[ra], "type", "veth",
                 "peer", "name", b, "netns", self.ns[rb]])
            self.made_links.append((self.ns[ra], a))
            for ns, dev, addr in ((self.ns[ra], a, aa), (self.ns[rb], b, ab)):
                run(["ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev])
                run(["ip", "-n", ns, "link", "set", dev, "up"])
            self.ifname[(link, ra)], self.ifname[(link, rb)] = a, b
            self.addr[(link, ra)], self.addr[(link, rb)] = aa, ab
        # A namespace that lets nft run is one the faults work in; say so now, not mid-check.
        result = run(["ip", "netns", "exec", self.ns["C"], "nft", "list", "ruleset"], check=False)
        if result.returncode != 0:
            raise NoNamespaces(f"nft cannot run in a namespace: {result.stderr.strip()}")
        return self

    def remove(self):
        for name in self.made_ns:
            pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for ns, dev in self.made_links:
            run(["ip", "-n", ns, "link", "del", dev], check=False)
        self.made_links.clear()
        for name in self.made_ns:
            deadline = time.monotonic() + 5
            while run(["ip", "netns", "del", name], check=False).returncode != 0:
                if time.monotonic() > deadline:
                    print(f"warning: could not delete namespace {name}", flush=True)
                    break
                time.sleep(0.1)
        self.made_ns.clear()

    def describe(self):
        """What the checks need, as JSON for the process that runs them in H."""
        return json.dumps({
            "ns": self.ns,
            "ifname": {f"{link}:{role}": v for (link, role), v in self.ifname.items()},
            "addr": {f"{link}:{role}": v for (link, role), v in self.addr.items()},
        })


class View:
    """The lab as seen from the checks: namespaces, interfaces, addresses, and the faults."""

    def __init__(self, description):
        d = json.loads(description)
        self.ns, self.ifnames, self.addrs = d["ns"], d["ifname"], d["addr"]

    def addr(self, link, role):
        return self.addrs[f"{link}:{role}"]

    def ifname(self, link, role):
        return self.ifnames[f"{link}:{role}"]

    def inside(self, role, cmd):
        """`cmd` run in namespace `role` (H runs the checks themselves: no prefix there)."""
        return cmd if role == "H" else ["ip", "netns", "exec", self.ns[role]] + cmd

    def nft(self, role, script):
        run(self.inside(role, ["nft", "-f", "-"]), stdin=script)

    def loss(self, role, link, percent):
        """Drops `percent`% of the packets on `role`'s end of `link`, each way, at random."""
        dev = self.ifname(link, role)
        self.nft(role, f"""
table inet netfault_loss {{
  chain input {{ type filter hook input priority 0; policy accept;
    iifname "{dev}" counter
    iifname "{dev}" numgen random mod 100 < {percent} counter drop;
  }}
  chain output {{ type filter hook output priority 0; policy accept;
    oifname "{dev}" counter
    oifname "{dev}" numgen random mod 100 < {percent} counter drop;
  }}
}}""")

    def partition(self, role, link):
        """Drops every packet on `role`'s end of `link`: a silent cut, no FIN or RST."""
        dev = self.ifname(link, role)
        self.nft(role, f"""
table inet netfault_cut {{
  chain input {{ type filter hook input priority -10; policy accept;
    iifname "{dev}" counter drop;
  }}
  chain output {{ type filter hook output priority -10; policy accept;
    oifname "{dev}" counter drop;
  }}
}}""")

    def queue(self, role, link, number=0):
        """Hands every packet on `role`'s end of `link`, each way, to the program reading
        netfilter queue `number` in that namespace (reorder.py); without `bypass`, so that
        nothing passes while no program reads the queue."""
        dev = self.ifname(link, role)
        try:
            self.nft(role, f"""
table inet netfault_queue {{
  chain input {{ type filter hook input priority 10; policy accept;
    iifname "{dev}" queue num {number};
  }}
  chain output {{ type filter hook output priority 10; policy accept;
    oifname "{dev}" queue num {number};
  }}
}}""")
            return "nft"
        except RuntimeError:
            # A kernel without nft's queue expression (CONFIG_NFT_QUEUE) may still have
            # xtables' NFQUEUE target, which iptables reaches.
            if shutil.which("iptables") is None:
                raise
        for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):
            run(self.inside(role, ["iptables", "-A", chain, flag, dev, "-j", "NFQUEUE",
                                   "--queue-num", str(number)]))
        return "iptables"

    def unqueue(self, role):
        self.heal(role, "netfault_queue")
        if shutil.which("iptables"):
            for chain in ("INPUT", "OUTPUT"):
                run(self.inside(role, ["iptables", "-F", chain]), check=False)

    def tcp_counters(self, role, names):
        """TcpExt counters of `role`'s namespace (/proc/net/netstat is per namespace)."""
        text = run(self.inside(role, ["cat", "/proc/net/netstat"])).stdout.splitlines()
        counters = {}
        for head, values in zip(text[::2], text[1::2]):
            if head.startswith("TcpExt:"):
                counters = dict(zip(head.split()[1:], map(int, values.split()[1:])))
        return {name: counters.get(name, 0) for name in names}

    def heal(self, role, table="netfault_cut"):
        run(self.inside(role, ["nft", "delete", "table", "inet", table]), check=False)

    def counters(self, role, table):
        """The packet counters of `table` in rule order: [seen in, dropped in, seen out,
        dropped out] for the loss table, [dropped in, dropped out] for a cut."""
        out = run(self.inside(role, ["nft", "-j", "list", "table", "inet", table])).stdout
        packets = []
        for item in json.loads(out)["nftables"]:
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    packets.append(expr["counter"]["packets"])
        return packets
