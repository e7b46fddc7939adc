"""Where a bookstore save's milliseconds go: each step of the save path, timed alone.

Runs the very functions a save runs, in this process, on a temporary directory on the
same disk as the spool (no server, no S3): serialising the notebook, hashing it, the disk
write jupyter_server makes (``atomic_writing``), the spool's stage (write + fsync), its
commit (rename + directory fsync) and one hop to a worker thread and back. Medians of
``--runs`` runs per size.

    python bench/profile_save.py [--runs 50] [--sizes 10000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import nbformat
from bench_save import make_notebook
from jupyter_server.services.contents.fileio import FileManagerMixin

from bookstore.spool import Spool, SpoolEntry, new_save_id


def timed(fn: Callable[[], Any], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3


async def hop(runs: int) -> float:
    loop = asyncio.get_running_loop()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await loop.run_in_executor(None, lambda: None)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3


def profile(size: int, runs: int, workdir: str) -> dict[str, float]:
    nb = nbformat.from_dict(make_notebook(size, "profile"))
    data = (nbformat.writes(nb, version=nbformat.NO_CONVERT) + "\n").encode()
    fm = FileManagerMixin()
    target = os.path.join(workdir, "nb.ipynb")
    spool = Spool(os.path.join(workdir, "spool"))
    os.makedirs(spool.directory, exist_ok=True)

    def write_disk() -> None:
        with fm.atomic_writing(target, text=False) as f:
            f.write(data)

    def entry() -> SpoolEntry:
        return SpoolEntry(
            save_id=new_save_id(),
            bucket="b",
            key="workspace/nb.ipynb",
            path="nb.ipynb",
            user="u",
            saved_at="2026-01-01T00:00:00.000Z",
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )

    def stage() -> None:
        s = spool.stage(entry(), data)
        spool.discard(s)

    def commit_alone(deferred: bool) -> float:
        samples = []
        for _ in range(runs):
            s = spool.stage(entry(), data)
            t0 = time.perf_counter()
            spool.rename_staged(s) if deferred else spool.commit(s)
            samples.append(time.perf_counter() - t0)
            spool.remove(s.entry)
        return statistics.median(samples) * 1e3

    write_disk()
    out: dict[str, float] = {
        "bytes": len(data),
        "serialise (nbformat.writes)": timed(
            lambda: nbformat.writes(nb, version=nbformat.NO_CONVERT), runs
        ),
        "parse the request JSON": timed(lambda: json.loads(json.dumps(nb)), runs),
        "sha256": timed(lambda: hashlib.sha256(data).hexdigest(), runs),
        "disk write (atomic_writing, fsync)": timed(write_disk, runs),
        "spool stage (write + fsync)": timed(stage, runs),
        "spool commit, waiting (rename + dir fsync)": commit_alone(False),
        "spool commit, fsync deferred (rename only)": commit_alone(True),
        "thread hop (run_in_executor)": asyncio.run(hop(runs)),
    }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--sizes", default="10000,1000000")
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as workdir:
        for size in (int(x) for x in args.sizes.split(",")):
            res = profile(size, args.runs, workdir)
            print(f"notebook of {res.pop('bytes')} bytes, median of {args.runs} runs")
            for step, ms in res.items():
                print(f"  {step:<45} {ms:7.2f} ms")
    print("load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
