#!/usr/bin/env python
"""Does ``bookstore prune`` stay in bounded memory however many versions it goes through?

Starts moto's S3 server in this process, fills a versioned bucket with N versions spread
over ``--paths`` notebooks (written straight into moto's backend: a hundred thousand PUTs
over HTTP would take longer than the prune), then runs ``bookstore prune --keep-last 5
--yes --json`` as a subprocess and reports its wall time and peak RSS (``ru_maxrss`` of
the child). Every size runs in one go, side by side; the RSS ratio between the biggest
and the smallest size is the figure that matters (the target: about 1, not N/N0).

``--keep-all`` uses ``--keep-within 100y`` instead: every version is kept, so nothing is
pin-checked or deleted and the run measures the streamed listing, the policy and the
streamed ``--json`` output alone (each version a prune would delete costs one
GetObjectTagging request, to honour pins, and moto answers those slowly).

Usage::

    python bench/bench_prune.py [--sizes 10000 100000] [--paths 10] [--runs 1] [--keep-all]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

from bookstore.testing import start_moto  # noqa: E402

BUCKET_PREFIX = "bench-prune"


def fill(server: object, bucket: str, versions: int, paths: int) -> None:
    """``versions`` object versions over ``paths`` keys, through moto's backend."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    body = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n' * 20
    per_path = versions // paths
    for p in range(paths):
        key = f"workspace/bench/nb{p:03d}.ipynb"
        for _ in range(per_path):
            backend.put_object(bucket, key, body)


def run_prune(
    server: object, bucket: str, env_base: dict[str, str], policy: str
) -> tuple[float, int, dict]:
    env = dict(
        env_base,
        JPYNB_S3_BUCKET=bucket,
        JPYNB_S3_ENDPOINT_URL=server.endpoint_url,  # type: ignore[attr-defined]
        JPYNB_S3_ACCESS_KEY_ID=server.access_key_id,  # type: ignore[attr-defined]
        JPYNB_S3_SECRET_ACCESS_KEY=server.secret_access_key,  # type: ignore[attr-defined]
    )
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bookstore.cli", "prune", policy, "--yes", "--json"],
            env=env,
            stdout=out,
            stderr=subprocess.PIPE,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        if proc.returncode != 0:
            raise SystemExit(f"prune failed ({proc.returncode}): {err}")
        out.seek(0)
        result = json.load(out)["result"]
    return elapsed, usage.ru_maxrss * 1024, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--paths", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--keep-all", action="store_true")
    args = parser.parse_args()
    policy = "--keep-within=100y" if args.keep_all else "--keep-last=5"
    kept_per_path = None if args.keep_all else 5

    server = start_moto()
    env_base = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JPYNB_", "BOOKSTORE_"))
    }
    env_base["JUPYTER_CONFIG_DIR"] = tempfile.mkdtemp()
    env_base["JUPYTER_NO_CONFIG"] = "1"
    rows = []
    try:
        for size in args.sizes:
            times, rss = [], []
            for run in range(args.runs):
                bucket = f"{BUCKET_PREFIX}-{size}-{run}"
                server.create_bucket(bucket, versioning=True)
                started = time.perf_counter()
                fill(server, bucket, size, args.paths)
                print(
                    f"  {size} versions stored in {time.perf_counter() - started:.1f}s",
                    file=sys.stderr,
                )
                elapsed, peak, result = run_prune(server, bucket, env_base, policy)
                kept = size if kept_per_path is None else kept_per_path * args.paths
                if result["deleted"] != size - kept or not result["complete"]:
                    raise SystemExit(f"prune deleted {result['deleted']}, expected {size - kept}")
                if result["versions"] != size:
                    raise SystemExit(f"prune saw {result['versions']} versions, not {size}")
                times.append(elapsed)
                rss.append(peak)
                print(
                    f"  {size}: {elapsed:.1f}s, peak RSS {peak / 2**20:.1f} MiB, "
                    f"{result['delete_requests']} DeleteObjects requests",
                    file=sys.stderr,
                )
            rows.append((size, statistics.median(times), statistics.median(rss)))
    finally:
        server.stop()

    print(f"\nbookstore prune {policy} --yes on moto, {args.paths} paths")
    print(f"{'versions':>10}  {'time (s)':>9}  {'versions/s':>10}  {'peak RSS (MiB)':>14}")
    for size, t, peak in rows:
        print(f"{size:>10}  {t:>9.1f}  {size / t:>10.0f}  {peak / 2**20:>14.1f}")
    if len(rows) > 1:
        (s0, _, r0), (s1, _, r1) = rows[0], rows[-1]
        print(
            f"\n{s1 // s0}x the versions: peak RSS x{r1 / r0:.2f} "
            f"({'bounded' if r1 / r0 < 1.25 else 'GROWS with the number of versions'})"
        )


if __name__ == "__main__":
    main()
