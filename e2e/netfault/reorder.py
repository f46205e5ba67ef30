#!/usr/bin/env python3
"""Delays each packet of an nftables queue by its own random time, so that packets overtake
one another: real reordering on the wire, which the delay relay cannot give.

nftables hands packets to this program (`queue num N` rules, NFQUEUE) and waits for a verdict
on each; the packet goes on only when its verdict comes. This program gives each packet a
delay drawn uniformly from DELAY ± JITTER and accepts it once that delay has passed, whatever
came before: a packet that drew a short delay leaves before one that drew a long one. Nothing
is dropped or duplicated here. Stdlib only: the netfilter queue protocol over a netlink socket.

Run it in the namespace whose rules queue the packets (a netlink socket sees its own
namespace). On SIGTERM it prints what it did as one JSON line and exits. Should it die, queued
packets are dropped (the rules have no `bypass`): a check then fails, it never goes on
unknowingly without reordering.

  reorder.py [--queue 0] [--delay 0.02] [--jitter 0.02] [--seed N]
"""
import argparse, heapq, json, random, select, signal, socket, struct, sys, time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2


def attr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * (-n % 4)


class Queue:
    def __init__(self, number):
        self.number = number
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.seq = 0
        self.overruns = 0

    def send(self, msg_type, attrs, ack=False):
        self.seq += 1
        body = struct.pack("!BBH", socket.AF_UNSPEC, 0, self.number) + b"".join(attrs)
        flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
        head = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type,
                           flags, self.seq, 0)
        self.sock.send(head + body)
        if ack:
            self.expect_ack()

    def expect_ack(self):
        data = self.sock.recv(65536)
        _, kind, _, _, _ = struct.unpack_from("=IHHII", data)
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", data, 16)
            if error:
                raise OSError(-error, f"netfilter queue config: error {error}")

    def bind(self):
        self.send(NFQNL_MSG_CONFIG, [attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND,
                                                                      0, 0))], ack=True)
        # Only the metadata: the verdict needs the packet's id, not its bytes.
        self.send(NFQNL_MSG_CONFIG, [attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0,
                                                                         NFQNL_COPY_META))],
                  ack=True)

    def packets(self):
        """The ids of the packets in one read from the socket."""
        try:
            data = self.sock.recv(1 << 16)
        except OSError:  # ENOBUFS: the kernel dropped what did not fit; go on
            self.overruns += 1
            return []
        ids, offset = [], 0
        while offset + 16 <= len(data):
            length, kind, _, _, _ = struct.unpack_from("=IHHII", data, offset)
            if length < 16:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                at, end = offset + 20, offset + length  # after nlmsghdr and nfgenmsg
                while at + 4 <= end:
                    n, a = struct.unpack_from("=HH", data, at)
                    if n < 4:
                        break
                    if a & 0x7FFF == NFQA_PACKET_HDR:
                        ids.append(struct.unpack_from("!I", data, at + 4)[0])
                    at += (n + 3) & ~3
            offset += (length + 3) & ~3
        return ids

    def accept(self, packet_id):
        self.send(NFQNL_MSG_VERDICT, [attr(NFQA_VERDICT_HDR,
                                           struct.pack("!II", NF_ACCEPT, packet_id))])


def main(args):
    rng = random.Random(args.seed)
    queue = Queue(args.queue)
    queue.bind()
    stats = {"packets": 0, "overtaken": 0}
    due = []        # (time, arrival number, packet id)
    released = -1   # the latest arrival number released so far

    def stop(*_):
        stats["overruns"] = queue.overruns
        print(json.dumps(stats), flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    print(f"queue {args.queue}: each packet delayed {args.delay} ± {args.jitter} s",
          flush=True)
    arrivals = 0
    while True:
        wait = max(0.0, due[0][0] - time.monotonic()) if due else 1.0
        readable, _, _ = select.select([queue.sock], [], [], wait)
        now = time.monotonic()
        if readable:
            for packet_id in queue.packets():
                delay = max(0.0, args.delay + rng.uniform(-args.jitter, args.jitter))
                heapq.heappush(due, (now + delay, arrivals, packet_id))
                arrivals += 1
                stats["packets"] += 1
        while due and due[0][0] <= now:
            _, number, packet_id = heapq.heappop(due)
            if number < released:
                stats["overtaken"] += 1  # a packet that arrived later left before this one
            released = max(released, number)
            queue.accept(packet_id)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--jitter", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=None)
    main(parser.parse_args())
