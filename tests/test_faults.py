"""Faults: S3 goes away, the server dies, the server stops. No save is ever lost or doubled.

The in-process tests reach S3 through a :class:`~bookstore.testing.TcpProxy` that they cut
and restore. The crash tests run a real ``jupyter server`` subprocess, kill it with SIGKILL,
and start a new one on the same spool.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    async_wait_until,
    first_source,
    get_status,
    list_versions,
    notebook,
    put_notebook,
    server_config,
    wait_until,
)
from jupyter_subprocess import JupyterSubprocess
from slow_link import SlowLink

from bookstore.pytest_plugin import S3Requests
from bookstore.testing import S3Server, TcpProxy

# --- helpers ---------------------------------------------------------------------------------


def archived_sources(s3: Any, bucket: str, key: str) -> list[str]:
    """The first-cell source of every version of ``key``, oldest first."""
    out = []
    for v in reversed(list_versions(s3, bucket, key)):
        body = s3.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])["Body"].read()
        out.append(first_source(body))
    return out


def archived_save_ids(s3: Any, bucket: str, key: str) -> list[str]:
    return [
        s3.head_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])["Metadata"]["save-id"]
        for v in reversed(list_versions(s3, bucket, key))
    ]


def expected(label: str, n: int) -> list[str]:
    """What :func:`archived_sources` shows for saves ``f"{label} {i}"``, i < n."""
    return [f"{label} {i:03d}  # 0" for i in range(n)]


def spool_entries(spool_dir: str | Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(spool_dir) if n.endswith(".entry"))
    except FileNotFoundError:
        return []


# --- (a) S3 unreachable during saves ---------------------------------------------------------


class ThroughProxy:
    """The server reaches S3 through ``s3_proxy``, which the test cuts and restores."""

    @pytest.fixture
    def bookstore_config(
        self, bookstore_config: dict[str, Any], s3_proxy: TcpProxy
    ) -> dict[str, Any]:
        return {**bookstore_config, "s3_endpoint_url": s3_proxy.url}


class TestS3Outage(ThroughProxy):
    async def test_saves_succeed_and_are_uploaded_once_s3_is_back(
        self,
        jp_fetch: Any,
        bookstore_ext: Any,
        s3_proxy: TcpProxy,
        s3: Any,
        s3_bucket: str,
        jp_root_dir: Path,
        caplog: pytest.LogCaptureFixture,
        s3_requests: S3Requests,
    ) -> None:
        n = 15
        archiver = bookstore_ext.archiver
        code, _ = await put_notebook(jp_fetch, "outage.ipynb", "outage 000")
        assert code == 201
        assert await archiver.wait_idle(20)
        await get_status(jp_fetch)  # the bucket check is done: no S3 request is due now

        # The uploader stays in its first wait after a failed attempt until we let it go.
        retry_waits: list[float] = []
        resume = asyncio.Event()

        async def held_sleep(delay: float) -> None:
            retry_waits.append(delay)
            await resume.wait()
            await asyncio.sleep(delay)

        archiver.uploader.sleep = held_sleep
        s3_proxy.cut()
        code, _ = await put_notebook(jp_fetch, "outage.ipynb", "outage 001")
        assert code == 200
        await async_wait_until(lambda: retry_waits, 20, "the first failed upload attempt")

        s3_requests.ops.clear()
        for i in range(2, n):
            code, model = await put_notebook(jp_fetch, "outage.ipynb", f"outage {i:03d}")
            assert code == 200
            assert "bookstore_save_id" in model
        # S3 is not on the save path: the saves sent no S3 request (so none waited on a
        # connection attempt) and all returned while the upload was still waiting to retry.
        assert s3_requests.ops == []
        assert len(retry_waits) == 1
        assert archiver.failed_attempts == 1
        assert "outage 014" in (jp_root_dir / "outage.ipynb").read_text()

        # The failed attempt shows in the status, with every save still queued.
        status = await get_status(jp_fetch)
        assert status["pending"] == n - 1
        assert status["failed_attempts"] == 1
        assert "unreachable" in status["last_error"]["message"]
        assert status["last_error"]["path"] == "outage.ipynb"

        s3_proxy.restore()
        resume.set()
        assert await archiver.wait_idle(30)
        assert archived_sources(s3, s3_bucket, "workspace/outage.ipynb") == expected("outage", n)
        assert (await get_status(jp_fetch))["pending"] == 0

        # The outage was logged once, and its end once, not once per retry.
        messages = [r.getMessage() for r in caplog.records if r.name == bookstore_ext.log.name]
        assert sum("will retry with backoff" in m for m in messages) == 1
        assert sum("uploads work again" in m for m in messages) == 1


class TestAnswerLost:
    """S3 stored an upload but its answer was lost: the retry must not store it again."""

    @pytest.fixture
    def link(self, s3_server: S3Server) -> Iterator[SlowLink]:
        with SlowLink(s3_server.host, s3_server.port, delay=1.5) as link:
            yield link

    @pytest.fixture
    def cuttable(self, link: SlowLink) -> Iterator[TcpProxy]:
        with TcpProxy("127.0.0.1", link.port) as proxy:
            yield proxy

    @pytest.fixture
    def bookstore_config(
        self, bookstore_config: dict[str, Any], cuttable: TcpProxy
    ) -> dict[str, Any]:
        return {**bookstore_config, "s3_endpoint_url": cuttable.url}

    async def test_connection_cut_mid_upload_does_not_double_the_version(
        self, jp_fetch: Any, bookstore_ext: Any, cuttable: TcpProxy, s3: Any, s3_bucket: str
    ) -> None:
        key = "workspace/cut.ipynb"
        code, model = await put_notebook(jp_fetch, "cut.ipynb", "cut 000")
        assert code == 201
        # S3 has the version as soon as the request is through; its answer is held back.
        await async_wait_until(
            lambda: len(list_versions(s3, s3_bucket, key)) == 1, 10, "the version in S3"
        )
        failed_before = bookstore_ext.archiver.failed_attempts
        cuttable.cut()  # the answer never arrives
        # That attempt fails, and so does the next one (which first asks S3 whether the save
        # arrived): both go unanswered.
        await async_wait_until(
            lambda: bookstore_ext.archiver.failed_attempts >= failed_before + 2,
            30,
            "two failed attempts while the link is cut",
        )
        cuttable.restore()
        assert await bookstore_ext.archiver.wait_idle(30)
        assert archived_save_ids(s3, s3_bucket, key) == [model["bookstore_save_id"]]


# --- (d2) the connection is cut in the middle of a multipart upload ----------------------------


class TestMultipartCut(ThroughProxy):
    async def test_cut_mid_multipart_leaves_no_incomplete_upload_and_the_save_lands(
        self,
        jp_fetch: Any,
        bookstore_ext: Any,
        s3_proxy: TcpProxy,
        s3: Any,
        s3_bucket: str,
        jp_root_dir: Path,
    ) -> None:
        archiver = bookstore_ext.archiver
        client = await archiver.store.client()
        parts: list[int] = []

        def before_part(params: dict[str, Any], **_: Any) -> None:
            parts.append(params["PartNumber"])
            if len(parts) == 2:  # part 1 is in S3: cut before part 2 goes out
                s3_proxy.cut()

        client.meta.events.register("before-parameter-build.s3.UploadPart", before_part)
        try:
            lines = "\n".join(os.urandom(32).hex() for _ in range(300_000))  # about 20 MB
            code, model = await put_notebook(jp_fetch, "cut.ipynb", lines)
            assert code == 201
            await async_wait_until(
                lambda: archiver.failed_attempts >= 1, 60, "a failed upload attempt"
            )
            # The upload begun is in S3, incomplete, and could not be aborted yet.
            assert len(s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])) == 1
        finally:
            client.meta.events.unregister("before-parameter-build.s3.UploadPart", before_part)
        s3_proxy.restore()
        assert await archiver.wait_idle(60), archiver.status()

        assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
        versions = list_versions(s3, s3_bucket, "workspace/cut.ipynb")
        assert len(versions) == 1
        on_disk = (jp_root_dir / "cut.ipynb").read_bytes()
        got = s3.get_object(Bucket=s3_bucket, Key="workspace/cut.ipynb")
        assert got["Body"].read() == on_disk
        assert got["Metadata"]["save-id"] == model["bookstore_save_id"]
        assert parts[:2] == [1, 2]


# --- (e) retries back off exponentially, capped -----------------------------------------------


class TestBackoff:
    """The bucket does not exist yet: every attempt fails at once (no botocore retry on 404),
    so the time between attempts is the archiver's own backoff."""

    @pytest.fixture
    def late_bucket(self) -> str:
        return f"test-late-{uuid.uuid4().hex[:16]}"

    @pytest.fixture
    def bookstore_config(
        self, bookstore_config: dict[str, Any], late_bucket: str
    ) -> dict[str, Any]:
        return {
            **bookstore_config,
            "s3_bucket": late_bucket,
            "upload_retry_initial_delay": 0.05,
            "upload_retry_max_delay": 0.4,
        }

    async def test_retry_intervals_grow_then_stay_capped(
        self,
        jp_fetch: Any,
        bookstore_ext: Any,
        s3_server: S3Server,
        s3: Any,
        late_bucket: str,
    ) -> None:
        uploader = bookstore_ext.archiver.uploader
        waits: list[float] = []
        bucket_made = asyncio.Event()

        async def recording_sleep(delay: float) -> None:
            # The sequence is what counts: no real wait; after 12, wait for the bucket.
            waits.append(delay)
            if len(waits) >= 12:
                await bucket_made.wait()

        uploader.sleep = recording_sleep
        uploader.jitter = lambda: 0.5  # the middle of the 0.5-1x jitter range
        await put_notebook(jp_fetch, "backoff.ipynb", "backoff 000")
        await async_wait_until(lambda: len(waits) >= 12, 60, "12 backoff waits")
        status = await get_status(jp_fetch)
        s3_server.create_bucket(late_bucket)  # and the retries pick it up
        bucket_made.set()
        assert await bookstore_ext.archiver.wait_idle(30)
        assert len(list_versions(s3, late_bucket, "workspace/backoff.ipynb")) == 1

        # Base delays 0.05, 0.1, 0.2, 0.4, 0.4, ... each times 0.75 (jitter 0.5).
        assert waits[:12] == [pytest.approx(min(0.05 * 2**i, 0.4) * 0.75) for i in range(12)]
        assert status["failed_attempts"] >= 12
        assert "does not exist" in status["last_error"]["message"], status["last_error"]


