"""Save latency with and without bookstore, and a 1,000-save burst, side by side in one run.

Starts, on loopback:
  * an S3 server in a subprocess, so its work does not share our GIL: moto's server mode,
    or SeaweedFS with ``--s3 seaweedfs`` (moto spends about 8 ms of CPU on each upload, on
    the same CPUs as the servers measured),
  * Jupyter server A: plain jupyter_server, default contents manager, bookstore disabled,
  * Jupyter server B: the same, with bookstore's archiving contents manager and extension,
then PUTs notebooks through the contents API, alternating A and B save by save so both see
the same machine noise, and prints p50 / p95 per size (10 KB, 1 MB, 10 MB, 50 MB) and the
B/A ratios. Each timed save starts once B's uploads are done (plus ``--gap-ms``): on
shared CPUs an upload slows whichever save runs beside it, A's too, which would flatter B.
``--back-to-back`` times them one right after the other instead (the stress case).
Then the outage test: a third server C, bookstore too, whose S3 never answers,
alternating 10 KB saves with B (S3 up): the C/B ratio. Then the memory test: 8 notebooks
of 50 MB saved at once to each server, and the peak RSS of each server process (for B
until its uploads are done). Finally it sends a burst of 1,000 saves across 50 notebooks
to B and reports how many became S3 versions, whether each notebook's versions are in
save order, and how long the queue took to drain. ``--plot out.png`` draws the ratio and
the p50s against the notebook size (needs matplotlib: ``pip install .[bench]``).

    python bench/bench_save.py [--saves 60] [--burst 1000] [--notebooks 50] [--json out.json]
                               [--outage-saves 40] [--plot docs/images/save-overhead.png]
                               [--s3 moto|seaweedfs]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import nbformat
import requests

from bookstore.testing import S3Server, start_s3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2, headers=headers).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


def make_notebook(target_bytes: int, salt: str) -> dict[str, Any]:
    """A valid notebook of roughly ``target_bytes`` once serialised."""
    nb = nbformat.v4.new_notebook()
    line = "x = " + "1234567890" * 9 + "\n"
    per_cell = 2000
    n_cells = max(1, target_bytes // (per_cell + 200))
    for i in range(n_cells):
        src = f"# cell {i} {salt}\n" + line * (per_cell // len(line))
        nb.cells.append(nbformat.v4.new_code_cell(src))
    return json.loads(nbformat.writes(nb))  # type: ignore[no-any-return]


def start_s3_process(kind: str, workdir: Path) -> S3Server:
    """An S3 server in its own process: moto's server mode, or SeaweedFS (``weed mini``)."""
    if kind == "seaweedfs":
        return start_s3("seaweedfs", workdir)
    port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def stop() -> None:
        moto.terminate()
        moto.wait()

    server = S3Server(
        kind="moto",
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key_id="bench",
        secret_access_key="bench",
        _stopper=stop,
    )
    try:
        wait_http(server.endpoint_url + "/moto-api/")
    except BaseException:
        stop()
        raise
    return server


