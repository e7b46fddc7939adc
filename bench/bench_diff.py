#!/usr/bin/env python
"""How long do the diff page and the diff API take on pathological notebooks?

Starts a real S3 server (moto by default, ``--s3 seaweedfs`` for SeaweedFS), stores two
versions of each notebook below directly in S3, starts ``jupyter server`` with bookstore
in a subprocess and times ``GET /bookstore/diff/<path>?from=A&to=B`` (the page) and
``GET /api/bookstore/diff/<path>?from=A&to=B`` (the API), ``--runs`` times each.

Cases (each one change between the two versions, unless said otherwise):

* ``lines``: one code cell of 8,000 identical lines (48 KB), one line changed; nbdime's
  and difflib's line matchers are quadratic on such input.
* ``cells``: 3,000 small cells, one changed.
* ``outputs``: 40 cells with 100 KB text outputs each, one output changed.
* ``all-changed``: 2,000 cells, every one changed.
* ``small``: an ordinary notebook (30 cells), for scale.

Usage::

    python bench/bench_diff.py [--runs 5] [--s3 moto|seaweedfs] [--case NAME ...]
                               [--budget-s 3] [--timeout 300]

Exit status 1 if a median is over ``--budget-s``.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_common import JupyterSubprocess, bench_server_config

from bookstore.testing import start_s3

BUCKET = "bench-diff"


def code_cell(i: int, source: str, outputs: list[Any] | None = None) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": f"c{i}",
        "metadata": {},
        "outputs": outputs or [],
        "source": source,
    }


def notebook(cells: list[dict[str, Any]]) -> dict[str, Any]:
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def case_lines(changed: bool) -> dict[str, Any]:
    lines = ["x = 1"] * 8000
    if changed:
        lines[4000] = "x = 2"
    return notebook([code_cell(0, "\n".join(lines))])


def case_cells(changed: bool) -> dict[str, Any]:
    cells = [code_cell(i, f"print({i})") for i in range(3000)]
    if changed:
        cells[1500]["source"] = "print('changed')"
    return notebook(cells)


def case_outputs(changed: bool) -> dict[str, Any]:
    def out(i: int, tag: str) -> list[Any]:
        text = "".join(f"line {n} of output {i} {tag}\n" for n in range(4000))
        return [{"output_type": "stream", "name": "stdout", "text": text}]

    cells = [code_cell(i, f"run({i})", out(i, "a")) for i in range(40)]
    if changed:
        cells[20]["outputs"] = out(20, "b")
    return notebook(cells)


def case_all_changed(changed: bool) -> dict[str, Any]:
    tag = "new" if changed else "old"
    return notebook([code_cell(i, f"value_{i} = '{tag}'\nprint(value_{i})") for i in range(2000)])


def case_small(changed: bool) -> dict[str, Any]:
    cells = [code_cell(i, f"a = {i}\nb = a * 2\nprint(a, b)") for i in range(30)]
    if changed:
        cells[10]["source"] = "a = 'changed'"
    return notebook(cells)


CASES: dict[str, Callable[[bool], dict[str, Any]]] = {
    "lines": case_lines,
    "cells": case_cells,
    "outputs": case_outputs,
    "all-changed": case_all_changed,
    "small": case_small,
}


def put(client: Any, key: str, nb: dict[str, Any]) -> str:
    body = (json.dumps(nb, indent=1) + "\n").encode()
    resp = client.put_object(
        Bucket=BUCKET,
        Key=key,
        Body=body,
        ContentType="application/x-ipynb+json",
        Metadata={"sha256": hashlib.sha256(body).hexdigest(), "user": "bench"},
    )
    return str(resp["VersionId"])


def timed(jp: JupyterSubprocess, url: str, params: dict[str, str], timeout: float) -> float:
    started = time.perf_counter()
    r = jp.request("GET", url, params=params, timeout=timeout)
    elapsed = time.perf_counter() - started
    if r.status_code != 200:
        raise SystemExit(f"GET {url} answered {r.status_code}: {r.text[:300]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="requests timed per case and door")
    parser.add_argument("--s3", choices=["moto", "seaweedfs"], default="moto")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="repeatable")
    parser.add_argument("--budget-s", type=float, default=3.0, help="every median must beat")
    parser.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    args = parser.parse_args()
    cases = args.case or list(CASES)

    results: list[tuple[str, str, list[float], int]] = []
    with tempfile.TemporaryDirectory(prefix="bookstore-bench-") as tmp:
        s3 = start_s3(args.s3, tmp)
        try:
            s3.create_bucket(BUCKET, versioning=True)
            client = s3.boto3_client()
            ids: dict[str, tuple[str, str, int]] = {}
            for name in cases:
                base, remote = CASES[name](False), CASES[name](True)
                key = f"workspace/bench/{name}.ipynb"
                size = len(json.dumps(remote, indent=1))
                ids[name] = (put(client, key, base), put(client, key, remote), size)
            config = bench_server_config(s3, BUCKET, os.path.join(tmp, "spool"))
            with JupyterSubprocess("server", Path(tmp) / "jupyter", config=config) as jp:
                jp.request("GET", "/api/bookstore").raise_for_status()
                for name in cases:
                    a, b, size = ids[name]
                    params = {"from": a, "to": b}
                    for door, url in (
                        ("page", f"/bookstore/diff/bench/{name}.ipynb"),
                        ("api", f"/api/bookstore/diff/bench/{name}.ipynb"),
                    ):
                        times = [timed(jp, url, params, args.timeout) for _ in range(args.runs)]
                        results.append((name, door, times, size))
                        print(
                            f"  {name:<12} {door:<4} median {statistics.median(times):7.2f} s",
                            file=sys.stderr,
                        )
        finally:
            s3.stop()

    print(f"diff of two versions, S3={args.s3}, {args.runs} runs each (seconds)")
    print(f"{'case':<12} {'door':<5} {'size':>9} {'median':>8} {'min':>8} {'max':>8}")
    worst = 0.0
    for name, door, times, size in results:
        med = statistics.median(times)
        worst = max(worst, med)
        print(
            f"{name:<12} {door:<5} {size / 1024:7.0f}KB {med:8.2f} {min(times):8.2f} "
            f"{max(times):8.2f}"
        )
    ok = worst < args.budget_s
    verdict = "within" if ok else "OVER"
    print(f"slowest median {worst:.2f} s: {verdict} the {args.budget_s} s budget")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