# --- (b) SIGKILL while S3 is down ----------------------------------------------------------


@pytest.mark.slow
def test_sigkill_with_s3_down_then_restart_uploads_every_save_once(
    tmp_path: Path, bookstore_config: dict[str, Any], s3_proxy: TcpProxy, s3: Any, s3_bucket: str
) -> None:
    # Default spool location: under JUPYTER_DATA_DIR, which both servers share.
    config = server_config(bookstore_config, s3_endpoint_url=s3_proxy.url)
    del config["BookstoreSettings"]["spool_dir"]
    spool = tmp_path / "jp" / "data" / "bookstore" / "spool"
    paths = ["crash-a.ipynb", "sub/crash-b.ipynb"]
    n = 8

    s3_proxy.cut()
    with JupyterSubprocess("server", tmp_path / "jp", config=config) as jp:
        jp.request("PUT", "/api/contents/sub", json={"type": "directory"}).raise_for_status()
        for i in range(n):
            for path in paths:
                jp.save_notebook(path, notebook(f"{path} {i:03d}"))
        assert jp.request("GET", "/api/bookstore").json()["archive"]["pending"] == n * len(paths)
        jp.kill(signal.SIGKILL)
        assert jp.wait(10) == -signal.SIGKILL
    assert len(spool_entries(spool)) == n * len(paths)
    for path in paths:
        assert list_versions(s3, s3_bucket, f"workspace/{path}") == []

    s3_proxy.restore()
    with JupyterSubprocess("server", tmp_path / "jp", config=config) as jp2:
        wait_until(lambda: not spool_entries(spool), 60, "the spool to drain")
        status = jp2.request("GET", "/api/bookstore").json()["archive"]
        assert status["pending"] == 0
        assert status["uploaded"] == n * len(paths)
    for path in paths:
        assert archived_sources(s3, s3_bucket, f"workspace/{path}") == expected(path, n)


