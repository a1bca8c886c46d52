#!/usr/bin/env python3
"""The report of loadtest/run.sh: the table on stdout, and the generated part of docs/performance.md.

Reads RESULT lines (one per run: scenario, target, round, requests answered, duration, server CPU ticks, more
key=value pairs), META lines (machine, versions, fsync latency) and CMD lines (the exact client commands). Only
the text between `<!-- loadtest:begin -->` and `<!-- loadtest:end -->` of the doc is rewritten.
"""
import argparse
import os
import statistics

BEGIN, END = "<!-- loadtest:begin -->", "<!-- loadtest:end -->"
TARGETS = ("tollgate", "nginx")
# scenario -> (label, what the figure is, unit, what the ratio compares)
ROWS = {
    "1a": ("1 HTTP/1.1 keep-alive, 32 conns", "rate", "req/s", "rate"),
    "1b": ("1 HTTP/1.1 keep-alive, 128 conns", "rate", "req/s", "rate"),
    "2": ("2 h2, 64 conns x 10 streams", "rate", "req/s", "rate"),
    "3": ("3 one core each, 64 conns", "rate", "req/s", "cpu"),
    "4a": ("4 new conn/request, full TLS 1.3", "rate", "hs/s", "cpu"),
    "4b": ("4 new conn/request, resumed TLS 1.3", "rate", "hs/s", "cpu"),
    "4c": ("4 new conn/request, resumed TLS 1.2", "rate", "hs/s", "cpu"),
    "5": ("5 idle TLS conns: memory", "mem", "KiB/conn", "mem"),
    "6": ("6 fixed load (h2): p99 latency", "p99", "ms", "p99"),
    "7": ("7 vs nginx proxy_pass, 128 conns", "rate", "req/s", "rate"),
}
RATIO_NAME = {"rate": "throughput", "cpu": "CPU/req", "mem": "memory", "p99": "p99"}


def parse_kv(line):
    out, last = {}, None
    for tok in line.split(" ")[1:]:
        if "=" in tok:
            last, v = tok.split("=", 1)
            out[last] = v
        elif last is not None:
            out[last] += " " + tok
    return out


def load(path, prefix):
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith(prefix + " "):
                rows.append(parse_kv(line.rstrip("\n")))
    return rows


def run_figures(r):
    ok, dur = int(r["ok"]), int(r["dur_us"])
    cpu_us = int(r["cpu_ticks"]) * 1e6 / int(r["hz"])
    fig = {"cpu": cpu_us / ok if ok else 0.0, "rate": ok / (dur / 1e6) if dur else 0.0}
    if "pss_after_kib" in r:
        fig["mem"] = (int(r["pss_after_kib"]) - int(r["pss_before_kib"])) / ok
        fig["rss"] = (int(r["rss_after_kib"]) - int(r["rss_before_kib"])) / ok
    for k in ("p50_us", "p99_us", "p999_us"):
        if k in r:
            fig[k] = int(r[k]) / 1000
    if "p99" not in fig and "p99_us" in r:
        fig["p99"] = int(r["p99_us"]) / 1000
    return fig


def fmt(v, unit):
    if unit == "ms":
        return f"{v:.2f}"
    if unit == "KiB/conn":
        return f"{v:.1f}"
    return f"{v:,.0f}".replace(",", " ")


def summarize(results):
    table = {}
    for scn in ROWS:
        per = {t: [run_figures(r) for r in results if r["scn"] == scn and r["target"] == t] for t in TARGETS}
        if not per["tollgate"] or not per["nginx"]:
            continue
        _, what, unit, ratio_of = ROWS[scn]
        mean = {t: {k: statistics.mean(f[k] for f in per[t]) for k in per[t][0]} for t in TARGETS}
        n = mean["nginx"][ratio_of]
        ratio = mean["tollgate"][ratio_of] / n if n else float("nan")
        table[scn] = {"per": per, "mean": mean, "ratio": ratio, "what": what, "unit": unit, "ratio_of": ratio_of}
    return table


def text_table(table):
    head = ["scenario", "Tollgate", "nginx", "TG CPU µs/req", "nginx CPU µs/req", "ratio TG/nginx"]
    lines = []
    for scn, row in table.items():
        cells = [ROWS[scn][0]]
        for t in TARGETS:
            cells.append(" / ".join(fmt(f[row["what"]], row["unit"]) for f in row["per"][t]) + " " + row["unit"])
        for t in TARGETS:
            cells.append(" / ".join(f"{f['cpu']:.1f}" for f in row["per"][t]))
        cells.append(f"{row['ratio']:.2f} ({RATIO_NAME[row['ratio_of']]})")
        lines.append(cells)
    return head, lines


