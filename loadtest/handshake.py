#!/usr/bin/env python3
"""A new TLS connection per request, for loadtest/run.sh scenario 4.

Each of --procs processes loops for --seconds: connect to 127.0.0.1:PORT, TLS handshake (with --resume, offering
the session its previous connection received), one POST with `Connection: close`, read the response until the
server closes. Python's `ssl` resumes only when given `session=`, so without --resume every handshake is a full
one; `session_reused` tells which ones really resumed, and run.sh checks the count. Prints one line:

  HANDSHAKE connections=N ok=N reused=N errors=N duration_us=N version=TLSv1.3
"""
import argparse
import multiprocessing as mp
import signal
import socket
import ssl
import sys
import time


def request(body_path, bearer):
    body = open(body_path, "rb").read()
    head = (
        "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {bearer}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def context(version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The certificate was verified by run.sh's preflight; here only the server's cost is of interest.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    v = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = v
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def read_to_eof(s):
    data = b""
    while True:
        try:
            chunk = s.recv(16384)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
            break  # a server may close without close_notify after `Connection: close`
        if not chunk:
            break
        data += chunk
    return data


def worker(args, req, out):
    ctx = context(args.tls)
    deadline = time.monotonic() + args.seconds
    sess, n, ok, reused, errors, version = None, 0, 0, 0, 0, ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", args.port), timeout=10) as raw:
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with ctx.wrap_socket(raw, server_hostname="localhost", session=sess) as s:
                    n += 1
                    reused += s.session_reused
                    version = s.version()
                    s.sendall(req)
                    resp = read_to_eof(s)
                    if resp.startswith(b"HTTP/1.1 2"):
                        ok += 1
                    else:
                        errors += 1
                    if args.resume:
                        sess = s.session  # TLS 1.3: the ticket arrived with the response
        except (OSError, ssl.SSLError):
            errors += 1
    out.put((n, ok, reused, errors, version))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--procs", type=int, default=8)
    p.add_argument("--tls", choices=["1.2", "1.3"], default="1.3")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--body", required=True)
    p.add_argument("--bearer", required=True)
    args = p.parse_args()
    req = request(args.body, args.bearer)
    out = mp.Queue()
    t0 = time.monotonic()
    # Stopped by run.sh (SIGTERM): exit normally, which terminates the daemonic children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    procs = [mp.Process(target=worker, args=(args, req, out), daemon=True) for _ in range(args.procs)]
    for pr in procs:
        pr.start()
    results = [out.get(timeout=args.seconds + 60) for _ in procs]
    for pr in procs:
        pr.join()
    dur = time.monotonic() - t0
    tot = [sum(r[i] for r in results) for i in range(4)]
    version = ",".join(sorted({r[4] for r in results if r[4]})) or "none"
    print(
        f"HANDSHAKE connections={tot[0]} ok={tot[1]} reused={tot[2]} errors={tot[3]} "
        f"duration_us={int(dur * 1e6)} version={version}",
        flush=True,
    )


if __name__ == "__main__":
    main()
