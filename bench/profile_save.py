"""Where a bookstore save's milliseconds go: each step of the save path, timed alone.

Runs the very functions a save runs, in this process, on a temporary directory on the
same disk as the spool (no server, no S3): serialising the notebook, hashing it, the disk
write jupyter_server makes (``atomic_writing``), the spool's stage (write + fsync), its
commit (rename + directory fsync) and one hop to a worker thread and back; the disk
write and the stage one after the other against side by side, and against a reused,
pre-written slot overwritten beside or after the disk write (what a slot layout would
cost). Then the contents manager's whole ``save()`` in this process (no HTTP, no S3),
in turns: plain, bookstore, and bookstore whose spool stage fails at once, which is
everything bookstore adds to a save but the archive copy itself.
Medians of ``--runs`` runs per size.

    python bench/profile_save.py [--runs 50] [--sizes 10000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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

    helper = ThreadPoolExecutor(1)
    slot = os.path.join(workdir, "slot")
    with open(slot, "wb") as f:  # a pre-allocated spool slot, reused by every save
        f.write(b"\0" * (len(data) + 512))
        os.fsync(f.fileno())

    def write_slot() -> None:
        fd = os.open(slot, os.O_WRONLY)
        try:
            os.pwrite(fd, data, 512)
            os.pwrite(fd, entry().header()[:512], 0)
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def stage_then_write() -> None:
        s = spool.stage(entry(), data)
        write_disk()
        spool.rename_staged(s)
        spool.remove(s.entry)

    def stage_beside_write() -> None:
        # As a save does (Archiver.write_and_commit): the stage on a helper thread.
        pending = helper.submit(spool.stage, entry(), data)
        write_disk()
        s, error = spool.rename_written(pending.result())
        assert s is not None, error
        spool.remove(s.entry)

    def slot_after_write() -> None:
        write_disk()
        write_slot()

    def slot_beside_write() -> None:
        # What a slot layout would cost on the save path: the slot written beside the disk
        # write (no new file, no rename); the commit it would still need is not counted.
        pending = helper.submit(write_slot)
        write_disk()
        pending.result()

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
        "a reused slot instead (pwrite + fdatasync)": timed(write_slot, runs),
        "spool commit, waiting (rename + dir fsync)": commit_alone(False),
        "spool commit, fsync deferred (rename only)": commit_alone(True),
        "thread hop (run_in_executor)": asyncio.run(hop(runs)),
        "stage, then disk write, then rename (one thread)": timed(stage_then_write, runs),
        "disk write with the stage beside it, rename": timed(stage_beside_write, runs),
        "disk write with a reused slot beside it": timed(slot_beside_write, runs),
        "disk write, then a reused slot (one thread)": timed(slot_after_write, runs),
    }
    helper.shutdown()
    return out


async def whole_saves(size: int, runs: int, workdir: str) -> dict[str, float]:
    """``save()`` of the contents manager in this process: plain, bookstore, and bookstore
    whose spool stage fails at once (all it does but the archive copy), in turns.

    No HTTP, no S3: bookstore's uploads go to a port nobody listens on and wait an hour
    before retrying, so what is timed is the save path alone.
    """
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager

    from bookstore.archive import BookstoreContentsArchiver
    from bookstore.s3 import S3Store
    from bookstore.settings import BookstoreSettings
    from bookstore.spool import Archiver

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]

    def settings_in(spool_dir: str) -> BookstoreSettings:
        return BookstoreSettings(
            s3_bucket="profile",
            s3_endpoint_url=f"http://127.0.0.1:{dead}",
            spool_dir=os.path.join(workdir, spool_dir),
            upload_retry_initial_delay=3600,
            upload_retry_max_delay=3600,
            s3_access_key_id="profile",
            s3_secret_access_key="profile",
            max_spool_bytes=0,
            skip_identical_saves=False,
        )

    settings = settings_in(f"spool-{size}")
    log = logging.getLogger("profile")
    log.setLevel(logging.CRITICAL)
    names = ("plain", "bookstore", "no stage")
    roots = {name: os.path.join(workdir, f"{name}-{size}") for name in names}
    for root in roots.values():
        os.makedirs(root)
    plain = AsyncLargeFileManager(root_dir=roots["plain"])
    book = BookstoreContentsArchiver(root_dir=roots["bookstore"])
    # The floor of everything bookstore does but the archive copy: the same contents
    # manager whose spool stage fails at once (the save goes on, as when the spool is
    # unwritable); its own spool directory.
    bare = BookstoreContentsArchiver(root_dir=roots["no stage"])
    store = S3Store(settings)
    archiver = Archiver(settings, store, log)
    archiver.root_dir = roots["bookstore"]
    book.bookstore_archiver = archiver
    bare_archiver = Archiver(settings_in(f"spool-bare-{size}"), store, log)
    bare_archiver.root_dir = roots["no stage"]
    bare.bookstore_archiver = bare_archiver
    nb = make_notebook(size, "whole")
    samples: dict[str, list[float]] = {name: [] for name in names}
    managers = [("plain", plain), ("bookstore", book), ("no stage", bare)]
    try:
        for i in range(runs + 3):
            if i == 3:
                bare_archiver.spool.stage = no_stage  # type: ignore[method-assign]
            order = managers[i % 3 :] + managers[: i % 3]
            for name, cm in order:
                nb["cells"][0]["source"] = f"# save {i}"
                model = {"type": "notebook", "content": json.loads(json.dumps(nb))}
                t0 = time.perf_counter()
                await cm.save(model, "nb.ipynb")
                if i >= 3:  # the first ones warm up (the archiver starts)
                    samples[name].append(time.perf_counter() - t0)
    finally:
        await archiver.stop(flush_timeout=0)
        await bare_archiver.stop(flush_timeout=0)
        await store.close()
    out = {name: statistics.median(ts) * 1e3 for name, ts in samples.items()}
    out["ratio"] = out["bookstore"] / out["plain"]
    out["ratio without the stage"] = out["no stage"] / out["plain"]
    return out


def no_stage(*args: Any, **kwargs: Any) -> Any:
    raise OSError("profile: no archive copy")


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
                print(f"  {step:<50} {ms:7.2f} ms")
            whole = asyncio.run(whole_saves(size, args.runs, workdir))
            print(
                f"  whole save() in this process, in turns: plain {whole['plain']:.2f} ms, "
                f"bookstore {whole['bookstore']:.2f} ms, ratio {whole['ratio']:.3f}; "
                f"bookstore whose stage fails at once {whole['no stage']:.2f} ms, "
                f"ratio {whole['ratio without the stage']:.3f}"
            )
    print("load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