class Jupyter:
    def __init__(
        self,
        name: str,
        workdir: Path,
        env: dict[str, str],
        archive: bool,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        root = workdir / f"root-{name}"
        root.mkdir(parents=True)
        home = workdir / f"jupyter-{name}"
        env = dict(env)
        env.update(
            JUPYTER_CONFIG_DIR=str(home / "config"),
            JUPYTER_DATA_DIR=str(home / "data"),
            JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        )
        if settings:  # BookstoreSettings of this server (--setting)
            (home / "config").mkdir(parents=True, exist_ok=True)
            config = {"BookstoreSettings": settings}
            (home / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
        args = [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.log_level=WARN",
        ]
        # Only the server under test differs: same server, same extensions otherwise.
        if archive:
            args += [
                "--ServerApp.contents_manager_class=bookstore.BookstoreContentsArchiver",
                "--ServerApp.jpserver_extensions=bookstore=True",
            ]
        else:
            args += ["--ServerApp.jpserver_extensions=bookstore=False"]
        self.log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {self.token}"
        try:
            wait_http(self.url + "/api/status", timeout=300, headers=dict(self.session.headers))
        except RuntimeError:
            self.log.flush()
            print((workdir / f"{name}.log").read_text()[-3000:], file=sys.stderr)
            raise

    def save(self, path: str, nb: dict[str, Any]) -> float:
        body = json.dumps({"type": "notebook", "content": nb})
        t0 = time.perf_counter()
        r = self.session.put(f"{self.url}/api/contents/{path}", data=body, timeout=60)
        elapsed = time.perf_counter() - t0
        r.raise_for_status()
        return elapsed

    def wait_archived(self, timeout: float = 120) -> None:
        """Until this server's archive queue is empty (no upload left running)."""
        deadline = time.monotonic() + timeout
        while self.status()["archive"]["pending"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: uploads still queued after {timeout}s")
            time.sleep(0.005)

    def status(self) -> dict[str, Any]:
        r = self.session.get(f"{self.url}/api/bookstore", timeout=30)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def latency(
    a: Jupyter,
    b: Jupyter,
    size: int,
    n: int,
    labels: tuple[str, str] = ("plain", "bookstore"),
    settle: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Saves of a ``size`` notebook alternating between ``a`` and ``b``: p50, p95, b/a ratios.

    ``settle`` runs before each timed save (not timed): the quiet mode waits there until
    the previous save's upload is done. Without it, saves go back to back.
    """
    first, second = labels
    nb_a = make_notebook(size, "a")
    nb_b = make_notebook(size, "b")
    actual = len(nbformat.writes(nbformat.from_dict(nb_a)).encode())
    for srv, nb in ((a, nb_a), (b, nb_b)):  # warm up both
        for _ in range(5 if size < 5_000_000 else 1):
            srv.save(f"lat-{size}.ipynb", nb)
    times: dict[str, list[float]] = {first: [], second: []}
    for i in range(n):
        order = [(a, first, nb_a), (b, second, nb_b)]
        if i % 2:
            order.reverse()
        for srv, label, nb in order:
            nb["cells"][0]["source"] = f"# save {i}"
            if settle is not None:
                settle()
            times[label].append(srv.save(f"lat-{size}.ipynb", nb))
    out: dict[str, Any] = {"bytes": actual, "saves": n, "quiet": settle is not None}
    for label, ts in times.items():
        out[label] = {"p50_ms": pct(ts, 0.5) * 1e3, "p95_ms": pct(ts, 0.95) * 1e3}
    out["ratio_p50"] = out[second]["p50_ms"] / out[first]["p50_ms"]
    out["ratio_p95"] = out[second]["p95_ms"] / out[first]["p95_ms"]
    # The last quarter alone: whether a cost grows with the number of saves made (a queue
    # that grows during an outage, say).
    last = {label: ts[len(ts) - max(1, len(ts) // 4) :] for label, ts in times.items()}
    out["ratio_p50_last_quarter"] = pct(last[second], 0.5) / pct(last[first], 0.5)
    # The A-B, B-A order makes every other save of a server come right after one to the
    # same server (B's saves of odd rounds, A's of even rounds after the first), the others
    # right after one to the other server: back to back, the two ratios apart show what a
    # save pays for the work the previous save left running (an upload).
    same = {first: times[first][2::2], second: times[second][1::2]}
    other = {first: times[first][1::2], second: times[second][2::2]}
    out["ratio_p50_after_same_server"] = pct(same[second], 0.5) / pct(same[first], 0.5)
    out["ratio_p50_after_other_server"] = pct(other[second], 0.5) / pct(other[first], 0.5)
    return out


class HungS3:
    """An S3 endpoint that never answers: connections queue in its backlog, unanswered."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


def outage(
    b: Jupyter, c: Jupyter, size: int, n: int, settle: Callable[[], None] | None
) -> dict[str, Any]:
    """Saves to ``c`` (bookstore, its S3 never answers) against ``b`` (bookstore, S3 up)."""
    r = latency(b, c, size, n, labels=("s3_up", "s3_down"), settle=settle)
    archive = c.status()["archive"]
    r["queued_during_outage"] = archive["pending"]
    r["uploaded_during_outage"] = archive["uploaded"]
    return r


def peak_rss_during(pid: int, work: Any) -> tuple[int, Any]:
    """Peak resident set size of ``pid`` (bytes) while ``work()`` runs, and its result.

    Resets the kernel's high-water mark first (``/proc/<pid>/clear_refs``) and also samples
    ``VmRSS`` every 10 ms, in case the reset is not allowed.
    """

    def status(field: str) -> int:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        hwm = True
    except OSError:
        hwm = False
    peak = status("VmRSS")
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(work)
        while not future.done():
            peak = max(peak, status("VmRSS"))
            time.sleep(0.01)
        result = future.result()
    if hwm:
        peak = max(peak, status("VmHWM"))
    return peak, result


def memory(a: Jupyter, b: Jupyter, size: int, count: int) -> dict[str, Any]:
    """Peak RSS of each server while ``count`` notebooks of ``size`` bytes are saved at once."""
    nbs = [make_notebook(size, f"mem {i}") for i in range(count)]
    bodies = [json.dumps({"type": "notebook", "content": nb}) for nb in nbs]
    out: dict[str, Any] = {"bytes": len(bodies[0]), "notebooks": count}
    for srv, label in ((a, "plain"), (b, "bookstore")):

        def work(srv: Jupyter = srv) -> None:
            def put(i: int) -> None:
                r = srv.session.put(
                    f"{srv.url}/api/contents/mem-{i}.ipynb", data=bodies[i], timeout=600
                )
                r.raise_for_status()

            with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
                list(pool.map(put, range(count)))
            if srv is b:  # the uploads are part of what bookstore costs
                while srv.status()["archive"]["pending"]:
                    time.sleep(0.05)

        base = rss(srv.proc.pid)
        peak, _ = peak_rss_during(srv.proc.pid, work)
        out[label] = {"base_mb": base / 2**20, "peak_mb": peak / 2**20}
    out["ratio_peak"] = out["bookstore"]["peak_mb"] / out["plain"]["peak_mb"]
    return out


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def plot(results: dict[str, Any], out: str) -> None:
    """PNG: the bookstore/plain ratio of p50, and both p50s, against the notebook size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(results["latency"].values(), key=lambda r: r["bytes"])
    sizes = [r["bytes"] / 1e6 for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(sizes, [r["ratio_p50"] for r in rows], "o-", label="bookstore / plain (p50)")
    left.axhline(1.05, color="grey", linestyle="--", label="target 1.05")
    left.axhline(1.0, color="black", linewidth=0.5)
    left.set_xscale("log")
    left.set_xlabel("notebook size (MB)")
    left.set_ylabel("save time ratio")
    left.set_title("archiving overhead")
    left.legend()
    for label in ("plain", "bookstore"):
        right.plot(sizes, [r[label]["p50_ms"] for r in rows], "o-", label=label)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("notebook size (MB)")
    right.set_ylabel("save p50 (ms)")
    right.set_title("save latency")
    right.legend()
    load = results["machine"].get("loadavg")
    fig.suptitle(
        f"bench/bench_save.py, {results['machine']['cpus']} CPUs"
        + (f", load average {load[0]:.1f}" if load else "")
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def burst(b: Jupyter, s3: Any, bucket: str, total: int, notebooks: int) -> dict[str, Any]:
    base = make_notebook(10_000, "burst")
    b.status()  # the queue is empty before we start
    b.session.put(f"{b.url}/api/contents/burst", json={"type": "directory"}, timeout=30)
    jobs = [(f"burst/nb-{i % notebooks:03d}.ipynb", i) for i in range(total)]

    def one(job: tuple[str, int]) -> float:
        path, i = job
        nb = json.loads(json.dumps(base))
        nb["cells"][0]["source"] = f"# burst save {i}"
        return b.save(path, nb)

    t0 = time.perf_counter()
    # Saves of one notebook must not overlap (each client saves its own notebooks in order).
    by_nb: dict[str, list[tuple[str, int]]] = {}
    for job in jobs:
        by_nb.setdefault(job[0], []).append(job)

    def client(nb_jobs: list[tuple[str, int]]) -> list[float]:
        return [one(j) for j in nb_jobs]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        lat = [t for ts in pool.map(client, by_nb.values()) for t in ts]
    t_saved = time.perf_counter()
    max_pending = 0
    while True:
        pending = b.status()["archive"]["pending"]
        max_pending = max(max_pending, pending)
        if pending == 0:
            break
        if time.perf_counter() - t_saved > 600:
            raise RuntimeError("queue did not drain in 10 minutes")
        time.sleep(0.05)
    t_drained = time.perf_counter()
    by_key: dict[str, list[dict[str, Any]]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(
        Bucket=bucket, Prefix="workspace/burst/"
    ):
        for v in page.get("Versions", []):
            by_key.setdefault(v["Key"], []).append(v)
    versions = sum(len(vs) for vs in by_key.values())

    def save_ids(key: str) -> list[str]:
        # S3 lists a key's versions newest first; oldest first, their save ids must sort.
        return [
            s3.head_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])["Metadata"]["save-id"]
            for v in reversed(by_key[key])
        ]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        in_order = all(ids == sorted(ids) for ids in pool.map(save_ids, by_key))
    return {
        "saves": total,
        "notebooks": notebooks,
        "versions_archived": versions,
        "each_notebook_in_save_order": in_order,
        "save_phase_s": t_saved - t0,
        "drain_after_last_save_s": t_drained - t_saved,
        "total_s": t_drained - t0,
        "pending_at_last_save": max_pending,
        "save_p50_ms": pct(lat, 0.5) * 1e3,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--saves", type=int, default=60, help="timed saves per server and size")
    ap.add_argument("--burst", type=int, default=1000, help="saves in the burst (0: none)")
    ap.add_argument("--notebooks", type=int, default=50)
    ap.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a BookstoreSettings value for the bookstore server, e.g. upload_quiet_period=0",
    )
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--plot", help="draw the ratio and the p50s against size into this PNG")
    ap.add_argument(
        "--sizes",
        default="10000,1000000,10000000,50000000",
        help="notebook sizes in bytes, comma-separated",
    )
    ap.add_argument(
        "--outage-saves",
        type=int,
        default=40,
        help="saves per server while S3 is down vs up (0: skip); 10 KB notebooks",
    )
    ap.add_argument(
        "--back-to-back",
        action="store_true",
        help="time saves back to back, each while the previous one's upload may still run "
        "(on this machine's shared CPUs it then slows whichever save comes next, the plain "
        "server's too); by default each timed save starts once the bookstore server's "
        "archive queue is empty, plus --gap-ms",
    )
    ap.add_argument(
        "--gap-ms",
        type=float,
        default=20,
        help="quiet mode: pause before each timed save, after the uploads are done",
    )
    ap.add_argument("--memory-notebooks", type=int, default=8)
    ap.add_argument("--memory-size", type=int, default=50_000_000)
    ap.add_argument(
        "--s3",
        choices=["moto", "seaweedfs"],
        default="moto",
        help="the S3 server: moto's server mode (default) or SeaweedFS (weed mini)",
    )
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bookstore-bench-"))
    s3_server = start_s3_process(args.s3, workdir)
    endpoint = s3_server.endpoint_url
    key_id, secret = s3_server.access_key_id, s3_server.secret_access_key
    servers: list[Jupyter] = []
    try:
        s3 = s3_server.boto3_client()
        bucket = "bench"
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JPYNB_"))}
        env.update(
            JPYNB_S3_BUCKET=bucket,
            JPYNB_S3_ENDPOINT_URL=endpoint,
            JPYNB_S3_ACCESS_KEY_ID=key_id,
            JPYNB_S3_SECRET_ACCESS_KEY=secret,
            JPYNB_S3_REGION_NAME=s3_server.region_name,
        )
        a = Jupyter("plain", workdir, env, archive=False)
        servers.append(a)
        settings = {}
        for item in args.setting:
            name, _, value = item.partition("=")
            settings[name] = json.loads(value)
        b = Jupyter("bookstore", workdir, env, archive=True, settings=settings)
        servers.append(b)

        results: dict[str, Any] = {
            "s3": args.s3,
            "latency": {},
            "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        }
        settle: Callable[[], None] | None = None
        if not args.back_to_back:

            def settle() -> None:
                b.wait_archived()
                a.session.get(f"{a.url}/api/status", timeout=30)  # one request each
                time.sleep(args.gap_ms / 1000)

        mode = "back to back"
        if settle is not None:
            mode = f"each once B's uploads are done, plus {args.gap_ms:g} ms"
        results["quiet_gap_ms"] = None if settle is None else args.gap_ms
        print(f"save latency, {args.saves} saves per server and size, alternating A/B, {mode}")
        print(
            f"{'size':>8} {'plain p50':>10} {'p95':>8} {'bookstore p50':>14} {'p95':>8} "
            f"{'ratio p50':>10} {'ratio p95':>10} {'after same':>11} {'after other':>12}"
        )
        for size in (int(x) for x in args.sizes.split(",")):
            # Fewer saves of the big notebooks: each takes a second or more.
            n = args.saves if size <= 1_000_000 else max(5, args.saves * 1_000_000 // size * 4)
            r = latency(a, b, size, n, settle=settle)
            results["latency"][str(size)] = r
            print(
                f"{r['bytes']:>8} {r['plain']['p50_ms']:>9.1f}ms {r['plain']['p95_ms']:>6.1f}ms "
                f"{r['bookstore']['p50_ms']:>13.1f}ms {r['bookstore']['p95_ms']:>6.1f}ms "
                f"{r['ratio_p50']:>10.3f} {r['ratio_p95']:>10.3f} "
                f"{r['ratio_p50_after_same_server']:>11.3f} "
                f"{r['ratio_p50_after_other_server']:>12.3f}"
            )
        if args.memory_notebooks:
            m = memory(a, b, args.memory_size, args.memory_notebooks)
            results["memory"] = m
            print(
                f"peak RSS while {m['notebooks']} notebooks of {m['bytes'] / 1e6:.0f} MB are "
                f"saved at once: plain {m['plain']['peak_mb']:.0f} MB (base "
                f"{m['plain']['base_mb']:.0f}), bookstore {m['bookstore']['peak_mb']:.0f} MB "
                f"(base {m['bookstore']['base_mb']:.0f}, uploads included): "
                f"ratio {m['ratio_peak']:.2f}"
            )
        if args.outage_saves:
            hung = HungS3()
            c = Jupyter("outage", workdir, {**env, "JPYNB_S3_ENDPOINT_URL": hung.url}, archive=True)
            servers.append(c)
            try:
                o = outage(b, c, 10_000, args.outage_saves, settle)
            finally:
                c.stop()
                servers.remove(c)
                hung.close()
            results["outage"] = o
            print(
                f"S3 outage, {o['saves']} saves of {o['bytes']} bytes each: S3 up p50 "
                f"{o['s3_up']['p50_ms']:.1f}ms, S3 down (never answers) p50 "
                f"{o['s3_down']['p50_ms']:.1f}ms: ratio p50 {o['ratio_p50']:.3f}, p95 "
                f"{o['ratio_p95']:.3f}; last quarter of the saves, p50 "
                f"{o['ratio_p50_last_quarter']:.3f}; {o['queued_during_outage']} save(s) queued, "
                f"{o['uploaded_during_outage']} uploaded"
            )
        burst_ok = True
        if args.burst:
            r = burst(b, s3, bucket, args.burst, args.notebooks)
            results["burst"] = r
            burst_ok = r["versions_archived"] == r["saves"] and r["each_notebook_in_save_order"]
            print(
                f"burst: {r['saves']} saves across {r['notebooks']} notebooks -> "
                f"{r['versions_archived']} S3 versions (in save order: "
                f"{r['each_notebook_in_save_order']}); saves took {r['save_phase_s']:.1f}s "
                f"(p50 {r['save_p50_ms']:.1f}ms), queue drained "
                f"{r['drain_after_last_save_s']:.1f}s after the last save "
                f"({r['total_s']:.1f}s in all)"
            )
        results["machine"]["loadavg_end"] = os.getloadavg()
        print(
            "load average at start {:.1f} {:.1f} {:.1f}, at end {:.1f} {:.1f} {:.1f}".format(
                *results["machine"]["loadavg"], *results["machine"]["loadavg_end"]
            )
        )
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        if args.plot:
            plot(results, args.plot)
        return 0 if burst_ok else 1
    finally:
        for srv in servers:
            srv.stop()
        s3_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
