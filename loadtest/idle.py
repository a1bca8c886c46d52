#!/usr/bin/env python3
"""N idle keep-alive TLS connections, for loadtest/run.sh scenario 5.

Opens --n connections to 127.0.0.1:PORT from --procs processes (at most --concurrency handshakes at a time in
all); each does the TLS handshake (ALPN http/1.1) and one keep-alive POST, reads the 204 and then stays open,
idle. Once all are up it prints `OPEN ok=N failed=N` (run.sh then reads the server's memory), holds them --hold seconds more, counts
those the server has not closed, closes everything and prints:

  IDLE ok=N failed=N still_open=N
"""
import argparse
import asyncio
import multiprocessing as mp
import os
import signal
import ssl
import sys
import time


async def one(args, ctx, req, sem):
    async with sem:
        try:
            r, w = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", args.port, ssl=ctx, server_hostname="localhost"), 60
            )
            w.write(req)
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 60)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            return None
        if not head.startswith(b"HTTP/1.1 2"):
            w.close()
            return None
        return r, w


def wait_for_parent(measured, parent):
    """Until the parent says it has measured; gives up (and closes) if the parent is gone."""
    for _ in range(600):
        if measured.wait(1) or os.getppid() != parent:
            return


def child(args, n, req, out, measured):
    """One process: opens n connections, reports, waits until the parent has measured, reports again."""

    parent = os.getppid()

    async def run():
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        sem = asyncio.Semaphore(max(1, args.concurrency // args.procs))
        conns = await asyncio.gather(*(one(args, ctx, req, sem) for _ in range(n)))
        live = [c for c in conns if c is not None]
        out.put(("open", len(live), n - len(live)))
        await asyncio.get_running_loop().run_in_executor(None, wait_for_parent, measured, parent)
        still = sum(1 for r, _ in live if not r.at_eof())
        for _, w in live:
            w.close()
        out.put(("idle", still))

    asyncio.run(run())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--hold", type=float, default=5)
    p.add_argument("--body", required=True)
    p.add_argument("--bearer", required=True)
    args = p.parse_args()
    body = open(args.body, "rb").read()
    req = (
        "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {args.bearer}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    out, measured = mp.Queue(), mp.Event()
    shares = [args.n // args.procs + (i < args.n % args.procs) for i in range(args.procs)]
    # Stopped by run.sh (SIGTERM): exit normally, which terminates the daemonic children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    procs = [mp.Process(target=child, args=(args, k, req, out, measured), daemon=True) for k in shares if k]
    for pr in procs:
        pr.start()
    opened = [out.get(timeout=600) for _ in procs]
    ok, failed = sum(o[1] for o in opened), sum(o[2] for o in opened)
    print(f"OPEN ok={ok} failed={failed}", flush=True)
    time.sleep(args.hold)
    measured.set()
    still = sum(out.get(timeout=600)[1] for _ in procs)
    for pr in procs:
        pr.join()
    print(f"IDLE ok={ok} failed={failed} still_open={still}", flush=True)


if __name__ == "__main__":
    main()
