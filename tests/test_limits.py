"""Limits and failure behaviour of the spool (docs/limits.md).

- A bounded spool: with S3 down, saves keep succeeding, the spool stays under its bounds,
  and the oldest and the newest save of each path reach S3 once it is back, counting
  the saves dropped in between.
- One spool, one server: a second server gets a sibling spool; leftovers of a server that
  is gone are adopted; a stage whose bytes reached the disk is kept at start-up.
- Saves S3 can never accept are set aside, reported, and do not block the queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError
from helpers import get_status, list_versions, notebook, put_notebook, server_config
from jupyter_subprocess import JupyterSubprocess

from bookstore.s3 import (
    MAX_METADATA_BYTES,
    MAX_PUT_BYTES,
    S3BadRequest,
    S3Refused,
    S3Store,
    S3Unavailable,
    check_upload,
    decode_metadata,
    encode_metadata,
    fit_metadata,
    metadata_bytes,
    translate_error,
)
from bookstore.settings import BookstoreSettings
from bookstore.spool import Archiver
from bookstore.testing import TcpProxy

LOG = logging.getLogger("test_limits")


# --- helpers ---------------------------------------------------------------------------------


def first_source(body: bytes) -> str:
    """The first cell's source as given to :func:`notebook` (without its "  # 0" tag)."""
    source = json.loads(body)["cells"][0]["source"]
    text = "".join(source) if isinstance(source, list) else str(source)
    return text.rsplit("  # ", 1)[0]


def versions_oldest_first(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    """Each version's first-cell source and metadata, oldest first."""
    out = []
    for v in reversed(list_versions(s3, bucket, key)):
        got = s3.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])
        out.append({"source": first_source(got["Body"].read()), "meta": got["Metadata"]})
    return out


def spool_bytes(spool: str | Path) -> int:
    """What the queue occupies: entries and stages at the top of the spool."""
    total = 0
    for name in os.listdir(spool):
        if name.endswith((".entry", ".tmp")):
            total += (Path(spool) / name).stat().st_size
    return total


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def spool_files(spool: str | Path, suffix: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(spool) if n.endswith(suffix))
    except FileNotFoundError:
        return []


async def mkdir(jp_fetch: Any, path: str) -> None:
    body = json.dumps({"type": "directory"})
    await jp_fetch("api", "contents", path, method="PUT", body=body)


def nb_bytes(source: str) -> bytes:
    return (json.dumps(notebook(source), indent=1) + "\n").encode()


class Server:
    """An archiver and its S3 store built from config, like the extension builds them."""

    def __init__(self, config: dict[str, Any], root_dir: Path | None = None) -> None:
        self.settings = BookstoreSettings(**config)
        self.store = S3Store(self.settings)
        self.archiver = Archiver(self.settings, self.store, LOG)
        self.archiver.root_dir = str(root_dir) if root_dir else None

    async def close(self, flush_timeout: float = 0.5) -> None:
        await self.archiver.stop(flush_timeout)
        await self.store.close()


# --- 7. a bounded spool ----------------------------------------------------------------------


