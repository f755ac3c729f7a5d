"""Streaming download benchmark: a query's whole result over `POST /v1/stream` to a client on
loopback (curl writing a file), beside DuckDB and chDB writing the same CSV to a local file.

Run through `bench/formats.sh stream`, which installs the tools, builds Forwarder and makes
the data. Each round runs every tool once per format in an order that rotates; the table
gives medians. Forwarder's time is curl's whole request (first byte to last, connection
included) and its peak RSS the server's VmHWM (a fresh server per run); a peer's time and
RSS are its whole process's (/usr/bin/time -v, Python's start and import included; the
statement alone is printed below the table).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from formats import HERE, PEERS, NotAvailable, Server, proc_status

# format → (Forwarder's FORMAT, the peers' name for it)
FORMATS = {"tsv": "TabSeparatedWithNames", "csv": "CSVWithNames"}
QUERY = "SELECT * FROM demo.ecommerce.data"


def timed(cmd):
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    rss_kb = next((int(l.rsplit(":", 1)[1]) for l in p.stderr.splitlines() if "Maximum resident set size" in l), 0)
    if p.returncode != 0:
        raise NotAvailable(f"{cmd[0]} exited {p.returncode}: {p.stderr.strip()[-300:]}")
    return wall, rss_kb, p.stdout


def lines(path):
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def forwarder(a, fmt, catalog):
    server = Server(a.bin, os.path.join(a.work, "stream"), catalog, "[worker]\nenabled = false\n")
    try:
        auth = server.wait_ready()
        out = os.path.join(a.work, "stream.out")
        wall, _, _ = timed(["curl", "-sS", "--fail", "-o", out, "-H", f"Authorization: {auth['Authorization']}",
                            "--data-binary", f"{QUERY} FORMAT {FORMATS[fmt]}", f"{server.api}/v1/stream"])
        rss_kb = proc_status(server.pid, "VmHWM")
        size, n = os.path.getsize(out), lines(out)
        os.remove(out)
        if n != a.rows + 1:
            raise NotAvailable(f"the stream held {n - 1} rows, not {a.rows}")
        return {"wall": wall, "bytes": size, "rss_kb": rss_kb}
    finally:
        server.stop()


def peer(a, engine, fmt):
    out = os.path.join(a.work, f"{engine}.out")
    wall, rss_kb, stdout = timed([a.python, os.path.join(HERE, "peer.py"), engine, f"to-file-{fmt}", a.parquet, out])
    size = os.path.getsize(out)
    os.remove(out)
    return {"wall": wall, "bytes": size, "rss_kb": rss_kb, "statement": float(stdout.strip().splitlines()[-1])}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--python", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--parquet", required=True)
    p.add_argument("--catalog-csv", required=True)
    p.add_argument("--catalog-parquet", required=True)
    p.add_argument("--sources", default="csv,parquet")
    p.add_argument("--peers", default="duckdb,chdb")
    p.add_argument("--formats", default="tsv,csv")
    a = p.parse_args()
    catalogs = {"csv": a.catalog_csv, "parquet": a.catalog_parquet}
    tools = [("forwarder", s) for s in a.sources.split(",") if s] + [(x, None) for x in a.peers.split(",") if x]
    formats = [f for f in a.formats.split(",") if f]
    results, failures = {}, {}
    load_before = os.getloadavg()[0]
    for round_ in range(a.runs):
        order = tools[round_ % len(tools):] + tools[:round_ % len(tools)]
        for fmt in formats:
            for tool in order:
                key = (fmt, tool)
                try:
                    r = forwarder(a, fmt, catalogs[tool[1]]) if tool[0] == "forwarder" else peer(a, tool[0], fmt)
                    results.setdefault(key, []).append(r)
                    print(f"round {round_ + 1} {fmt} {tool[0]} {tool[1] or ''}: {r['wall']:.2f} s, "
                          f"{r['bytes'] / 1e6:.0f} MB, {r['rss_kb'] // 1024} MiB", file=sys.stderr)
                except NotAvailable as e:
                    failures[key] = str(e)

    print(f"Streaming {a.rows:,} rows to a file on this machine ({os.cpu_count()} cores), {a.runs} rounds, medians")
    print("MB/s: Forwarder's output size over each tool's time (the same rows; a peer's own output size is listed)")
    print("| format | tool | time | MB/s (range) | output | peak RSS | × faster peer |")
    print("|---|---|---|---|---|---|---|")
    for fmt in formats:
        # One numerator per format (Forwarder's output size), so that a tool writing shorter
        # timestamps is not counted slower: the rate says rows per second in MB of the same text.
        ours = [r["bytes"] for t in tools if t[0] == "forwarder" for r in results.get((fmt, t), [])]
        for t in tools:
            for r in results.get((fmt, t), []):
                r["ref"] = statistics.median(ours) if ours else r["bytes"]
        best_peer = max((statistics.median(r["ref"] / r["wall"] for r in results[(fmt, t)])
                         for t in tools if t[0] != "forwarder" and (fmt, t) in results), default=None)
        for tool in tools:
            key = (fmt, tool)
            name = f"Forwarder /v1/stream ({tool[1]} table) → curl" if tool[0] == "forwarder" else PEERS[tool[0]] + " → file"
            if key not in results:
                print(f"| {FORMATS[fmt]} | {name} | n/a | | | | |")
                continue
            rs = results[key]
            rates = [r["ref"] / r["wall"] / 1e6 for r in rs]
            rate = statistics.median(rates)
            ratio = f"{rate * 1e6 / best_peer:.2f}×" if best_peer else ""
            print(f"| {FORMATS[fmt]} | {name} | {statistics.median(r['wall'] for r in rs):.2f} s | "
                  f"{rate:.0f} ({min(rates):.0f}–{max(rates):.0f}) | {rs[0]['bytes'] / 1e6:.0f} MB | "
                  f"{max(r['rss_kb'] for r in rs) // 1024} MiB | {ratio} |")
    for (fmt, tool), rs in sorted(results.items(), key=lambda kv: str(kv[0])):
        if tool[0] != "forwarder":
            print(f"{PEERS[tool[0]]} {fmt}: the statement alone took {statistics.median(r['statement'] for r in rs):.2f} s")
    for (fmt, tool), why in failures.items():
        print(f"n/a {fmt} {tool}: {why}")
    print(f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
