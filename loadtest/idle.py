#!/usr/bin/env python3
"""N idle keep-alive TLS connections, for loadtest/run.sh scenario 5.

Opens --n connections to 127.0.0.1:PORT (at most --concurrency handshakes at a time); each does the TLS
handshake (ALPN http/1.1) and one keep-alive POST, reads the 204 and then stays open, idle. Once all are up it
prints `OPEN ok=N failed=N` (run.sh then reads the server's memory), holds them --hold seconds, counts those the
server has not closed, closes everything and prints:

  IDLE ok=N failed=N still_open=N
"""
import argparse
import asyncio
import ssl
import sys


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


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
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
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    sem = asyncio.Semaphore(args.concurrency)
    conns = await asyncio.gather(*(one(args, ctx, req, sem) for _ in range(args.n)))
    live = [c for c in conns if c is not None]
    failed = args.n - len(live)
    print(f"OPEN ok={len(live)} failed={failed}", flush=True)
    await asyncio.sleep(args.hold)
    still = sum(1 for r, _ in live if not r.at_eof())
    for _, w in live:
        w.close()
    print(f"IDLE ok={len(live)} failed={failed} still_open={still}", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
