#!/usr/bin/env python
"""How much memory does cloning a large file take? (peak RSS of the Jupyter server)

Starts a real S3 server (moto by default, ``--s3 seaweedfs`` for SeaweedFS), stores one
object of ``--mb`` MB of random bytes (a file that is not a notebook), starts
``jupyter server`` with bookstore in a subprocess (``max_read_bytes`` raised above the
object) and clones the object with ``POST /api/bookstore/clone``. Reports the server's
resident memory before the clone (VmRSS) and its peak (VmHWM, from /proc) after it.

Usage::

    python bench/bench_clone_rss.py [--mb 200] [--s3 moto|seaweedfs]

Linux only (reads /proc/<pid>/status).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench_common import JupyterSubprocess, bench_server_config, memory_mb, peak_rss_mb

from bookstore.testing import start_s3

BUCKET = "bench-clone"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="object size in MB")
    parser.add_argument("--s3", choices=["moto", "seaweedfs"], default="moto")
    args = parser.parse_args()
    size = args.mb * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="bookstore-bench-") as tmp:
        s3 = start_s3(args.s3, tmp)
        try:
            s3.create_bucket(BUCKET, versioning=True)
            s3.boto3_client().put_object(
                Bucket=BUCKET, Key="published/big.bin", Body=os.urandom(size)
            )
            config = bench_server_config(
                s3, BUCKET, os.path.join(tmp, "spool"), max_read_bytes=4 * size
            )
            jp = JupyterSubprocess("server", Path(tmp) / "jupyter", config=config)
            with jp:
                jp.request("GET", "/api/bookstore").raise_for_status()
                before = memory_mb(jp.pid, "VmRSS")
                started = time.perf_counter()
                r = jp.request(
                    "POST",
                    "/api/bookstore/clone",
                    json={"s3_key": "published/big.bin"},
                    timeout=600,
                )
                elapsed = time.perf_counter() - started
                if r.status_code != 200:
                    raise SystemExit(f"clone answered {r.status_code}: {r.text[:300]}")
                peak = peak_rss_mb(jp.pid)
                after = memory_mb(jp.pid, "VmRSS")
                cloned = (jp.root_dir / "big.bin").stat().st_size
        finally:
            s3.stop()
    if cloned != size:
        raise SystemExit(f"cloned {cloned} bytes, expected {size}")
    print(f"clone of a {args.mb} MB file, S3={args.s3}: {elapsed:.1f} s")
    print(f"server RSS before {before:.0f} MB, peak {peak:.0f} MB, after {after:.0f} MB")
    print(f"peak growth {peak - before:.0f} MB ({(peak - before) / args.mb:.2f}x the object)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