class TestBoundedSpool:
    max_bytes = 6000  # about six saves of the small notebooks below

    @pytest.fixture
    def bookstore_config(
        self, bookstore_config: dict[str, Any], s3_proxy: TcpProxy
    ) -> dict[str, Any]:
        return {
            **bookstore_config,
            "s3_endpoint_url": s3_proxy.url,
            "max_spool_bytes": self.max_bytes,
            "min_free_disk_bytes": 0,
        }

    async def test_outage_keeps_oldest_and_newest_and_counts_the_dropped(
        self,
        jp_fetch: Any,
        bookstore_ext: Any,
        s3_proxy: TcpProxy,
        s3: Any,
        s3_bucket: str,
        spool_dir: str,
        jp_root_dir: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        paths = ["bound-a.ipynb", "bound-b.ipynb"]
        n = 8
        for path in paths:
            code, _ = await put_notebook(jp_fetch, path, f"{path} before")
            assert code == 201
        assert await bookstore_ext.archiver.wait_idle(20)

        s3_proxy.cut()
        for i in range(n):
            for path in paths:
                code, _ = await put_notebook(jp_fetch, path, f"{path} {i}")
                assert code == 200  # the spool being full never fails a save
                assert spool_bytes(spool_dir) <= self.max_bytes
            assert f"{paths[0]} {i}" in (jp_root_dir / paths[0]).read_text()
        status = await get_status(jp_fetch)
        dropped = status["dropped_saves"]
        assert dropped > 0
        assert status["spool_limit_reached"] is True
        assert status["pending"] == 2 * n - dropped
        assert status["spool_bytes"] <= self.max_bytes

        s3_proxy.restore()
        assert await bookstore_ext.archiver.wait_idle(30)
        arrived_in_all = 0
        for path in paths:
            versions = versions_oldest_first(s3, s3_bucket, f"workspace/{path}")
            sources = [v["source"] for v in versions]
            assert sources[0] == f"{path} before"
            outage = sources[1:]
            # The oldest and the newest save of the outage arrived, in order.
            assert outage[0] == f"{path} 0"
            assert outage[-1] == f"{path} {n - 1}"
            assert outage == sorted(outage, key=lambda s: int(s.rsplit(" ", 1)[1]))
            # Each version says how many saves were dropped just before it.
            counted = sum(int(v["meta"].get("dropped-saves", 0)) for v in versions)
            assert counted == n - len(outage)
            arrived_in_all += len(outage)
        assert arrived_in_all + dropped == 2 * n
        status = await get_status(jp_fetch)
        assert status["pending"] == 0
        assert status["dropped_saves"] == dropped
        assert status["spool_limit_reached"] is False
        messages = [r.getMessage() for r in caplog.records if r.name == bookstore_ext.log.name]
        assert sum("reached its limit" in m for m in messages) == 1  # once, not per save


class TestMinFreeDisk:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        # More free space than any disk has: the limit is always reached.
        return {**bookstore_config, "min_free_disk_bytes": 2**62}

    async def test_full_disk_drops_the_archive_copy_never_the_save(
        self,
        jp_fetch: Any,
        bookstore_ext: Any,
        s3: Any,
        s3_bucket: str,
        spool_dir: str,
        jp_root_dir: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        n = 4
        for i in range(n):
            code, model = await put_notebook(jp_fetch, "full.ipynb", f"full {i}")
            assert code in {200, 201}
            assert model["bookstore_archive"].startswith("dropped")
            assert f"full {i}" in (jp_root_dir / "full.ipynb").read_text()
        assert spool_files(spool_dir, ".entry") == []
        status = await get_status(jp_fetch)
        assert status["pending"] == 0
        assert status["dropped_saves"] == n
        assert list_versions(s3, s3_bucket, "workspace/full.ipynb") == []

        # Space again: the next save is archived and says how many were dropped before it.
        bookstore_ext.bookstore_settings.min_free_disk_bytes = 0
        code, model = await put_notebook(jp_fetch, "full.ipynb", "full back")
        assert code == 200
        assert "bookstore_save_id" in model
        assert await bookstore_ext.archiver.wait_idle(20)
        (version,) = versions_oldest_first(s3, s3_bucket, "workspace/full.ipynb")
        assert version["source"] == "full back"
        assert version["meta"]["dropped-saves"] == str(n)
        assert (await get_status(jp_fetch))["dropped_saves"] == n
        messages = [r.getMessage() for r in caplog.records if r.name == bookstore_ext.log.name]
        assert sum("reached its limit" in m for m in messages) == 1


# --- 8. one spool, one server ----------------------------------------------------------------


async def test_two_servers_sharing_a_spool_upload_each_save_once(
    jp_asyncio_loop: Any,
    bookstore_config: dict[str, Any],
    s3_proxy: TcpProxy,
    s3: Any,
    s3_bucket: str,
    spool_dir: str,
) -> None:
    first = Server({**bookstore_config, "s3_endpoint_url": s3_proxy.url})
    second = Server(bookstore_config)  # the same spool_dir
    try:
        s3_proxy.cut()
        await first.archiver.start()
        ids_first = [
            (await first.archiver.archive("shared.ipynb", nb_bytes(f"first {i}"))).save_id
            for i in range(3)
        ]
        await second.archiver.start()
        assert first.archiver.spool.directory == spool_dir
        assert second.archiver.spool.directory == spool_dir + "-2"
        assert second.archiver.status()["spool_shared"] is True
        ids_second = [
            (await second.archiver.archive("other.ipynb", nb_bytes(f"second {i}"))).save_id
            for i in range(2)
        ]
        assert await second.archiver.wait_idle(30)
        # The second server neither uploaded nor deleted the first one's saves.
        assert first.archiver.pending == 3
        assert len(spool_files(spool_dir, ".entry")) == 3

        s3_proxy.restore()
        assert await first.archiver.wait_idle(30)
        last = await first.archiver.archive("shared.ipynb", nb_bytes("first newest"))
        assert await first.archiver.wait_idle(30)
    finally:
        await first.close()
        await second.close()

    shared = list_versions(s3, s3_bucket, "workspace/shared.ipynb")
    got = [
        s3.head_object(Bucket=s3_bucket, Key="workspace/shared.ipynb", VersionId=v["VersionId"])[
            "Metadata"
        ]["save-id"]
        for v in reversed(shared)
    ]
    assert got == [*ids_first, last.save_id]  # each once, the newest last
    other = versions_oldest_first(s3, s3_bucket, "workspace/other.ipynb")
    assert [v["meta"]["save-id"] for v in other] == ids_second


async def test_stage_that_reached_the_disk_is_kept_at_start(
    jp_asyncio_loop: Any,
    bookstore_config: dict[str, Any],
    s3_proxy: TcpProxy,
    s3: Any,
    s3_bucket: str,
    spool_dir: str,
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    crashed = Server({**bookstore_config, "s3_endpoint_url": s3_proxy.url}, root)
    kept, lost = nb_bytes("kept"), nb_bytes("lost")
    try:
        await crashed.archiver.start()
        # The server dies between writing the file and committing the stage...
        staged = await crashed.archiver.stage("kept.ipynb", kept)
        (root / "kept.ipynb").write_bytes(kept)
        # ...or while writing the file, which still holds what it held before.
        await crashed.archiver.stage("lost.ipynb", lost)
        (root / "lost.ipynb").write_bytes(nb_bytes("older"))
        assert len(spool_files(spool_dir, ".tmp")) == 2
    finally:
        crashed.archiver.spool.unlock()  # what the kernel does when the process dies
        await crashed.store.close()

    restarted = Server(bookstore_config, root)
    try:
        await restarted.archiver.start()
        assert restarted.archiver.spool.directory == spool_dir
        assert await restarted.archiver.wait_idle(30)
    finally:
        await restarted.close()
    (version,) = versions_oldest_first(s3, s3_bucket, "workspace/kept.ipynb")
    assert version["meta"]["save-id"] == staged.entry.save_id
    assert list_versions(s3, s3_bucket, "workspace/lost.ipynb") == []
    assert spool_files(spool_dir, ".tmp") == []


@pytest.mark.slow
def test_sigkilled_server_on_a_sibling_spool_is_adopted(
    tmp_path: Path,
    jp_asyncio_loop: Any,
    bookstore_config: dict[str, Any],
    s3_proxy: TcpProxy,
    s3: Any,
    s3_bucket: str,
    spool_dir: str,
) -> None:
    holder = Server(bookstore_config)  # a live server on the configured spool
    jp_asyncio_loop.run_until_complete(holder.archiver.start())
    config = server_config({**bookstore_config, "s3_endpoint_url": s3_proxy.url})
    s3_proxy.cut()
    try:
        with JupyterSubprocess("server", tmp_path / "jp", config=config) as jp:
            ids = [
                jp.save_notebook("gone.ipynb", notebook(f"gone {i}"))["bookstore_save_id"]
                for i in range(3)
            ]
            status = jp.request("GET", "/api/bookstore").json()["archive"]
            assert status["spool_dir"] == spool_dir + "-2"
            assert status["pending"] == 3
            jp.kill(signal.SIGKILL)
            jp.wait(10)
        assert len(spool_files(spool_dir + "-2", ".entry")) == 3
    finally:
        jp_asyncio_loop.run_until_complete(holder.close())
        s3_proxy.restore()

    # The next server takes the configured spool and adopts the sibling's leftovers.
    successor = Server(bookstore_config)
    try:
        jp_asyncio_loop.run_until_complete(successor.archiver.start())
        assert successor.archiver.spool.directory == spool_dir
        assert jp_asyncio_loop.run_until_complete(successor.archiver.wait_idle(30))
    finally:
        jp_asyncio_loop.run_until_complete(successor.close())
    versions = versions_oldest_first(s3, s3_bucket, "workspace/gone.ipynb")
    assert [v["meta"]["save-id"] for v in versions] == ids
    assert spool_files(spool_dir + "-2", ".entry") == []


# --- 9. what retrying cannot fix -------------------------------------------------------------


class TestSetAside:
    async def test_key_too_long_is_set_aside_at_save_time(
        self,
        jp_fetch: Any,
        bookstore_ext: Any,
        s3: Any,
        s3_bucket: str,
        jp_root_dir: Path,
    ) -> None:
        # File names are at most 255 bytes: five folders of 220 make a key over 1,024.
        parts = [f"{i}" + "d" * 219 for i in range(5)]
        for depth in range(1, len(parts) + 1):
            await mkdir(jp_fetch, "/".join(parts[:depth]))
        long_path = "/".join(parts) + "/nb.ipynb"
        for i in range(2):
            code, model = await put_notebook(jp_fetch, long_path, f"long {i}")
            assert code in {200, 201}
            assert "1024" in model["bookstore_archive"]
        code, _ = await put_notebook(jp_fetch, "short.ipynb", "short")
        assert code == 201
        assert await bookstore_ext.archiver.wait_idle(20)

        status = await get_status(jp_fetch)
        assert status["pending"] == 0
        assert status["set_aside_count"] == 1, status["set_aside"]  # the newest of each path
        (aside,) = status["set_aside"]
        assert aside["path"] == long_path
        assert aside["code"] == "KeyTooLongError"
        assert "1024" in aside["reason"]
        kept = read_bytes(aside["kept_at"])
        assert first_source(kept.split(b"\n", 1)[1]) == "long 1"
        assert len(list_versions(s3, s3_bucket, "workspace/short.ipynb")) == 1


class TestRefusedByS3:
    @pytest.fixture
    def refused_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {**bookstore_config, "s3_storage_class": "NOT_A_CLASS"}

    @pytest.fixture
    def jp_server_config(self, refused_config: dict[str, Any]) -> dict[str, Any]:
        return server_config(refused_config)

    async def test_s3_refusal_is_set_aside_and_the_queue_goes_on(
        self,
        jp_fetch: Any,
        bookstore_ext: Any,
        s3: Any,
        s3_bucket: str,
        spool_dir: str,
    ) -> None:
        # S3 answers 400 InvalidStorageClass: no retry can change that.
        for path in ["refused-a.ipynb", "refused-b.ipynb"]:
            code, _ = await put_notebook(jp_fetch, path, f"{path} 0")
            assert code == 201
        assert await bookstore_ext.archiver.wait_idle(20)
        status = await get_status(jp_fetch)
        assert status["pending"] == 0
        assert status["failed_attempts"] == 0  # not retried
        assert {a["path"] for a in status["set_aside"]} == {"refused-a.ipynb", "refused-b.ipynb"}
        for aside in status["set_aside"]:
            assert aside["code"] == "InvalidStorageClass"
            assert os.path.dirname(aside["kept_at"]) == os.path.join(spool_dir, "set-aside")
            assert read_bytes(aside["kept_at"]).startswith(b"{")
        assert spool_files(spool_dir, ".entry") == []

        # Fixed: later saves of the same path go on.
        bookstore_ext.bookstore_settings.s3_storage_class = ""
        code, _ = await put_notebook(jp_fetch, "refused-a.ipynb", "refused-a.ipynb 1")
        assert code == 200
        assert await bookstore_ext.archiver.wait_idle(20)
        (version,) = versions_oldest_first(s3, s3_bucket, "workspace/refused-a.ipynb")
        assert version["source"] == "refused-a.ipynb 1"


CJK = "漢字仮名交じり文"


async def test_long_non_ascii_path_metadata_fits_and_reads_back(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    # 80 CJK characters are 240 bytes, under the 255-byte file name limit.
    folders = [(CJK * 10)[:80] + str(i) for i in range(2)]
    await mkdir(jp_fetch, folders[0])
    await mkdir(jp_fetch, "/".join(folders))
    old = "/".join(folders) + "/" + (CJK * 10)[:70] + ".ipynb"
    new = "/".join(folders) + "/" + (CJK * 10)[1:71] + ".ipynb"
    assert len(old) > 225
    code, _ = await put_notebook(jp_fetch, old, "cjk")
    assert code == 201
    body = json.dumps({"path": new})
    await jp_fetch("api", "contents", old, method="PATCH", body=body)
    assert await bookstore_ext.archiver.wait_idle(20)
    status = await get_status(jp_fetch)
    assert status["set_aside_count"] == 0

    for path in (old, new):
        key = f"workspace/{path}"
        (v,) = list_versions(s3, s3_bucket, key)
        raw = s3.head_object(Bucket=s3_bucket, Key=key, VersionId=v["VersionId"])["Metadata"]
        assert metadata_bytes(raw) <= MAX_METADATA_BYTES
        got = decode_metadata(raw)["jupyter-path"]
        if path == old:
            assert got == path
        else:  # shortened to make room for renamed-from (the key has the whole path)
            head, _, digest = got.partition("…#")
            assert path.startswith(head)
            assert digest == hashlib.sha256(path.encode()).hexdigest()[:16]
    # The history reads the renamed version's origin back whole.
    r = await jp_fetch("api", "bookstore", "versions", *new.split("/"))
    (listed,) = json.loads(r.body)["versions"]
    assert listed["renamed_from"] == old


def test_metadata_that_cannot_fit_is_shortened_or_refused() -> None:
    path = "文" * 700 + ".ipynb"
    meta = {"jupyter-path": path, "renamed-from": path, "save-id": "x"}
    fitted = fit_metadata(meta)
    assert metadata_bytes(encode_metadata(fitted)) <= MAX_METADATA_BYTES
    assert fitted["save-id"] == "x"
    # The path is also the key: it goes first; what it was renamed from keeps a prefix.
    digest = hashlib.sha256(path.encode()).hexdigest()[:16]
    assert fitted["jupyter-path"].endswith("…#" + digest)
    assert fitted["renamed-from"].startswith("文" * 100)
    assert fitted["renamed-from"].endswith("…#" + digest)
    # Old versions' percent-encoded values still read back.
    assert decode_metadata({"jupyter-path": quote("é/b.ipynb")})["jupyter-path"] == "é/b.ipynb"
    with pytest.raises(S3BadRequest) as e:
        fit_metadata({"user-note": "x" * 3000})
    assert e.value.code == "MetadataTooLarge"


def test_upload_limits_are_checked_before_sending() -> None:
    with pytest.raises(S3BadRequest) as e:
        check_upload("workspace/nb.ipynb", MAX_PUT_BYTES + 1, {})
    assert e.value.code == "EntityTooLarge"
    with pytest.raises(S3BadRequest) as e:
        check_upload("k/" + "é" * 512, 1, {})
    assert e.value.code == "KeyTooLongError"
    assert check_upload("workspace/nb.ipynb", MAX_PUT_BYTES, {"a": "b"}) == {"a": "b"}


def _client_error(status: int, code: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


@pytest.mark.parametrize(
    ("status", "code", "kind", "retryable"),
    [
        (400, "KeyTooLongError", S3BadRequest, False),
        (400, "MetadataTooLarge", S3BadRequest, False),
        (400, "EntityTooLarge", S3BadRequest, False),
        (400, "InvalidStorageClass", S3BadRequest, False),
        (413, "", S3BadRequest, False),
        (405, "MethodNotAllowed", S3BadRequest, False),
        (400, "RequestTimeout", S3Unavailable, True),
        (503, "SlowDown", S3Unavailable, True),
        (429, "TooManyRequests", S3Unavailable, True),
        (403, "AccessDenied", S3Refused, True),
        (403, "RequestTimeTooSkewed", S3Unavailable, True),
    ],
)
def test_s3_answers_are_classified_by_whether_retrying_can_help(
    status: int, code: str, kind: type, retryable: bool
) -> None:
    err = translate_error(_client_error(status, code), "uploading")
    assert type(err) is kind
    assert err.retryable is retryable
