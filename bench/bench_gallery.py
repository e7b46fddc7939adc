#!/usr/bin/env python
"""How fast is the first page of ``GET /api/bookstore/published`` with 100,000 notebooks?

Starts a real S3 server (moto by default; ``--s3 seaweedfs`` for SeaweedFS), stores
``--notebooks`` tiny published notebooks spread over ``--owners`` users under
``published/<user>/…`` (on moto, written straight into its in-process backend, since
HTTP PUTs reach only ~40/s on this machine; ``--http-puts`` forces PUTs, which SeaweedFS
always uses, from a thread pool), starts ``jupyter server``
with bookstore in a subprocess (``published_prefix = 'published/{username}'``) and times,
from a keep-alive HTTP client:

* ``s3 list``: one ``ListObjectsV2`` request of 110 keys sent straight to the S3 server,
  the floor under any listing (moto scans its whole bucket for every list request);
* ``cold``: the very first answer of a fresh server (it also HEADs the 50 listed keys for
  their newest version ids);
* ``first``: the first page (50 notebooks), with the gallery's answer cache turned off
  (``published_cache_seconds = 0``), so every request lists S3 (newest version ids are kept
  while a key's listing is unchanged, version counts per newest version; how many entries
  of each answer had a count is printed). ``first/s3 list`` is its cost over the floor;
* ``owner``: the first page of one user's notebooks (``?owner=``, a narrower S3 prefix);
* ``q``: the first page of a path filter that matches one notebook in 100 (it reads S3
  list pages until 50 match, 20 at most, then answers with what it found and a token);
* ``cached``: the first page again on a second server with the default 10 s cache.

Usage::

    python bench/bench_gallery.py [--notebooks 100000] [--owners 100] [--runs 20]
                                  [--s3 moto|seaweedfs] [--budget-ms 1000]

Exits non-zero when the ``first`` median is over ``--budget-ms`` (the issue's target: the
first page within 1 s on moto).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the JupyterSubprocess helper

from jupyter_subprocess import JupyterSubprocess  # noqa: E402

from bookstore.testing import start_s3  # noqa: E402

BUCKET = "bench-gallery"
BODY = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n'


def key_of(i: int, owners: int) -> str:
    # Every 100th notebook is a "report", for the ?q= case.
    name = f"report-{i:06d}" if i % 100 == 0 else f"nb-{i:06d}"
    return f"published/user{i % owners:03d}/project{i % 7}/{name}.ipynb"


def store_in_moto_backend(n: int, owners: int) -> float:
    """Write straight into this process's moto backend: the same objects and versions the
    S3 API would make, without 100,000 HTTP round trips through one GIL (~40 PUT/s here)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    started = time.perf_counter()
    for i in range(n):
        backend.put_object(BUCKET, key_of(i, owners), BODY)
        if (i + 1) % 10000 == 0:
            print(f"  stored {i + 1}/{n}", file=sys.stderr)
    return time.perf_counter() - started


def store_notebooks(s3: Any, n: int, owners: int, workers: int) -> float:
    local = threading.local()
    done = [0]
    lock = threading.Lock()

    def put(i: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = s3.boto3_client()
        client.put_object(Bucket=BUCKET, Key=key_of(i, owners), Body=BODY)
        with lock:
            done[0] += 1
            if done[0] % 10000 == 0:
                print(f"  stored {done[0]}/{n}", file=sys.stderr)

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(put, range(n), chunksize=256))
    return time.perf_counter() - started


COUNTED: dict[str, list[int]] = {}


def timed(
    jp: JupyterSubprocess, params: dict[str, str], expect_at_least: int, name: str = ""
) -> float:
    started = time.perf_counter()
    r = jp.request("GET", "/api/bookstore/published", params=params)
    elapsed = time.perf_counter() - started
    r.raise_for_status()
    entries = r.json()["published"]
    got = len(entries)
    if got < expect_at_least:
        raise SystemExit(f"wrong page for {params}: {got} notebooks (expected ≥{expect_at_least})")
    if name:
        counted = sum(1 for e in entries if e["versions"] is not None)
        COUNTED.setdefault(name, []).append(counted)
    return elapsed * 1000


