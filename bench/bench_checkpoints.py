#!/usr/bin/env python
"""What does a long history cost Jupyter's checkpoint calls, by ``max_checkpoints``?

Stores N versions of one notebook in a real S3 server (moto by default, ``--s3 seaweedfs``),
written by another client, so the server knows none of their metadata. Then, for each
``max_checkpoints`` value given (side by side, one freshly started ``jupyter server`` each),
times:

* ``list``: ``GET /api/contents/<path>/checkpoints`` (and the size of its answer);
* ``missing``: restoring a ``p-<save id>`` checkpoint that does not exist (404), the worst
  lookup: the save is looked for among the newest ``max_checkpoints`` versions, one HEAD
  each the first time (the HEADs' answers are cached, so the first run is reported apart).

Usage::

    python bench/bench_checkpoints.py [--versions 2000] [--caps 100,1000] [--runs 10]
                                      [--s3 moto|seaweedfs]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import JupyterSubprocess, bench_server_config
from bench_list_versions import BUCKET, PATH, make_versions_in_s3

from bookstore.testing import start_s3

URL = f"/api/contents/{PATH}/checkpoints"


def timed(jp: JupyterSubprocess, method: str, url: str, status: int) -> tuple[float, int]:
    started = time.perf_counter()
    r = jp.request(method, url)
    elapsed = (time.perf_counter() - started) * 1000
    if r.status_code != status:
        raise SystemExit(f"{method} {url}: {r.status_code} (expected {status}): {r.text[:200]}")
    return elapsed, len(r.content)


def measure(s3: Any, tmp: str, cap: int, runs: int) -> dict[str, Any]:
    config = bench_server_config(s3, BUCKET, os.path.join(tmp, f"spool-{cap}"), max_checkpoints=cap)
    jp = JupyterSubprocess(
        "server", Path(tmp) / f"jupyter-{cap}", config=config, request_timeout=300
    )
    (jp.root_dir / "bench").mkdir(parents=True, exist_ok=True)
    (jp.root_dir / PATH).write_text("{}")
    missing = f"{URL}/p-{time.time_ns():020d}-abcdef"
    with jp:
        first_missing, _ = timed(jp, "POST", missing, 404)
        listed = [timed(jp, "GET", URL, 200) for _ in range(runs)]
        missed = [timed(jp, "POST", missing, 404)[0] for _ in range(runs)]
        count = len(jp.request("GET", URL).json())
    return {
        "cap": cap,
        "count": count,
        "list_ms": statistics.median(ms for ms, _ in listed),
        "list_bytes": listed[0][1],
        "first_missing_ms": first_missing,
        "missing_ms": statistics.median(missed),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=2000, help="versions to store")
    parser.add_argument("--caps", default="100,1000", help="max_checkpoints values to compare")
    parser.add_argument("--runs", type=int, default=10, help="timed calls per case")
    parser.add_argument("--s3", choices=["moto", "seaweedfs"], default="moto")
    args = parser.parse_args()
    caps = [int(c) for c in args.caps.split(",")]

    with tempfile.TemporaryDirectory(prefix="bookstore-bench-") as tmp:
        s3 = start_s3(args.s3, tmp)
        try:
            s3.create_bucket(BUCKET, versioning=True)
            print(f"storing {args.versions} versions in {args.s3}…", file=sys.stderr)
            make_versions_in_s3(s3.boto3_client(), f"workspace/{PATH}", args.versions)
            results = [measure(s3, tmp, cap, args.runs) for cap in caps]
        finally:
            s3.stop()

    print(f"{args.versions} versions, S3={args.s3}, medians of {args.runs} calls")
    print(
        f"{'max_checkpoints':>15} {'listed':>7} {'list ms':>8} {'list KB':>8} "
        f"{'404 first ms':>12} {'404 ms':>7}"
    )
    for r in results:
        print(
            f"{r['cap']:>15} {r['count']:>7} {r['list_ms']:>8.1f} {r['list_bytes'] / 1024:>8.1f} "
            f"{r['first_missing_ms']:>12.1f} {r['missing_ms']:>7.1f}"
        )
    base = results[0]
    for r in results[1:]:
        print(
            f"max_checkpoints={r['cap']} / {base['cap']}: "
            f"list {r['list_ms'] / base['list_ms']:.1f}x "
            f"slower, {r['list_bytes'] / base['list_bytes']:.1f}x larger; first 404 "
            f"{r['first_missing_ms'] / base['first_missing_ms']:.1f}x slower"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
