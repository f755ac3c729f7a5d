#!/usr/bin/env python3
"""Compares cold release builds from their `cargo build --timings` reports.

    bench/build_time.py BASELINE.html RUN.html [RUN.html ...]

This machine's speed drifts by up to a quarter within a day, so a wall time alone does not
say whether a change made the build faster. Each run is also given at the baseline's speed:
its wall time scaled by how long a set of reference units took in it against the baseline.
The reference units are crates no build-time change here touches (DataFusion's execution
crates, Arrow, Parquet, zstd's C build, tokio, hyper, rustls), built with the same settings in
every run, so their time measures the machine, not the change.

The reports of the runs the README gives are in bench/build-timings/ (gzipped). A cold build to
compare: `CARGO_TARGET_DIR=$(mktemp -d) cargo build --release --timings`
(the report is under that directory's `cargo-timings/`).
"""

import gzip
import json
import re
import sys

REFERENCE = {
    "datafusion-physical-plan", "datafusion-functions", "datafusion-functions-aggregate",
    "datafusion-physical-expr", "datafusion-common", "datafusion-datasource",
    "datafusion-datasource-parquet", "datafusion-functions-window",
    "datafusion-functions-aggregate-common", "arrow-cast", "arrow-ord", "arrow-select",
    "arrow-arith", "arrow-string", "arrow-json", "arrow-row", "parquet", "zstd-sys",
    "regex-automata", "tokio", "rustls", "h2", "hyper",
}


def units(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as report:
        html = report.read()
    match = re.search(r"const UNIT_DATA = (\[.*?\]);\n", html, re.S)
    if not match:
        sys.exit(f"{path}: no UNIT_DATA (not a cargo --timings report?)")
    return json.loads(match.group(1))


def summary(path):
    data = units(path)
    wall = max(u["start"] + u["duration"] for u in data)
    cpu = sum(u["duration"] for u in data)
    reference = sum(
        u["duration"] for u in data
        if u["name"] in REFERENCE and u.get("target", "") in ("", "build-script (run)")
    )
    own = sum(u["duration"] for u in data if u["name"] == "forwarder" and u.get("target", "") == "")
    return wall, cpu, reference, own


def minutes(seconds):
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    base = summary(sys.argv[1])
    print("| run | wall | unit time | reference units | speed vs baseline | wall at baseline speed | Forwarder's crate |")
    print("|---|---|---|---|---|---|---|")
    for path in sys.argv[1:]:
        wall, cpu, reference, own = summary(path)
        factor = reference / base[2]
        print(
            f"| {path.rsplit('/', 1)[-1].removesuffix('.gz')} | {minutes(wall)} | {cpu:,.0f} s | {reference:,.0f} s "
            f"| {factor:.2f}× the time | {minutes(wall / factor)} ({wall / factor / base[0]:.0%} of baseline) "
            f"| {own:.0f} s |"
        )


if __name__ == "__main__":
    main()
