#!/usr/bin/env python
"""How fast does ``GET /api/bookstore/versions/<path>`` list 1,000 versions?

Starts a real S3 server (moto by default, in this process; ``--s3 seaweedfs`` for
SeaweedFS), stores N versions of one notebook in it, starts ``jupyter server`` with
bookstore in a subprocess and times the listing endpoint (one page of ``--limit``
versions, each with its sha256) from a keep-alive HTTP client.

Two cases are reported, because each version's sha256 lives in its S3 metadata, which
S3 only returns per version (HEAD):

* ``cold``: the first listing after the server started, when it has seen none of the
  versions (made elsewhere, or before a restart): one HEAD per version, 16 at a time.
  Measured ``--cold-runs`` times, on a freshly started server each time.
* ``warm``: later listings, nothing changed. Versions never change, so their metadata is
  cached (versions this server uploaded are cached from the start), and the listing
  itself is reused after a HEAD of the key shows its latest version is the same.
* ``saved``: a listing right after a new version was stored (by another client, so
  even its metadata is unknown): a HEAD, a listing of the 25 newest versions put in
  front of the cached page, and one HEAD for the new version's metadata.

Usage::

    python bench/bench_list_versions.py [--versions 1000] [--runs 20] [--cold-runs 3]
                                        [--s3 moto|seaweedfs] [--via-server]
    python bench/bench_list_versions.py --count-requests [--versions 1000] [--s3 ...]

``--count-requests`` instead counts the S3 requests of one listing page (the code the
endpoint runs, ``VersionHistory.listing``, in this process, with two versions pinned):
cold (a new S3 client, nothing cached) and warm (the same listing again), by operation.
Run it on an older checkout (``PYTHONPATH=<old tree>``) for a before/after figure.

``--via-server`` makes the versions by saving the notebook through the server (slower
to set up, and the objects carry exactly the metadata the archiver writes). The timed
server is started afterwards either way, so "cold" is "after a restart"; a server that
uploaded the versions itself already knows their metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import JupyterSubprocess, bench_server_config

from bookstore.testing import start_s3

PATH = "bench/history.ipynb"
BUCKET = "bench-versions"


def notebook(i: int) -> bytes:
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": i,
                "id": f"cell{i}",
                "metadata": {},
                "outputs": [],
                "source": f"x = {i}\nprint(x * 2)",
            }
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return (json.dumps(nb, indent=1) + "\n").encode()


def put_version(client: Any, key: str, i: int) -> None:
    body = notebook(i)
    client.put_object(
        Bucket=BUCKET,
        Key=key,
        Body=body,
        ContentType="application/x-ipynb+json",
        Metadata={
            "sha256": hashlib.sha256(body).hexdigest(),
            "user": "bench",
            "saved-at": "2024-01-01T00:00:00.000Z",
            "jupyter-path": PATH,
            "save-id": f"{i:020d}-000000",
        },
    )


def make_versions_in_s3(client: Any, key: str, n: int) -> None:
    for i in range(n):
        put_version(client, key, i)
        if (i + 1) % 100 == 0:
            print(f"  stored {i + 1}/{n} versions", file=sys.stderr)


def make_versions_via_server(jp: JupyterSubprocess, n: int) -> None:
    for i in range(n):
        model = {"type": "notebook", "content": json.loads(notebook(i))}
        r = jp.request("PUT", f"/api/contents/{PATH}", json=model)
        r.raise_for_status()
        if (i + 1) % 100 == 0:
            print(f"  saved {i + 1}/{n} versions", file=sys.stderr)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = jp.request("GET", "/api/bookstore").json()
        if status["archive"]["pending"] == 0:
            return
        time.sleep(0.2)
    raise SystemExit("the archiver did not drain in 300 s")


def time_listing(jp: JupyterSubprocess, limit: int, expect: int) -> float:
    started = time.perf_counter()
    r = jp.request("GET", f"/api/bookstore/versions/{PATH}", params={"limit": str(limit)})
    elapsed = time.perf_counter() - started
    r.raise_for_status()
    versions = r.json()["versions"]
    if len(versions) != expect or not all(v["sha256"] for v in versions):
        raise SystemExit(f"wrong listing: {len(versions)} versions (expected {expect})")
    return elapsed * 1000


def count_requests(s3: Any, versions: int, limit: int) -> int:
    """Print the S3 requests of a cold and a warm listing page, by operation."""
    import asyncio
    from collections import Counter

    from bookstore.history import VersionHistory
    from bookstore.prune import set_pin
    from bookstore.s3 import S3Store
    from bookstore.settings import BookstoreSettings

    settings = BookstoreSettings(
        s3_bucket=BUCKET,
        s3_endpoint_url=s3.endpoint_url,
        s3_access_key_id=s3.access_key_id,
        s3_secret_access_key=s3.secret_access_key,
        s3_region_name=s3.region_name,
    )
    ids = [
        v["VersionId"]
        for page in s3.boto3_client()
        .get_paginator("list_object_versions")
        .paginate(Bucket=BUCKET, Prefix=f"workspace/{PATH}")
        for v in page.get("Versions", [])
    ]

    async def run() -> list[tuple[str, Counter[str]]]:
        pinner = S3Store(settings)
        try:
            for vid in (ids[1], ids[len(ids) // 2]):
                await set_pin(pinner, settings, PATH, vid, True)
        finally:
            await pinner.close()
        store = S3Store(settings)
        calls: Counter[str] = Counter()
        client = await store.client()
        client.meta.events.register("before-call.s3", lambda model, **_: calls.update([model.name]))
        history = VersionHistory(settings, store)
        out = []
        try:
            for name in ("cold", "warm"):
                calls.clear()
                listing = await history.listing(PATH, limit=limit, include_pending=False)
                pinned = sum(1 for r in listing.versions if r.pinned)
                if pinned != 2:
                    raise SystemExit(f"{name} listing shows {pinned} pins, not 2")
                out.append((name, Counter(calls)))
        finally:
            await store.close()
        return out

    print(f"S3 requests per listing page of {min(versions, limit)} versions, 2 pinned:")
    for name, calls in asyncio.run(run()):
        detail = ", ".join(f"{op} {n}" for op, n in sorted(calls.items()))
        print(f"  {name}: {sum(calls.values())} requests ({detail})")
    return 0


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name:>5}: median {statistics.median(values):7.1f} ms   p95 {p95(values):7.1f} ms   "
        f"min {min(values):7.1f} ms   max {max(values):7.1f} ms   (n={len(values)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=1000, help="versions to store")
    parser.add_argument("--limit", type=int, default=1000, help="page size asked for")
    parser.add_argument("--runs", type=int, default=20, help="warm listings to time")
    parser.add_argument("--cold-runs", type=int, default=3, help="server restarts for cold")
    parser.add_argument("--s3", choices=["moto", "seaweedfs"], default="moto")
    parser.add_argument("--via-server", action="store_true", help="save through the server")
    parser.add_argument("--count-requests", action="store_true", help="count S3 requests")
    parser.add_argument("--budget-ms", type=float, default=300.0, help="warm median must beat")
    args = parser.parse_args()
    expect = min(args.versions, args.limit)

    with tempfile.TemporaryDirectory(prefix="bookstore-bench-") as tmp:
        s3 = start_s3(args.s3, tmp)
        try:
            s3.create_bucket(BUCKET, versioning=True)
            if args.count_requests:
                make_versions_in_s3(s3.boto3_client(), f"workspace/{PATH}", args.versions)
                return count_requests(s3, args.versions, args.limit)
            config = bench_server_config(s3, BUCKET, os.path.join(tmp, "spool"))
            jp = JupyterSubprocess("server", Path(tmp) / "jupyter", config=config)
            (jp.root_dir / "bench").mkdir(parents=True, exist_ok=True)
            print(f"storing {args.versions} versions in {args.s3}…", file=sys.stderr)
            started = time.perf_counter()
            if args.via_server:
                with jp:
                    make_versions_via_server(jp, args.versions)
            else:
                make_versions_in_s3(s3.boto3_client(), f"workspace/{PATH}", args.versions)
            print(f"  done in {time.perf_counter() - started:.1f} s", file=sys.stderr)

            cold: list[float] = []
            warm: list[float] = []
            saved: list[float] = []
            client = s3.boto3_client()
            for run in range(max(1, args.cold_runs)):
                with jp:
                    jp.request("GET", "/api/bookstore").raise_for_status()  # server is up
                    cold.append(time_listing(jp, args.limit, expect))
                    if run == 0:
                        warm = [time_listing(jp, args.limit, expect) for _ in range(args.runs)]
                        for i in range(args.runs):
                            put_version(client, f"workspace/{PATH}", args.versions + i)
                            saved.append(
                                time_listing(jp, args.limit, min(args.limit, expect + i + 1))
                            )
        finally:
            s3.stop()

    print(
        f"GET /api/bookstore/versions/{PATH}?limit={args.limit}: {expect} versions with sha256, "
        f"S3={args.s3}, versions made {'through the server' if args.via_server else 'in S3'}"
    )
    print(summary("cold", cold) + "   first listing after a server start")
    print(summary("warm", warm) + "   nothing changed since the last listing")
    print(summary("saved", saved) + "   a new version was just stored by another client")
    ok = max(statistics.median(warm), statistics.median(saved)) < args.budget_ms
    print(f"warm and saved medians {'within' if ok else 'OVER'} the {args.budget_ms:.0f} ms budget")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
