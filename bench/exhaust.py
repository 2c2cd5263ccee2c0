#!/usr/bin/env python3
"""Drives a running `kindling serve` past its limits (bench/exhaust.sh starts it):

1. connections: IDLE (10,000) connections opened and left idle, while wrk boots machines
   (GET /ipxe?mac=, every MAC in turn) beside them: the boot requests' latency, the server's
   RSS, and how many idle connections the server closed by its header timeout.
2. subscribers: SUBSCRIBERS (1,000) streams of /api/v1/events, a tenth of them slow (they
   never read, with a small receive buffer), during a boot storm (every request an event): the
   server's RSS before, during and after, the events the others received, and what became of
   the slow ones when they start reading.

    bench/exhaust.py PID HTTP_ADDR DIR WRK_SECONDS
"""
import asyncio
import re
import socket
import subprocess
import sys
import time

PID, HTTP, DIR, SECONDS = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
HOST, PORT = HTTP.split(":")[0], int(HTTP.split(":")[1])
IDLE, SUBSCRIBERS, SLOW = 10_000, 1_000, 100
TOKEN = open(f"{DIR}/auth/kindling-admin-token").read().strip()


def rss():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def fds():
    import os
    return len(os.listdir(f"/proc/{PID}/fd"))


def wrk(connections):
    """wrk on core 1, every worker MAC in turn: (req/s, p50 ms, p99 ms, errors)."""
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{SECONDS}s", "--latency",
         "-s", "bench/macs.lua", f"http://{HTTP}/", "--", f"{DIR}/macs.txt", "/ipxe?mac="],
        capture_output=True, text=True, check=True).stdout

    def ms(v):
        n = float(re.match(r"[\d.]+", v).group())
        return n / 1000 if v.endswith("us") else n * 1000 if v.endswith("s") and not v.endswith("ms") else n
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    rps = float(re.search(r"Requests/sec:\s+(\S+)", out).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|connect|read|write|timeout) (\d+)", out))
    return rps, p50, p99, errors


async def idle_connections():
    print(f"### {IDLE:,} idle connections\n")
    print(f"RSS before: {rss():.1f} MB, {fds()} descriptors")
    opened = []
    started = time.monotonic()
    for _ in range(IDLE):
        opened.append(await asyncio.open_connection(HOST, PORT))
    print(f"opened in {time.monotonic() - started:.1f} s; RSS {rss():.1f} MB, {fds()} descriptors")
    loop = asyncio.get_running_loop()
    rps, p50, p99, errors = await loop.run_in_executor(None, wrk, 16)
    print(f"boot requests beside them (wrk -c16, {SECONDS} s, every MAC in turn): "
          f"{rps:,.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, {errors} errors; "
          f"RSS {rss():.1f} MB")

    async def closed(reader):
        try:
            return await asyncio.wait_for(reader.read(1), 30) == b""
        except (asyncio.TimeoutError, ConnectionError):
            return False
    results = await asyncio.gather(*(closed(r) for r, _ in opened))
    print(f"closed by the server's header timeout within {time.monotonic() - started:.0f} s of "
          f"opening: {sum(results):,} of {IDLE:,}; RSS after: {rss():.1f} MB, {fds()} descriptors")
    for _, w in opened:
        w.close()


def subscribe(slow):
    s = socket.socket()
    if slow:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((HOST, PORT))
    s.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: {HOST}\r\n"
              f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
    return s


async def subscribers():
    print(f"\n### {SUBSCRIBERS:,} event streams, {SLOW} of them slow, during a boot storm\n")
    print(f"RSS before: {rss():.1f} MB")
    loop = asyncio.get_running_loop()
    socks = [subscribe(i < SLOW) for i in range(SUBSCRIBERS)]
    for s in socks:
        s.setblocking(False)
    received = [0] * SUBSCRIBERS
    stop = asyncio.Event()

    async def read(i):
        while not stop.is_set():
            try:
                data = await asyncio.wait_for(loop.sock_recv(socks[i], 65536), 0.5)
            except asyncio.TimeoutError:
                continue
            if not data:
                return
            received[i] += data.count(b"\nid: ") + data.startswith(b"id: ")
    readers = [asyncio.create_task(read(i)) for i in range(SLOW, SUBSCRIBERS)]
    await asyncio.sleep(1)
    print(f"subscribed: RSS {rss():.1f} MB, {fds()} descriptors")
    peak = [rss()]

    async def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            await asyncio.sleep(0.2)
    watcher = asyncio.create_task(watch())
    rps, p50, p99, errors = await loop.run_in_executor(None, wrk, 64)
    await asyncio.sleep(1)
    requests = int(rps * SECONDS)
    print(f"storm (wrk -c64, {SECONDS} s, each request an event): {rps:,.0f} req/s, p50 {p50:.2f} ms, "
          f"p99 {p99:.2f} ms, {errors} errors; RSS peak {peak[0]:.1f} MB, after {rss():.1f} MB")
    fast = received[SLOW:]
    print(f"events received by each of the {SUBSCRIBERS - SLOW} reading streams: "
          f"min {min(fast):,}, max {max(fast):,} (about {requests:,} requests)")
    # The slow ones read now, all at once, for 10 s: what the server kept for them, or sends
    # them from its log, is what they get.
    stop.set()
    watcher.cancel()
    await asyncio.gather(*readers)

    async def catch_up(s):
        got, ended = 0, False
        deadline = time.monotonic() + 10
        while (left := deadline - time.monotonic()) > 0:
            try:
                data = await asyncio.wait_for(loop.sock_recv(s, 1 << 20), left)
            except (asyncio.TimeoutError, ConnectionError):
                break
            if not data:
                ended = True
                break
            got += data.count(b"\nid: ")
        return got, ended
    caught = await asyncio.gather(*(catch_up(s) for s in socks[:SLOW]))
    ended = sum(e for _, e in caught)
    print(f"slow streams once they read: events {min(g for g, _ in caught):,} to "
          f"{max(g for g, _ in caught):,}; cut off by the server: {ended} of {SLOW}")
    for s in socks:
        s.close()
    await asyncio.sleep(1)
    print(f"RSS after they are gone: {rss():.1f} MB, {fds()} descriptors")


async def main():
    await idle_connections()
    await subscribers()

asyncio.run(main())
