#!/usr/bin/env python3
"""fsync latency of the disk under DIR, for loadtest/run.sh: N times append 8 KiB and fdatasync, as the spool
commits a batch. Prints `FSYNC n=N median_us=N p99_us=N`."""
import os
import sys
import time

d, n = sys.argv[1], int(sys.argv[2])
path = os.path.join(d, "fsync-probe.bin")
block = os.urandom(8192)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
times = []
try:
    for _ in range(n):
        t = time.perf_counter_ns()
        os.write(fd, block)
        os.fdatasync(fd)
        times.append((time.perf_counter_ns() - t) // 1000)
finally:
    os.close(fd)
    os.unlink(path)
times.sort()
print(f"FSYNC n={n} median_us={times[n // 2]} p99_us={times[min(n - 1, (n * 99) // 100)]}")