def targets(table, meta):
    def r(scn):
        return table[scn]["ratio"] if scn in table else None

    fsync_s = int(meta.get("fsync_median_us", "0")) / 1e6
    bound = 32 / fsync_s if fsync_s else None
    share = table["1a"]["mean"]["tollgate"]["rate"] / bound if "1a" in table and bound else None
    return [
        ("HTTP/1.1 keep-alive, 128 connections: throughput >= 0.8x nginx `return 204`", r("1b"), ">=", 0.8),
        ("HTTP/2 multiplexed: throughput >= 0.8x nginx `return 204`", r("2"), ">=", 0.8),
        ("one core each: server CPU per request <= 1.5x nginx", r("3"), "<=", 1.5),
        ("32 connections: throughput >= 70% of the connections / fsync latency bound", share, ">=", 0.7),
        ("128 connections: throughput >= 2x nginx proxy_pass to a keep-alive upstream", r("7"), ">=", 2.0),
        ("server CPU per full handshake <= 0.7x nginx", r("4a"), "<=", 0.7),
        ("memory per idle TLS connection <= 1.0x nginx", r("5"), "<=", 1.0),
        ("p99 latency at a fixed load (50% of nginx's h2 max) <= nginx p99", r("6"), "<=", 1.0),
    ], bound, share


def verdict(v, op, want):
    if v is None:
        return "not measured"
    ok = v >= want if op == ">=" else v <= want
    return "met" if ok else "NOT met"


