#!/usr/bin/env python
"""Does ``bookstore prune`` stay in bounded memory however many versions it goes through?

Starts an S3 server (``--s3 moto``, in this process, or ``--s3 seaweedfs``), fills a
versioned bucket with N versions spread over notebooks of ``--per-path`` versions each,
with concurrent PUTs over HTTP (``--fill-threads``), then runs ``bookstore prune
--keep-last 5 --yes --json`` as a subprocess and reports its wall time and peak RSS
(``ru_maxrss`` of the child). Every size runs in one go, side by side; the RSS ratio
between the biggest and the smallest size is the figure that matters (the target: about
1, not N/N0).

``--keep-all`` uses ``--keep-within 100y`` instead: every version is kept, so nothing is
pin-checked or deleted and the run measures the streamed listing, the policy and the
streamed ``--json`` output alone (each version a prune would delete costs one
GetObjectTagging request, to honour pins).

moto (5.2) does not scale to 100,000 versions: its ``ListObjectVersions`` deep-copies
every version of the bucket for each page of 1,000 (quadratic: 0.6 ms a version here, so
about 100 minutes of listing for 100,000), and storing a version compares it with every
earlier version of its key (hence the default of 20 versions per notebook). Use ``--s3
seaweedfs`` for the large sizes; moto is fine up to ~10,000. The row for 0 versions is the
command's start-up (imports) alone: subtract it.

Usage::

    python bench/bench_prune.py [--s3 moto|seaweedfs] [--sizes 0 1000 10000 100000]
                                [--per-path 20] [--runs 1] [--keep-all]
                                [--fill http|backend] [--fill-threads 32]
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

from bookstore.testing import S3Server, start_s3  # noqa: E402

BUCKET_PREFIX = "bench-prune"
BODY = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n' * 20


def fill_backend(bucket: str, versions: int, per_path: int) -> int:
    """The same versions written straight into moto's backend (this process's moto only):
    no HTTP, so big sizes are quick to set up."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    paths = max(1, versions // per_path)
    for p in range(paths):
        count = per_path if p < paths - 1 else versions - per_path * (paths - 1)
        for _ in range(count):
            backend.put_object(bucket, f"workspace/bench/nb{p:05d}.ipynb", BODY)
    return paths


def fill(server: S3Server, bucket: str, versions: int, per_path: int, threads: int) -> int:
    """``versions`` object versions, ``per_path`` per key, stored by concurrent PUTs.

    Returns the number of keys. Each key's versions are written one after the other
    (one thread per key at a time), so every key gets exactly ``per_path`` versions.
    """
    client = server.boto3_client(max_pool_connections=threads)
    paths = max(1, versions // per_path)
    counts = [per_path] * paths
    counts[-1] += versions - per_path * paths

    def one_path(p: int) -> None:
        key = f"workspace/bench/nb{p:05d}.ipynb"
        for _ in range(counts[p]):
            client.put_object(Bucket=bucket, Key=key, Body=BODY)

    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one_path, range(paths)))
    finally:
        client.close()
    return paths


def run_prune(
    server: S3Server, bucket: str, env_base: dict[str, str], policy: str
) -> tuple[float, int, dict[str, Any]]:
    env = dict(
        env_base,
        JPYNB_S3_BUCKET=bucket,
        JPYNB_S3_ENDPOINT_URL=server.endpoint_url,
        JPYNB_S3_ACCESS_KEY_ID=server.access_key_id,
        JPYNB_S3_SECRET_ACCESS_KEY=server.secret_access_key,
        JPYNB_S3_REGION_NAME=server.region_name,
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
    parser.add_argument("--s3", choices=["moto", "seaweedfs"], default="moto")
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 1_000, 10_000, 100_000])
    parser.add_argument("--per-path", type=int, default=20, help="versions per notebook")
    parser.add_argument("--fill-threads", type=int, default=32)
    parser.add_argument(
        "--fill",
        choices=["http", "backend"],
        default=None,
        help="store the versions with PUTs over HTTP, or straight into moto's backend "
        "(the default on moto: its PUTs over HTTP take minutes for 10,000 versions)",
    )
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--keep-all", action="store_true")
    args = parser.parse_args()
    if args.fill is None:
        args.fill = "backend" if args.s3 == "moto" else "http"
    if args.fill == "backend" and args.s3 != "moto":
        parser.error("--fill backend needs --s3 moto")
    policy = "--keep-within=100y" if args.keep_all else "--keep-last=5"

    env_base = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JPYNB_", "BOOKSTORE_"))
    }
    env_base["JUPYTER_CONFIG_DIR"] = tempfile.mkdtemp()
    env_base["JUPYTER_NO_CONFIG"] = "1"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bookstore-bench-prune-") as tmp:
        server = start_s3(args.s3, tmp)
        try:
            for size in args.sizes:
                times, rss = [], []
                for run in range(args.runs):
                    bucket = f"{BUCKET_PREFIX}-{size}-{run}"
                    server.create_bucket(bucket, versioning=True)
                    started = time.perf_counter()
                    if size == 0:  # the command's own start-up time and memory
                        paths = 0
                    elif args.fill == "backend":
                        paths = fill_backend(bucket, size, args.per_path)
                    else:
                        paths = fill(server, bucket, size, args.per_path, args.fill_threads)
                    print(
                        f"  {size} versions of {paths} notebooks stored in "
                        f"{time.perf_counter() - started:.1f}s",
                        file=sys.stderr,
                    )
                    elapsed, peak, result = run_prune(server, bucket, env_base, policy)
                    kept = size if args.keep_all else min(5, args.per_path) * paths
                    if result["deleted"] != size - kept or not result["complete"]:
                        raise SystemExit(
                            f"prune deleted {result['deleted']}, expected {size - kept}"
                        )
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

    print(f"\nbookstore prune {policy} --yes on {args.s3}, {args.per_path} versions per notebook")
    print("(versions/s leaves out the start-up time, the row for 0 versions)")
    start = next((t for size, t, _ in rows if size == 0), 0.0)
    print(f"{'versions':>10}  {'time (s)':>9}  {'versions/s':>10}  {'peak RSS (MiB)':>14}")
    for size, t, peak in rows:
        rate = f"{size / (t - start):>10.0f}" if size and t > start else f"{'':>10}"
        print(f"{size:>10}  {t:>9.1f}  {rate}  {peak / 2**20:>14.1f}")
    sized = [row for row in rows if row[0]]
    if len(sized) > 1:
        (s0, _, r0), (s1, _, r1) = sized[0], sized[-1]
        print(
            f"\n{s1 / s0:.0f}x the versions: peak RSS x{r1 / r0:.2f} "
            f"({'bounded' if r1 / r0 < 1.25 else 'GROWS with the number of versions'})"
        )


if __name__ == "__main__":
    main()