# --- (c) SIGKILL while uploads are in flight ------------------------------------------------


@pytest.mark.slow
def test_sigkill_during_uploads_then_restart_has_no_gap_and_no_duplicate(
    tmp_path: Path, bookstore_config: dict[str, Any], s3_server: S3Server, s3: Any, s3_bucket: str
) -> None:
    paths = [f"inflight-{p}.ipynb" for p in range(4)]
    n = 10
    # S3's answers are held back 3 s (botocore's "100 Continue" too): the server dies once
    # S3 has stored the first save of each path but before the server has heard so.
    with SlowLink(s3_server.host, s3_server.port, delay=3.0) as link:
        config = server_config(bookstore_config, s3_endpoint_url=link.url)
        with JupyterSubprocess("server", tmp_path / "jp", config=config) as jp:

            def saves_of(path: str) -> list[str]:
                return [
                    jp.save_notebook(path, notebook(f"{path} {i:03d}"))["bookstore_save_id"]
                    for i in range(n)
                ]

            with ThreadPoolExecutor(len(paths)) as pool:
                save_ids = dict(zip(paths, pool.map(saves_of, paths)))
            wait_until(
                lambda: all(list_versions(s3, s3_bucket, f"workspace/{p}") for p in paths),
                10,
                "the first uploads to reach S3",
            )
            jp.kill(signal.SIGKILL)
            jp.wait(10)
    in_s3_at_crash = {p: len(list_versions(s3, s3_bucket, f"workspace/{p}")) for p in paths}
    assert all(count == 1 for count in in_s3_at_crash.values()), in_s3_at_crash
    assert len(spool_entries(bookstore_config["spool_dir"])) == n * len(paths)

    config = server_config(bookstore_config)  # straight to S3 this time
    with JupyterSubprocess("server", tmp_path / "jp", config=config) as jp2:
        wait_until(lambda: not spool_entries(bookstore_config["spool_dir"]), 60, "the drain")
        assert jp2.request("GET", "/api/bookstore").json()["archive"]["pending"] == 0
    for path in paths:
        key = f"workspace/{path}"
        assert archived_save_ids(s3, s3_bucket, key) == save_ids[path]
        assert archived_sources(s3, s3_bucket, key) == expected(path, n)
    # Each path's first save was found in S3 and not uploaded again.
    assert jp2.log_text().count("was already in S3") == len(paths)