def raw_list(s3: Any) -> float:
    """One ListObjectsV2 request of 110 keys (what a first page of 50 asks for) straight to
    the S3 server: its own cost."""
    client = s3.boto3_client()
    started = time.perf_counter()
    client.list_objects_v2(Bucket=BUCKET, Prefix="published/", MaxKeys=110)
    return (time.perf_counter() - started) * 1000


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name:>7}: median {statistics.median(values):7.1f} ms   "
        f"min {min(values):7.1f} ms   max {max(values):7.1f} ms   (n={len(values)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=int, default=100_000)
    parser.add_argument("--owners", type=int, default=100)
    parser.add_argument("--workers", type=int, default=32, help="concurrent PUTs")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--s3", choices=["moto", "seaweedfs"], default="moto")
    parser.add_argument(
        "--http-puts", action="store_true", help="moto: PUT over HTTP, not into its backend"
    )
    parser.add_argument("--budget-ms", type=float, default=1000.0)
    args = parser.parse_args()

    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bookstore-bench-") as tmp:
        s3 = start_s3(args.s3, tmp)
        try:
            s3.create_bucket(BUCKET, versioning=True)
            print(f"storing {args.notebooks} notebooks in {args.s3}…", file=sys.stderr)
            if args.s3 == "moto" and not args.http_puts:
                took = store_in_moto_backend(args.notebooks, args.owners)
            else:
                took = store_notebooks(s3, args.notebooks, args.owners, args.workers)
            # One object made through the API, to check the shortcut made the same thing.
            s3.boto3_client().put_object(Bucket=BUCKET, Key=key_of(0, args.owners), Body=BODY)
            print(f"  done in {took:.1f} s ({args.notebooks / took:.0f} PUT/s)", file=sys.stderr)

            def server(name: str, cache: float) -> JupyterSubprocess:
                config = {
                    "ServerApp": {"jpserver_extensions": {"bookstore": True}},
                    "BookstoreSettings": {
                        "s3_bucket": BUCKET,
                        "s3_endpoint_url": s3.endpoint_url,
                        "s3_access_key_id": s3.access_key_id,
                        "s3_secret_access_key": s3.secret_access_key,
                        "s3_region_name": s3.region_name,
                        "spool_dir": os.path.join(tmp, f"spool-{name}"),
                        "workspace_prefix": "workspace/{username}",
                        "published_prefix": "published/{username}",
                        "published_cache_seconds": cache,
                    },
                }
                return JupyterSubprocess("server", Path(tmp) / name, config=config)

            results: dict[str, list[float]] = {}
            with server("nocache", 0.0) as jp:
                jp.request("GET", "/api/bookstore").raise_for_status()
                results["s3 list"] = [raw_list(s3) for _ in range(args.runs)]
                # The very first answer also HEADs each listed key once (its newest version
                # id); later answers reuse the ids of keys whose listing did not change.
                results["cold"] = [timed(jp, {}, 50)]
                results["first"] = [timed(jp, {}, 50, "first") for _ in range(args.runs)]
                per_owner = min(50, args.notebooks // args.owners)
                results["owner"] = [
                    timed(jp, {"owner": f"user{r % args.owners:03d}"}, per_owner)
                    for r in range(args.runs)
                ]
                results["q"] = [timed(jp, {"q": "report"}, 1) for _ in range(args.runs)]
            with server("cache", 10.0) as jp:
                jp.request("GET", "/api/bookstore").raise_for_status()
                timed(jp, {}, 50)
                results["cached"] = [timed(jp, {}, 50) for _ in range(args.runs)]
        finally:
            s3.stop()

    print(
        f"GET /api/bookstore/published, first page of 50: {args.notebooks} published notebooks "
        f"of {args.owners} users, S3={args.s3}; load average before {load_before}, "
        f"after {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    for name, values in results.items():
        print(summary(name, values))
    for name, counted in COUNTED.items():
        print(f"{name}: entries with a version count per answer: {counted}")
    first = statistics.median(results["first"])
    print(
        f"first/s3 list median ratio {first / statistics.median(results['s3 list']):.2f}; "
        f"cached/first median ratio {statistics.median(results['cached']) / first:.3f}; "
        f"first-page median {'within' if first < args.budget_ms else 'OVER'} the "
        f"{args.budget_ms:.0f} ms budget"
    )
    return 0 if first < args.budget_ms else 1


if __name__ == "__main__":
    sys.exit(main())
