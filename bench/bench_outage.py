#!/usr/bin/env python
"""Does an S3 outage slow saves down, and how long does a clean stop take to flush?

The speed side of tests/test_faults.py (whose tests assert behaviour, not timings). Starts, on
loopback, a real S3 server (moto by default, ``--s3 seaweedfs``), a
:class:`~bookstore.testing.TcpProxy` in front of it, and one ``jupyter server`` with bookstore
reaching S3 through the proxy. Then:

* ``save``: PUTs a notebook through the contents API in rounds, ``--saves`` saves with S3
  reachable, then as many with the proxy cut (connections refused), and reports the median
  and p95 latency of each and their ratio (about 1.0 when S3 is off the save path);
* ``drain``: once S3 is back, how long the archiver takes to upload the saves queued during
  the outage;
* ``stop``: with ``--backlog`` saves queued during an outage, the time from SIGTERM to the
  server's exit when S3 comes back as the flush begins, against the time of a stop with
  nothing queued (medians of ``--stops`` each, alternated).

Usage::

    python bench/bench_outage.py [--saves 40] [--rounds 3] [--backlog 20] [--stops 3]
                                 [--s3 moto|seaweedfs] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench_common import JupyterSubprocess  # puts tests/ on sys.path
from helpers import notebook

from bookstore.pytest_plugin import server_config, settings_for, wait_until
from bookstore.testing import S3Server, TcpProxy, start_s3

BUCKET = "bench-outage"


def settings(s3: S3Server, proxy: TcpProxy, spool: Path) -> dict[str, Any]:
    """The tests' settings, through the proxy, with room for the flush to finish."""
    return settings_for(s3, BUCKET, str(spool), s3_endpoint_url=proxy.url, flush_timeout=60.0)


def timed_save(jp: JupyterSubprocess, path: str, source: str) -> float:
    started = time.perf_counter()
    jp.save_notebook(path, notebook(source))
    return (time.perf_counter() - started) * 1000


def pending(jp: JupyterSubprocess) -> int:
    return int(jp.request("GET", "/api/bookstore").json()["archive"]["pending"])


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def saves(jp: JupyterSubprocess, proxy: TcpProxy, n: int, rounds: int) -> dict[str, Any]:
    up: list[float] = []
    down: list[float] = []
    drains: list[float] = []
    for r in range(rounds):
        up += [timed_save(jp, "up.ipynb", f"up {r} {i}") for i in range(n)]
        wait_until(lambda: pending(jp) == 0, 120, "the uploads with S3 up")
        proxy.cut()
        down += [timed_save(jp, "down.ipynb", f"down {r} {i}") for i in range(n)]
        proxy.restore()
        started = time.perf_counter()
        wait_until(lambda: pending(jp) == 0, 120, "the drain after the outage")
        drains.append(time.perf_counter() - started)
    return {
        "saves": len(up),
        "up_p50_ms": statistics.median(up),
        "up_p95_ms": p95(up),
        "down_p50_ms": statistics.median(down),
        "down_p95_ms": p95(down),
        "drain_s": statistics.median(drains),
    }


def stop_time(s3: S3Server, tmp: Path, name: str, backlog: int) -> tuple[float, str]:
    """Seconds from SIGTERM to exit, with ``backlog`` saves queued during an outage."""
    with TcpProxy(s3.host, s3.port) as proxy:
        config = server_config(settings(s3, proxy, tmp / f"spool-{name}"))
        jp = JupyterSubprocess("server", tmp / name, config=config, request_timeout=120)
        with jp:
            proxy.cut()
            for i in range(backlog):
                jp.save_notebook("stop.ipynb", notebook(f"stop {i}"))

            def restore_when_flushing() -> None:
                try:
                    wait_until(lambda: "flushing" in jp.log_text(), 60, "the flush")
                finally:
                    proxy.restore()

            if backlog:
                threading.Thread(target=restore_when_flushing, daemon=True).start()
            else:
                proxy.restore()
            started = time.perf_counter()
            jp.kill(signal.SIGTERM)
            jp.wait(120)
            took = time.perf_counter() - started
        return took, jp.log_text()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=40, help="saves per state and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of up/down saves")
    parser.add_argument("--backlog", type=int, default=20, help="saves queued before the stop")
    parser.add_argument("--stops", type=int, default=3, help="stops timed per case")
    parser.add_argument("--s3", choices=["moto", "seaweedfs"], default="moto")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bookstore-bench-") as tmp_name:
        tmp = Path(tmp_name)
        s3 = start_s3(args.s3, tmp / "s3")
        try:
            s3.create_bucket(BUCKET, versioning=True)
            with TcpProxy(s3.host, s3.port) as proxy:
                config = server_config(settings(s3, proxy, tmp / "spool"))
                with JupyterSubprocess(
                    "server", tmp / "jupyter", config=config, request_timeout=120
                ) as jp:
                    result = saves(jp, proxy, args.saves, args.rounds)
            idle_stops: list[float] = []
            flush_stops: list[float] = []
            for i in range(args.stops):  # alternated, so both see the same machine noise
                idle_stops.append(stop_time(s3, tmp, f"stop-idle-{i}", 0)[0])
                took, log = stop_time(s3, tmp, f"stop-flush-{i}", args.backlog)
                if "not uploaded yet" in log:
                    raise SystemExit("the flush gave up: raise flush_timeout")
                flush_stops.append(took)
            idle_stop = statistics.median(idle_stops)
            flush_stop = statistics.median(flush_stops)
        finally:
            s3.stop()
    result.update(
        {
            "s3": args.s3,
            "stop_idle_s": idle_stop,
            "stop_flush_s": flush_stop,
            "backlog": args.backlog,
        }
    )

    print(f"S3={args.s3}, {result['saves']} saves per state")
    print(f"{'':>14} {'p50 ms':>8} {'p95 ms':>8}")
    print(f"{'S3 reachable':>14} {result['up_p50_ms']:>8.1f} {result['up_p95_ms']:>8.1f}")
    print(f"{'S3 cut':>14} {result['down_p50_ms']:>8.1f} {result['down_p95_ms']:>8.1f}")
    print(
        f"cut / reachable: p50 {result['down_p50_ms'] / result['up_p50_ms']:.2f}x, "
        f"p95 {result['down_p95_ms'] / result['up_p95_ms']:.2f}x"
    )
    print(f"drain of {args.saves} queued saves once S3 is back: {result['drain_s']:.2f} s (median)")
    print(
        f"stop (median of {args.stops}): {idle_stop:.2f} s with nothing queued, "
        f"{flush_stop:.2f} s flushing {args.backlog} saves ({flush_stop / idle_stop:.1f}x)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