# --- (d) a clean stop flushes the queue ------------------------------------------------------


def _backlog(jp: JupyterSubprocess, path: str, n: int) -> None:
    for i in range(n):
        jp.save_notebook(path, notebook(f"{path} {i:03d}"))
    assert jp.request("GET", "/api/bookstore").json()["archive"]["pending"] == n


def _restore_once_flushing(jp: JupyterSubprocess, proxy: TcpProxy, n: int) -> None:
    """Restore the S3 link once the stopping server has logged its flush (or after 60 s)."""
    try:
        wait_until(lambda: f"flushing {n} queued upload(s)" in jp.log_text(), 60, "the flush")
    finally:
        proxy.restore()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "api-shutdown", "ctrl-c-twice"])
def test_clean_stop_flushes_the_queue(
    how: str,
    tmp_path: Path,
    bookstore_config: dict[str, Any],
    s3_proxy: TcpProxy,
    s3: Any,
    s3_bucket: str,
) -> None:
    n = 6
    config = server_config(bookstore_config, s3_endpoint_url=s3_proxy.url)
    jp = JupyterSubprocess("server", tmp_path / "jp", config=config, tty=how == "ctrl-c-twice")
    with jp:
        s3_proxy.cut()
        _backlog(jp, "flush.ipynb", n)
        # S3 comes back only once the stop has begun (the server says it is flushing): the
        # flush has all the work to do. A thread watches, as the API shutdown blocks.
        comeback = threading.Thread(
            target=_restore_once_flushing, args=(jp, s3_proxy, n), daemon=True
        )
        comeback.start()
        if how == "SIGTERM":
            jp.kill(signal.SIGTERM)
        elif how == "api-shutdown":
            jp.request("POST", "/api/shutdown")  # answers once the server has cleaned up
        else:
            jp.kill(signal.SIGINT)  # "Shut down this Jupyter server (y/[n])?"
            wait_until(lambda: "Shut down this Jupyter server" in jp.log_text(), 30, "the prompt")
            jp.kill(signal.SIGINT)  # the second Ctrl-C stops without asking
        jp.wait(bookstore_config["flush_timeout"] + 15)  # raises if the stop is not bounded
        comeback.join()
    # The flush finished the uploads itself (it did not give up at flush_timeout).
    assert "not uploaded yet" not in jp.log_text()
    assert f"flushing {n} queued upload(s)" in jp.log_text()
    assert spool_entries(bookstore_config["spool_dir"]) == []
    assert archived_sources(s3, s3_bucket, "workspace/flush.ipynb") == expected("flush.ipynb", n)