def markdown(table, meta, commands, tgt, bound, share):
    m = meta
    out = [BEGIN, "", "## Generated by `loadtest/run.sh`", ""]
    out.append(
        f"Mode `{m.get('mode')}`: {m.get('duration_s')} s per run, {m.get('rounds')} round(s) per scenario, "
        f"Tollgate and nginx alternating ({' '.join(['A B'] * int(m.get('rounds', 1)))}), "
        f"each run on a freshly started server. "
        f"Scenarios {m.get('scenarios')}. Run took {m.get('time_total', '?')} s ("
        + ", ".join(f"scenario {k[len('time_scenario_'):]}: {v} s" for k, v in m.items() if k.startswith("time_scenario_"))
        + ")."
    )
    out += ["", "### Machine", ""]
    for k, label in [
        ("cpu", "CPU"), ("cores", "cores"), ("mem", "memory"), ("kernel", "kernel"), ("os", "OS"),
        ("spool_fs", "spool filesystem"), ("nginx", "nginx"), ("wrk", "wrk"), ("h2load", "h2load"),
        ("openssl", "openssl"), ("python", "python3"), ("tollgate", "tollgate commit"), ("binary", "tollgate binary"),
    ]:
        out.append(f"- {label}: {m.get(k, '?')}")
    out.append(f"- CPU busy in the second before the load (servers stopped): {m.get('busy_pct', '?')}%"
               + (" — **machine busy: the numbers are skewed**" if int(m.get("busy_pct", "0")) >= 15 else ""))
    for t in ("tollgate", "nginx", "nginx-proxy"):
        if f"preflight_{t}" in m:
            out.append(f"- preflight {t}: {m[f'preflight_{t}']}")
    out += ["", "### fsync latency of the spool's disk", ""]
    med, p99 = int(m.get("fsync_median_us", 0)), int(m.get("fsync_p99_us", 0))
    out.append(f"8 KiB append + `fdatasync`, {m.get('fsync_n')} times (`loadtest/fsync.py`): "
               f"median {med / 1000:.3f} ms, p99 {p99 / 1000:.3f} ms before the scenarios"
               + (f"; after them median {int(m['fsync_after_median_us']) / 1000:.3f} ms, "
                  f"p99 {int(m['fsync_after_p99_us']) / 1000:.3f} ms." if "fsync_after_median_us" in m else "."))
    if bound:
        line = (f"Bound at 32 connections (one request outstanding each, one fsync per request): "
                f"32 / {med / 1000:.3f} ms = {fmt(bound, 'req/s')} req/s")
        if share is not None:
            line += f"; Tollgate reached {share * 100:.0f}% of it (scenario 1, 32 connections)."
        out.append(line)
    out += ["", "### Results", ""]
    head, lines = text_table(table)
    out.append("| " + " | ".join(head) + " |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for cells in lines:
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("Figures separated by ` / ` are the rounds; the ratio compares the means. CPU µs/req = the server's "
               "user + system CPU time during the run (all threads; nginx master + workers) divided by the requests "
               "(scenario 4: handshakes, each with one request; scenario 5: connections, each with one request).")
    if "6" in table:
        out += ["", f"Scenario 6 at {m.get('offered_rps', '?')} req/s offered (50% of nginx's h2 max "
                f"{m.get('nginx_h2_max', '?')} req/s), per round:", ""]
        out.append("| target | round | achieved req/s | p50 ms | p99 ms | p99.9 ms |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for t in TARGETS:
            for i, f in enumerate(table["6"]["per"][t], 1):
                out.append(f"| {t} | {i} | {f['rate']:.0f} | {f['p50_us']:.2f} | {f['p99_us']:.2f} | {f['p999_us']:.2f} |")
    if "5" in table:
        out += ["", "Scenario 5, RSS instead of Pss (KiB/conn, per round): " + "; ".join(
            f"{t} " + " / ".join(f"{f['rss']:.1f}" for f in table["5"]["per"][t]) for t in TARGETS) + "."]
    out += ["", "### Targets (issue #12)", ""]
    out.append("| target | measured | status |")
    out.append("|---|---:|---|")
    for name, v, op, want in tgt:
        shown = "—" if v is None else f"{v:.2f}"
        out.append(f"| {name} | {shown} | {verdict(v, op, want)} |")
    out += ["", "### Commands", ""]
    for scn, cmds in commands.items():
        out.append(f"- **{scn}** {cmds['title']}")
        for c in cmds["cmds"]:
            out.append(f"  - `{c}`")
    out += ["", END]
    return "\n".join(out) + "\n"


def read_commands(path):
    cmds = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            kind, _, rest = line.partition(" ")
            scn, _, text = rest.partition(" ")
            scn = scn.split("=", 1)[1]
            e = cmds.setdefault(scn, {"title": "", "cmds": []})
            if kind == "TITLE":
                e["title"] = text
            elif text not in e["cmds"]:
                e["cmds"].append(text)
    return cmds


def write_doc(path, generated):
    if os.path.exists(path):
        text = open(path).read()
    else:
        text = (
            "# Performance\n\nWhole-system numbers from `loadtest/run.sh` (see `loadtest/README.md`). The part between "
            "the loadtest markers is generated; everything else is written by hand and kept by the script.\n\n"
            "## Analysis\n\n(hand-written)\n\n"
        )
    if BEGIN in text and END in text:
        pre, rest = text.split(BEGIN, 1)
        post = rest.split(END, 1)[1]
        text = pre + generated.rstrip("\n") + post
    else:
        text = text.rstrip("\n") + "\n\n" + generated
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--commands", required=True)
    p.add_argument("--doc", required=True)
    a = p.parse_args()
    results = load(a.results, "RESULT")
    meta = {}
    for m in load(a.meta, "META"):
        meta.update(m)
    table = summarize(results)
    tgt, bound, share = targets(table, meta)
    head, lines = text_table(table)
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    print()
    print("==== Tollgate vs nginx, " + f"{meta.get('cores')} cores, mode {meta.get('mode')}, "
          f"{meta.get('duration_s')} s per run, rounds shown as r1 / r2")
    for cells in [head] + lines:
        print(" | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    if "6" in table:
        print(f"scenario 6 at {meta.get('offered_rps')} req/s offered: " + "; ".join(
            f"{t} achieved " + " / ".join(f"{f['rate']:.0f}" for f in table["6"]["per"][t]) + " req/s, p50/p99/p99.9 ms "
            + " / ".join(f"{f['p50_us']:.2f} {f['p99_us']:.2f} {f['p999_us']:.2f}" for f in table["6"]["per"][t])
            for t in TARGETS))
    med = int(meta.get("fsync_median_us", 0))
    print(f"fsync (8 KiB + fdatasync) before the scenarios: median {med / 1000:.3f} ms, "
          f"p99 {int(meta.get('fsync_p99_us', 0)) / 1000:.3f} ms"
          + (f" (after: median {int(meta['fsync_after_median_us']) / 1000:.3f} ms)" if "fsync_after_median_us" in meta else "")
          + (f"; 32 conns / fsync = {bound:.0f} req/s, Tollgate at {share * 100:.0f}%" if bound and share else ""))
    for name, v, op, want in tgt:
        print(f"target: {name}: {'—' if v is None else f'{v:.2f}'} -> {verdict(v, op, want)}")
    if int(meta.get("busy_pct", "0")) >= 15:
        print(f"WARNING: machine busy ({meta['busy_pct']}% before the load): the numbers are skewed")
    write_doc(a.doc, markdown(table, meta, read_commands(a.commands), tgt, bound, share))


if __name__ == "__main__":
    main()
