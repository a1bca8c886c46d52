#!/usr/bin/env python3
"""Percentiles of h2load --log-file (one line per request: start time, status, response time in µs), for
loadtest/run.sh scenario 6. Prints `LATENCY n=N bad=N p50_us=N p99_us=N p999_us=N max_us=N`."""
import sys

lat, bad = [], 0
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            if not parts[1].startswith("2"):
                bad += 1
                continue
            lat.append(int(parts[2]))
lat.sort()
n = len(lat)


def pct(q):
    return lat[min(n - 1, int(n * q))] if n else 0


print(f"LATENCY n={n} bad={bad} p50_us={pct(0.5)} p99_us={pct(0.99)} p999_us={pct(0.999)} max_us={lat[-1] if n else 0}")