@pytest.mark.slow
def test_stop_with_s3_down_is_bounded_and_keeps_the_spool(
    tmp_path: Path, bookstore_config: dict[str, Any], s3_proxy: TcpProxy, s3: Any, s3_bucket: str
) -> None:
    n = 4
    config = server_config(bookstore_config, s3_endpoint_url=s3_proxy.url, flush_timeout=2.0)
    with JupyterSubprocess("server", tmp_path / "jp", config=config) as jp:
        s3_proxy.cut()
        _backlog(jp, "kept.ipynb", n)
        jp.kill(signal.SIGTERM)
        jp.wait(30)  # raises if the stop is not bounded
    # The flush gave up after flush_timeout (no wall-clock check: the machine may be busy).
    assert f"flushing {n} queued upload(s) (up to 2s)" in jp.log_text()
    assert f"{n} save(s) not uploaded yet" in jp.log_text()
    assert len(spool_entries(bookstore_config["spool_dir"])) == n
    assert list_versions(s3, s3_bucket, "workspace/kept.ipynb") == []


@pytest.mark.slow
def test_sigint_without_terminal_exits_and_loses_nothing(
    tmp_path: Path, bookstore_config: dict[str, Any], s3_proxy: TcpProxy, s3: Any, s3_bucket: str
) -> None:
    """Without a terminal, jupyter_server exits on SIGINT with no clean-up: the spool keeps all."""
    n = 4
    config = server_config(bookstore_config, s3_endpoint_url=s3_proxy.url)
    with JupyterSubprocess("server", tmp_path / "jp", config=config) as jp:
        s3_proxy.cut()
        _backlog(jp, "sigint.ipynb", n)
        jp.kill(signal.SIGINT)
        jp.wait(15)  # used to hang: anyio worker threads held by the uploader's tasks
    assert len(spool_entries(bookstore_config["spool_dir"])) == n
    s3_proxy.restore()
    with JupyterSubprocess("server", tmp_path / "jp", config=config):
        wait_until(lambda: not spool_entries(bookstore_config["spool_dir"]), 60, "the drain")
    assert archived_sources(s3, s3_bucket, "workspace/sigint.ipynb") == expected("sigint.ipynb", n)
