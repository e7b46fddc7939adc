"""What the benchmarks share: a Jupyter server archiving with bookstore into a bench bucket,
and the memory of a process (Linux: ``/proc/<pid>/status``).

The scripts run as ``python bench/bench_x.py``, so this folder is on ``sys.path``; importing
this module also puts ``tests/`` there, for the :class:`JupyterSubprocess` helper.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the JupyterSubprocess helper

from jupyter_subprocess import JupyterSubprocess  # noqa: E402

from bookstore.pytest_plugin import server_config  # noqa: E402

__all__ = ["JupyterSubprocess", "bench_server_config", "memory_mb", "peak_rss_mb"]


def bench_server_config(s3: Any, bucket: str, spool_dir: str, **settings: Any) -> dict[str, Any]:
    """Jupyter config for a server archiving with bookstore to ``bucket`` of the started S3
    server ``s3`` (:func:`bookstore.testing.start_s3`); ``settings`` add to
    ``c.BookstoreSettings``."""
    return server_config(
        {
            "s3_bucket": bucket,
            "s3_endpoint_url": s3.endpoint_url,
            "s3_access_key_id": s3.access_key_id,
            "s3_secret_access_key": s3.secret_access_key,
            "s3_region_name": s3.region_name,
            "spool_dir": os.fspath(spool_dir),
        },
        **settings,
    )


def memory_mb(pid: int, field: str) -> float:
    """A memory figure of process ``pid`` in MB: ``VmRSS`` (resident now), ``VmHWM`` (its
    peak since the process started)..."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no {field} in /proc/{pid}/status")


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of process ``pid`` so far, in MB (``VmHWM``)."""
    return memory_mb(pid, "VmHWM")
