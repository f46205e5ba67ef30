#!/usr/bin/env python3
"""A TCP relay that delays what it carries: each chunk read from one side is written to the
other DELAY ± JITTER seconds later (uniformly drawn), in both directions.

Chunks keep their order: a chunk is never written before the one read before it, so a drawn
delay shorter than the previous chunk's waits for it. What this gives a connection is a
variable delay on the wire (jitter), which is what reordered packets look like from above TCP:
TCP puts segments back in order before the application sees them, so packet reordering shows
only as delay. The relay does not reorder, duplicate or drop bytes.

An end that closes (FIN) is passed on once what was read before it has been written; a reset
on either side closes both. Reading pauses while more than 256 chunks wait in one direction.

  delayproxy.py --listen HOST:PORT --to HOST:PORT [--delay 0.1] [--jitter 0.05] [--seed N]

Prints "listening on HOST:PORT" once it accepts connections; runs until killed.
"""
import argparse, asyncio, random, sys


def address(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


async def pump(reader, writer, delay, jitter, rng):
    """Copies reader to writer, each chunk delayed; half-closes writer at the end."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue(maxsize=256)

    async def read():
        try:
            while True:
                chunk = await reader.read(65536)
                due = loop.time() + delay + rng.uniform(-jitter, jitter)
                await queue.put((due, chunk))
                if not chunk:
                    return
        except (ConnectionError, OSError):
            await queue.put((loop.time(), None))

    async def write():
        last = 0.0
        while True:
            due, chunk = await queue.get()
            last = max(last, due)  # never before the chunk read before it
            await asyncio.sleep(max(0.0, last - loop.time()))
            if chunk is None:  # the other side reset: so does this one
                writer.transport.abort()
                return
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()

    reading = asyncio.create_task(read())
    try:
        await write()
    except (ConnectionError, OSError):
        writer.transport.abort()
    finally:
        reading.cancel()


async def relay(client_reader, client_writer, target, delay, jitter, rng):
    try:
        server_reader, server_writer = await asyncio.wait_for(
            asyncio.open_connection(*target), 10)
    except (OSError, asyncio.TimeoutError):
        client_writer.transport.abort()
        return
    try:
        await asyncio.gather(
            pump(client_reader, server_writer, delay, jitter, rng),
            pump(server_reader, client_writer, delay, jitter, rng))
    finally:
        for w in (client_writer, server_writer):
            w.close()


async def main(args):
    rng = random.Random(args.seed)
    target = address(args.to)
    host, port = address(args.listen)
    server = await asyncio.start_server(
        lambda r, w: relay(r, w, target, args.delay, args.jitter, rng), host, port)
    print(f"listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--jitter", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=None)
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
