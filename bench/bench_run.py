#!/usr/bin/env python
"""How much does ``bookstore run`` add to running a notebook with papermill alone?

Starts a real S3 server (moto by default; ``--s3 seaweedfs``), publishes a 10-cell
parametrised notebook, then times, alternately and as fresh processes each time (as a
scheduler runs them):

* ``papermill``: ``python -m papermill in.ipynb out.ipynb -p n 100`` on a local copy;
* ``bookstore run``: ``python -m bookstore.cli run PATH -p n 100``, which also reads the
  published version from S3, stamps the provenance and archives the output as a new version.

Both start a ``python3`` kernel and execute the same cells. Reported: the median wall time of
each and their ratio (target: at most 1.10), and the median CPU time (user + system) of each
process tree (the command and the kernel it waited for) and their ratio: on a machine busy
with other work the wall times swing widely, the CPU times much less.

Usage::

    python bench/bench_run.py [--runs 7] [--cells 10] [--s3 moto|seaweedfs]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from bookstore.testing import start_s3

PATH = "bench/run.ipynb"
BUCKET = "bench-runs"


def notebook(cells: int) -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell("n = 10")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [
        nbformat.v4.new_code_cell(f"total_{i} = sum(k * k for k in range(n * {i + 1}))\ntotal_{i}")
        for i in range(cells - 1)
    ]
    return nbformat.writes(nb).encode("utf-8")


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and the children it waited for)."""
    cpu = cpu_of_children()
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, cpu_of_children() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cells", type=int, default=10)
    parser.add_argument("--s3", choices=["moto", "seaweedfs"], default="moto")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = start_s3(args.s3, tmp)
        try:
            server.create_bucket(BUCKET, versioning=True)
            body = notebook(args.cells)
            server.boto3_client().put_object(Bucket=BUCKET, Key=f"published/{PATH}", Body=body)
            local = Path(tmp, "in.ipynb")
            local.write_bytes(body)
            env = {
                **os.environ,
                "JPYNB_S3_BUCKET": BUCKET,
                "JPYNB_S3_ENDPOINT_URL": server.endpoint_url,
                "JPYNB_S3_ACCESS_KEY_ID": server.access_key_id,
                "JPYNB_S3_SECRET_ACCESS_KEY": server.secret_access_key,
                "JPYNB_S3_REGION_NAME": server.region_name,
                "JUPYTER_DATA_DIR": str(Path(tmp, "data")),
            }
            papermill = [
                sys.executable, "-m", "papermill", str(local), str(Path(tmp, "out.ipynb")),
                "-p", "n", "100", "-k", "python3", "--no-progress-bar",
            ]  # fmt: skip
            bookstore = [sys.executable, "-m", "bookstore.cli", "run", PATH, "-p", "n", "100"]
            # One warm-up of each (disk caches, .pyc files), not counted.
            timed(papermill, env)
            timed(bookstore, env)
            times: dict[str, list[float]] = {"papermill": [], "bookstore run": []}
            cpu: dict[str, list[float]] = {"papermill": [], "bookstore run": []}
            for i in range(args.runs):
                order = [("papermill", papermill), ("bookstore run", bookstore)]
                for name, argv in order if i % 2 == 0 else reversed(order):
                    wall, used = timed(argv, env)
                    times[name].append(wall)
                    cpu[name].append(used)
        finally:
            server.stop()

    print(f"{args.cells}-cell notebook, {args.runs} runs each, S3: {args.s3}, alternating")
    for label, values in (
        ("wall time (what a scheduler waits for)", times),
        ("CPU time (user + system, process and kernel)", cpu),
    ):
        med = {name: statistics.median(v) for name, v in values.items()}
        print(f"{label}:")
        for name, v in values.items():
            spread = ", ".join(f"{x:.2f}" for x in v)
            print(f"  {name:14s} median {med[name]:6.2f} s   ({spread})")
        ratio = med["bookstore run"] / med["papermill"]
        print(f"  ratio of medians, bookstore run / papermill: {ratio:.3f}  (target <= 1.10)")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
