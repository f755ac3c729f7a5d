"""Side-by-side export benchmark: Forwarder, DuckDB, chDB and the compressors' own limits.

Run through bench/formats.sh, which installs the tools, builds Forwarder and makes the data.
Every case exports the same rows to LocalStack; each round runs every tool once per case, in
an order that rotates from round to round, and the table gives medians over the rounds.
Standard library only (the peers run in bench/.venv as separate processes).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))

# case → (title, extension of the peers' object, Forwarder's destination params)
CASES = {
    "csv-zstd": ("CSV zstd", "csv.zst", {"file.format": "csv", "format": "zstd"}),
    "csv-gzip6": ("CSV gzip 6", "csv.gz", {"file.format": "csv", "format": "gzip"}),
    "parquet-zstd": ("Parquet zstd", "parquet", {"file.format": "parquet", "parquet.compression": "zstd"}),
    "jsonl-zstd": ("JSON Lines zstd", "jsonl.zst", {"file.format": "jsonl", "format": "zstd"}),
}
# What Forwarder must reach (issue 11, DESIGN §7): case → (factor, against what)
TARGETS = {"csv-zstd": (1.3, "peer"), "parquet-zstd": (1.2, "peer"), "csv-gzip6": (1.0, "limit")}
LIMITS = {"csv-zstd": ("zstd -3 -T2", ["zstd", "-3", "-T2", "-q", "-c"]),
          "csv-gzip6": ("pigz -6 -p2", ["pigz", "-6", "-p", "2", "-c"])}
PEERS = {"duckdb": "DuckDB 1.5.5", "chdb": "chDB 4.4"}


class NotAvailable(Exception):
    """Forwarder refused or failed the case: printed as n/a, with the reason below the table."""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(method, url, body=None, headers=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A fresh Forwarder server (own data dir, so its own job store and token) on a free port."""

    def __init__(self, bin_, work, catalog, extra_config=""):
        self.data_dir = os.path.join(work, "data")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        os.makedirs(work, exist_ok=True)
        port = free_port()
        self.api = f"http://127.0.0.1:{port}"
        config = os.path.join(work, "bench.toml")
        with open(config, "w") as f:
            f.write(f'listen = "127.0.0.1:{port}"\ndata_dir = "{self.data_dir}"\ncatalog = "{catalog}"\n{extra_config}')
        self.log_path = os.path.join(work, "server.log")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        env.pop("FORWARDER_BIN", None)  # not a server setting: it would refuse to start
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([bin_, "serve", "--config", config], stdout=log, stderr=log, env=env)
        self.pid = self.process.pid

    def wait_ready(self, what=""):
        """Waits for /healthz; the bearer token's header."""
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                tail = open(self.log_path).read().strip().splitlines()[-1:] or ["(no log)"]
                raise NotAvailable(f"the server did not start{what}: {tail[0][:300]}")
            try:
                if http("GET", f"{self.api}/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise NotAvailable("the server did not answer /healthz within 120 s")
            time.sleep(0.1)
        token = open(os.path.join(self.data_dir, "initial-token")).read().strip()
        return {"Authorization": f"Bearer {token}"}

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Bench:
    def __init__(self, a):
        self.a = a
        self.endpoint = a.endpoint.rstrip("/")
        self.bucket = f"bench-{int(time.time())}-{uuid.uuid4().hex[:6]}"
        status, body, _ = http("PUT", f"{self.endpoint}/{self.bucket}")
        if status >= 300:
            sys.exit(f"cannot create bucket {self.bucket} on {self.endpoint}: {status} {body[:200]!r}")
        self.csv_bytes = os.path.getsize(a.csv)

    # ---- S3 helpers (LocalStack takes unsigned requests) ----
    def object_size(self, key):
        status, _, headers = http("HEAD", f"{self.endpoint}/{self.bucket}/{key}")
        if status != 200:
            raise NotAvailable(f"object {key} missing after the export (HTTP {status})")
        return int(headers["Content-Length"])

    def delete(self, key):
        # The stored objects are not needed after they are measured; LocalStack keeps them in memory.
        http("DELETE", f"{self.endpoint}/{self.bucket}/{key}")

    def drop_bucket(self):
        http("DELETE", f"{self.endpoint}/{self.bucket}")

    # ---- Forwarder: a fresh server (and job store) per run, the job timed from submission ----
    def forwarder(self, source, case, catalog):
        server = Server(self.a.bin, os.path.join(self.a.work, "fwd"), catalog,
                        "[worker]\ncompression_level = 6\nzstd_level = 3\n"
                        '[s3]\nallowed_endpoints = ["127.0.0.1"]\n')
        try:
            return self._forwarder_job(server, source, case)
        finally:
            server.stop()

    def _forwarder_job(self, server, source, case):
        api = server.api
        auth = server.wait_ready(f" with the {source} table")
        params = {"aws.bucket": self.bucket, "aws.region": "us-east-1", "aws.accesskey": "test",
                  "aws.secretkey": "test", "aws.endpoint": self.endpoint, "aws.pathstyle": True}
        params.update(CASES[case][2])
        start_s = 1767225600
        body = {"query": "SELECT * FROM demo.ecommerce.data", "from": start_s,
                "to": start_s + (self.a.rows * 40) // 1000 + 1,
                "destination": {"type": "s3", "params": params}}
        samples = []
        stop = threading.Event()

        def sample():  # RSS every 0.2 s, to tell a steady level from a peak
            while not stop.is_set():
                try:
                    samples.append(proc_status(server.pid, "VmRSS"))
                except OSError:
                    return
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cpu0 = proc_cpu_seconds(server.pid)
        t0 = time.monotonic()
        status, answer, _ = http("POST", f"{api}/search/query", body, auth)
        if status != 200:
            stop.set()
            try:
                msg = json.loads(answer).get("msg", answer.decode()[:200])
            except ValueError:
                msg = answer.decode(errors="replace")[:200]
            raise NotAvailable(f"refused (HTTP {status}): {msg}")
        job_id = json.loads(answer)["object"]["id"]
        # Polled every 50 ms, so that the time is the job's own.
        while True:
            status, answer, _ = http("GET", f"{api}/search/job/{job_id}", headers=auth)
            job = json.loads(answer)["object"] if status == 200 else {}
            if job.get("status") in ("COMPLETED", "FAILED", "STOPPED", "REMOVED"):
                break
            if time.monotonic() - t0 > self.a.timeout:
                stop.set()
                raise NotAvailable(f"the job did not finish within {self.a.timeout} s")
            time.sleep(0.05)
        wall = time.monotonic() - t0
        peak_kb = proc_status(server.pid, "VmHWM")
        cpu = proc_cpu_seconds(server.pid) - cpu0
        stop.set()
        sampler.join()
        parts = job.get("extra", {}).get("parts", [])
        for p in parts:
            self.delete(p["key"])
        if job["status"] != "COMPLETED":
            raise NotAvailable(f"job {job['status']}: {' '.join(job.get('error', []))[:300]}")
        if job.get("eventsSent") != self.a.rows:
            raise NotAvailable(f"job sent {job.get('eventsSent')} rows, not {self.a.rows}")
        samples.sort()
        return {"wall": wall, "stored": sum(p["bytes"] for p in parts), "rss_kb": peak_kb, "cpu": cpu,
                "parts": len(parts), "rss_median_kb": samples[len(samples) // 2] if samples else 0,
                "rss_p90_kb": samples[len(samples) * 9 // 10] if samples else 0}

    # ---- a peer or a limit: one whole process under /usr/bin/time -v ----
    def timed(self, cmd, stdout=subprocess.PIPE):
        t0 = time.monotonic()
        p = subprocess.run(["/usr/bin/time", "-v"] + cmd, stdout=stdout, stderr=subprocess.PIPE, text=True)
        wall = time.monotonic() - t0
        rss_kb = 0
        for line in p.stderr.splitlines():
            if "Maximum resident set size" in line:
                rss_kb = int(line.rsplit(":", 1)[1])
        if p.returncode != 0:
            err = [l for l in p.stderr.splitlines() if l.strip() and not l.startswith("\t")]
            raise NotAvailable(f"{cmd[0]} exited {p.returncode}: {' '.join(err)[-300:]}")
        return wall, rss_kb, p.stdout

    def peer(self, engine, case):
        key = f"{engine}-{uuid.uuid4().hex[:8]}.{CASES[case][1]}"
        wall, rss_kb, out = self.timed([self.a.python, os.path.join(HERE, "peer.py"), engine, case,
                                        self.a.parquet, self.endpoint, self.bucket, key])
        stored = self.object_size(key)
        self.delete(key)
        return {"wall": wall, "stored": stored, "rss_kb": rss_kb, "statement": float(out.strip().splitlines()[-1])}

    def limit(self, case):
        out_path = os.path.join(self.a.work, "limit.out")
        with open(out_path, "w") as out:
            wall, rss_kb, _ = self.timed(LIMITS[case][1] + [self.a.csv], stdout=out)
        stored = os.path.getsize(out_path)
        os.remove(out_path)
        return {"wall": wall, "stored": stored, "rss_kb": rss_kb}


def mbps(bench, wall):
    return bench.csv_bytes / 1e6 / wall


def tools_for(a, case):
    tools = [("fwd", s) for s in a.sources]
    if not a.forwarder_only:
        tools += [("peer", p) for p in a.peers if not (case == "jsonl-zstd" and not a.jsonl_peers)]
        if case in LIMITS and a.limits:
            tools.append(("limit", case))
    return tools


def label(tool):
    kind, what = tool
    if kind == "fwd":
        return f"Forwarder ({what} table)"
    if kind == "peer":
        return PEERS[what]
    return f"`{LIMITS[what][0]}`"


def run_all(a, bench):
    results = {}  # (case, tool) → list of measurements, or a NotAvailable reason (str)
    for r in range(a.runs):
        for case in a.cases:
            tools = tools_for(a, case)
            if not tools:
                continue
            k = r % len(tools)
            for tool in tools[k:] + tools[:k]:  # the order rotates from round to round
                key = (case, tool)
                if isinstance(results.get(key), str):
                    continue
                kind, what = tool
                try:
                    if kind == "fwd":
                        catalog = a.catalog_csv if what == "csv" else a.catalog_parquet
                        m = bench.forwarder(what, case, catalog)
                    elif kind == "peer":
                        m = bench.peer(what, case)
                    else:
                        m = bench.limit(case)
                except NotAvailable as e:
                    results[key] = str(e)
                    print(f"  round {r + 1}  {CASES[case][0]:<16} {label(tool):<26} n/a: {e}", file=sys.stderr)
                    continue
                results.setdefault(key, []).append(m)
                print(f"  round {r + 1}  {CASES[case][0]:<16} {label(tool):<26} {m['wall']:6.2f} s "
                      f"{mbps(bench, m['wall']):6.1f} MB/s  {m['rss_kb'] / 1024:6.0f} MiB", file=sys.stderr)
    return results


def fmt_mib(kb):
    return f"{kb / 1024:,.0f} MiB"


def report(a, bench, results, load_before):
    csv_mb = bench.csv_bytes / 1e6
    print()
    print(f"{a.rows:,} rows, {csv_mb:,.0f} MB of CSV; {a.runs} rounds, tools alternating; "
          f"{os.cpu_count()} cores; load average before {load_before}, after {os.getloadavg()[0]:.2f}")
    print("MB/s = the CSV's size over the wall time (median, with the range over the rounds); Forwarder's time")
    print("runs from the submission to COMPLETED (fresh server per run), a peer's or limit's is the whole process.")
    print("Peak RSS: Forwarder's server VmHWM, the others' /usr/bin/time -v maximum; the highest over the rounds.")
    print()
    print("| export | tool | time | CSV MB/s | stored | peak RSS | × best peer |")
    print("|---|---|---|---|---|---|---|")
    notes, medians = [], {}
    for (case, tool), res in results.items():
        if isinstance(res, list):
            medians[(case, tool)] = mbps(bench, statistics.median(m["wall"] for m in res))
    for case in a.cases:
        best_peer = max((v for (c, t), v in medians.items() if c == case and t[0] == "peer"), default=None)
        for tool in tools_for(a, case):
            res = results.get((case, tool))
            if res is None:
                continue
            if isinstance(res, str):
                print(f"| {CASES[case][0]} | {label(tool)} | n/a | n/a | n/a | n/a | |")
                notes.append(f"{label(tool)}, {CASES[case][0]}: {res}")
                continue
            walls = sorted(m["wall"] for m in res)
            med = statistics.median(walls)
            rng = f" ({mbps(bench, walls[-1]):.0f}–{mbps(bench, walls[0]):.0f})" if len(walls) > 1 else ""
            stored = statistics.median(m["stored"] for m in res)
            ratio = f"{mbps(bench, med) / best_peer:.2f}×" if best_peer else ""
            print(f"| {CASES[case][0]} | {label(tool)} | {med:.2f} s | {mbps(bench, med):.0f}{rng} | "
                  f"{stored / 1e6:,.1f} MB ({stored / bench.csv_bytes * 100:.1f}%) | "
                  f"{fmt_mib(max(m['rss_kb'] for m in res))} | {ratio} |")
    # Targets (issue 11): Forwarder against the best peer, or against the limit for gzip.
    lines = []
    for case in a.cases:
        if case not in TARGETS:
            continue
        factor, against = TARGETS[case]
        if against == "peer":
            ref = max(((v, t) for (c, t), v in medians.items() if c == case and t[0] == "peer"), default=None)
        else:
            ref = next(((v, t) for (c, t), v in medians.items() if c == case and t[0] == "limit"), None)
        for source in a.sources:
            v = medians.get((case, ("fwd", source)))
            if v is None or ref is None:
                lines.append(f"| {CASES[case][0]} | Forwarder ({source} table) | ≥ {factor}× {'the best peer' if against == 'peer' else 'the limit'} | n/a | |")
                continue
            got = v / ref[0]
            lines.append(f"| {CASES[case][0]} | Forwarder ({source} table) | ≥ {factor}× {label(ref[1])} | "
                         f"{got:.2f}× | {'met' if got >= factor else 'not met'} |")
    if lines:
        print()
        print("| export | who | target | reached | |")
        print("|---|---|---|---|---|")
        print("\n".join(lines))
    # Forwarder's details: CPU, parts, RSS while running.
    details = []
    for (case, tool), res in results.items():
        if tool[0] == "fwd" and isinstance(res, list):
            cpu = statistics.median(m["cpu"] for m in res)
            med = statistics.median(m["wall"] for m in res)
            details.append(f"  {label(tool)}, {CASES[case][0]}: {res[0]['parts']} part(s), server CPU {cpu:.1f} s "
                           f"({cpu / med:.2f} cores), RSS while running median "
                           f"{fmt_mib(statistics.median(m['rss_median_kb'] for m in res))} / p90 "
                           f"{fmt_mib(statistics.median(m['rss_p90_kb'] for m in res))}")
        if tool[0] == "peer" and isinstance(res, list):
            st = statistics.median(m["statement"] for m in res)
            details.append(f"  {label(tool)}, {CASES[case][0]}: the statement alone {st:.2f} s "
                           f"({csv_mb / st:.0f} MB/s); the rest is Python's start and import")
    if details:
        print()
        print("Details (medians):")
        print("\n".join(details))
    if notes:
        print()
        print("n/a:")
        for n in notes:
            print(f"  {n}")


def flat(a, bench_for_rows):
    """Forwarder's peak RSS over row counts (CSV zstd by default): it must not grow with the result."""
    rows_list = a.flat_rows
    out = {}
    for r in range(a.runs):
        for rows, bench, catalogs in bench_for_rows:
            for source in a.sources:
                for case in a.cases:
                    key = (rows, source, case)
                    if isinstance(out.get(key), str):
                        continue
                    try:
                        m = bench.forwarder(source, case, catalogs[source])
                    except NotAvailable as e:
                        out[key] = str(e)
                        print(f"  {rows:,} rows {source} {case}: n/a: {e}", file=sys.stderr)
                        continue
                    out.setdefault(key, []).append((m, bench.csv_bytes))
                    print(f"  round {r + 1}  {rows:>11,} rows {source:<8} {case:<12} {m['wall']:6.2f} s  "
                          f"{m['rss_kb'] / 1024:6.0f} MiB", file=sys.stderr)
    print()
    print(f"Forwarder's peak RSS by result size ({a.runs} rounds; VmHWM of a fresh server per run; RSS sampled every 0.2 s)")
    print()
    print("| rows | table | export | CSV | time | CSV MB/s | stored | peak RSS | RSS while running (median / p90) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for source in a.sources:
        for case in a.cases:
            peaks = []
            for rows in rows_list:
                res = out.get((rows, source, case))
                if isinstance(res, str) or res is None:
                    print(f"| {rows:,} | {source} | {CASES[case][0]} | | n/a | n/a | n/a | n/a | {res or ''} |")
                    continue
                csv_bytes = res[0][1]
                walls = sorted(m["wall"] for m, _ in res)
                med = statistics.median(walls)
                peak = max(m["rss_kb"] for m, _ in res)
                peaks.append(peak)
                stored = statistics.median(m["stored"] for m, _ in res)
                print(f"| {rows:,} | {source} | {CASES[case][0]} | {csv_bytes / 1e6:,.0f} MB | {med:.2f} s | "
                      f"{csv_bytes / 1e6 / med:.0f} | {stored / 1e6:,.1f} MB | {fmt_mib(peak)} | "
                      f"{fmt_mib(statistics.median(m['rss_median_kb'] for m, _ in res))} / "
                      f"{fmt_mib(statistics.median(m['rss_p90_kb'] for m, _ in res))} |")
            if len(peaks) > 1:
                print(f"|  | {source} | {CASES[case][0]} | | | | | largest / smallest: "
                      f"{(max(peaks) / min(peaks) - 1) * 100:+.1f}% (target ≤ +10%) | |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--python", required=True, help="bench/.venv's python, for the peers")
    p.add_argument("--work", required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--csv", help="the demo table's CSV file (its size is the MB/s numerator)")
    p.add_argument("--parquet", help="the same rows as Parquet, for the peers")
    p.add_argument("--catalog-csv")
    p.add_argument("--catalog-parquet")
    p.add_argument("--sources", default="csv,parquet")
    p.add_argument("--cases", default="csv-zstd,csv-gzip6,parquet-zstd,jsonl-zstd")
    p.add_argument("--peers", default="duckdb,chdb")
    p.add_argument("--no-limits", dest="limits", action="store_false")
    p.add_argument("--jsonl-peers", action="store_true", help="run the peers on JSON Lines zstd too")
    p.add_argument("--timeout", type=int, default=900)
    p.add_argument("--flat", nargs="*", type=int, help="flatness mode: these row counts, Forwarder only")
    p.add_argument("--flat-data", nargs="*", default=[],
                   help="per row count: CSV,CATALOG_CSV,CATALOG_PARQUET")
    a = p.parse_args()
    a.sources = [s for s in a.sources.split(",") if s]
    a.cases = [c for c in a.cases.split(",") if c]
    a.peers = [x for x in a.peers.split(",") if x]
    for c in a.cases:
        if c not in CASES:
            sys.exit(f"unknown case {c}: {', '.join(CASES)}")
    a.forwarder_only = False
    os.makedirs(a.work, exist_ok=True)
    load_before = f"{os.getloadavg()[0]:.2f}"
    if a.flat is not None:
        a.flat_rows = a.flat
        benches = []
        for rows, spec in zip(a.flat, a.flat_data):
            csv, cat_csv, cat_parquet = spec.split(",")
            b = argparse.Namespace(**vars(a))
            b.rows, b.csv = rows, csv
            benches.append((rows, Bench(b), {"csv": cat_csv, "parquet": cat_parquet}))
        try:
            flat(a, benches)
        finally:
            for _, b, _ in benches:
                b.drop_bucket()
        print(f"\nload average before {load_before}, after {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores")
        return
    bench = Bench(a)
    try:
        results = run_all(a, bench)
    finally:
        bench.drop_bucket()
    report(a, bench, results, load_before)


if __name__ == "__main__":
    main()
