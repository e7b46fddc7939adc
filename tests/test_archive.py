"""Archiving: every save through the contents API becomes exactly one S3 version.

All against a real in-process Jupyter server and a real S3 server over HTTP (moto or
SeaweedFS, see conftest.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from helpers import drain, first_source, list_versions, notebook, save_nb
from slow_link import SlowLink
from tornado.httpclient import HTTPClientError

from bookstore.testing import S3Server

# --- helpers ---------------------------------------------------------------------------------


async def save(jp_fetch: Any, path: str, model: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """PUT a contents model; return (HTTP status, response model)."""
    r = await jp_fetch("api", "contents", path, method="PUT", body=json.dumps(model))
    return r.code, json.loads(r.body)


def get_body(s3: Any, bucket: str, key: str, version_id: str | None = None) -> bytes:
    kwargs = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    return s3.get_object(**kwargs)["Body"].read()


def replace_dir_with_file(path: str) -> None:
    """Make a directory unusable (as root, permissions would not stop us)."""
    shutil.rmtree(path)
    Path(path).write_text("not a directory")


# --- one save ----------------------------------------------------------------------------------


async def test_save_creates_one_version_identical_to_disk(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    model = await save_nb(jp_fetch, "first.ipynb", "one save")
    await drain(bookstore_ext)

    versions = list_versions(s3, s3_bucket, "workspace/first.ipynb")
    assert len(versions) == 1
    on_disk = (jp_root_dir / "first.ipynb").read_bytes()
    obj = s3.get_object(Bucket=s3_bucket, Key="workspace/first.ipynb")
    body = obj["Body"].read()
    assert body == on_disk
    assert obj["ContentType"] == "application/x-ipynb+json"

    meta = obj["Metadata"]
    assert meta["sha256"] == hashlib.sha256(on_disk).hexdigest()
    assert meta["jupyter-path"] == "first.ipynb"
    assert meta["user"] == bookstore_ext.bookstore_settings.username
    saved_at = datetime.fromisoformat(meta["saved-at"].replace("Z", "+00:00"))
    assert before <= saved_at <= datetime.now(timezone.utc) + timedelta(seconds=1)
    # The save's answer names the archived save, so a client can find its version.
    assert model["bookstore_save_id"] == meta["save-id"]


def big_source(size: int) -> str:
    """Notebook cell source of about ``size`` bytes that no two calls share."""
    lines = -(-size // 65)
    return "\n".join(os.urandom(32).hex() for _ in range(lines))


async def test_big_notebook_is_archived_as_a_streamed_multipart_upload(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    model = await save_nb(jp_fetch, "big.ipynb", big_source(20 * 1024**2))
    await drain(bookstore_ext)

    on_disk = (jp_root_dir / "big.ipynb").read_bytes()
    part_size = bookstore_ext.bookstore_settings.multipart_threshold
    assert len(on_disk) > 2 * part_size
    versions = list_versions(s3, s3_bucket, "workspace/big.ipynb")
    assert len(versions) == 1
    version_id = versions[0]["VersionId"]
    head = s3.head_object(Bucket=s3_bucket, Key="workspace/big.ipynb", VersionId=version_id)
    # A multipart ETag is "<md5 of the parts' md5s>-<number of parts>".
    assert head["ETag"].strip('"').endswith(f"-{-(-len(on_disk) // part_size)}"), head["ETag"]
    assert head["ContentType"] == "application/x-ipynb+json"
    assert head["Metadata"]["save-id"] == model["bookstore_save_id"]
    assert head["Metadata"]["sha256"] == hashlib.sha256(on_disk).hexdigest()
    assert get_body(s3, s3_bucket, "workspace/big.ipynb", version_id) == on_disk
    assert bookstore_ext.archiver.status()["last_upload"]["version_id"] == version_id
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


async def test_second_save_of_existing_file_adds_a_version(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    await save_nb(jp_fetch, "twice.ipynb", "first")
    code, _ = await save(
        jp_fetch, "twice.ipynb", {"type": "notebook", "content": notebook("second")}
    )
    assert code == 200
    await drain(bookstore_ext)
    versions = list_versions(s3, s3_bucket, "workspace/twice.ipynb")
    assert len(versions) == 2
    assert (
        get_body(s3, s3_bucket, "workspace/twice.ipynb")
        == (jp_root_dir / "twice.ipynb").read_bytes()
    )
    assert first_source(
        get_body(s3, s3_bucket, "workspace/twice.ipynb", versions[1]["VersionId"])
    ).startswith("first")


async def test_failed_save_creates_no_version_and_leaves_nothing_queued(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str, spool_dir: str
) -> None:
    with pytest.raises(HTTPClientError) as info:
        await save(jp_fetch, "no/such/dir/x.ipynb", {"type": "notebook", "content": notebook()})
    assert info.value.code >= 400
    await drain(bookstore_ext)
    assert list_versions(s3, s3_bucket, "workspace/no/such/dir/x.ipynb") == []
    assert bookstore_ext.archiver.pending == 0
    leftovers = [n for n in os.listdir(spool_dir) if n.endswith((".tmp", ".entry"))]
    assert leftovers == []


async def test_a_save_takes_one_trip_to_a_worker_thread(
    jp_fetch: Any,
    bookstore_ext: Any,
    jp_root_dir: Path,
    s3: Any,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bookstore import archive, spool

    await save_nb(jp_fetch, "trips.ipynb", "first")  # the archiver starts (its own trips)
    await drain(bookstore_ext)
    trips: list[str] = []
    for module, name in ((archive, "run_sync"), (spool, "run_sync"), (spool, "run_in_worker")):
        if not hasattr(module, name):
            continue
        real = getattr(module, name)

        def spy(func: Any, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            trips.append(getattr(func, "__qualname__", repr(func)))
            return _real(func, *args, **kwargs)

        monkeypatch.setattr(module, name, spy)

    model = await save_nb(jp_fetch, "trips.ipynb", "second")

    # Serialising, hashing, the disk write, the spool stage beside it and its commit: one
    # worker call. The directory fsync that makes the commit durable runs in the background.
    assert [t for t in trips if not t.endswith("sync_dir")] == [
        "Archiver.write_and_commit.<locals>.work"
    ]
    await drain(bookstore_ext)
    versions = list_versions(s3, s3_bucket, "workspace/trips.ipynb")
    assert len(versions) == 2
    assert (
        get_body(s3, s3_bucket, "workspace/trips.ipynb")
        == (jp_root_dir / "trips.ipynb").read_bytes()
    )
    head = s3.head_object(Bucket=s3_bucket, Key="workspace/trips.ipynb")
    assert head["Metadata"]["save-id"] == model["bookstore_save_id"]


# --- many saves ------------------------------------------------------------------------------


async def test_100_back_to_back_saves_make_100_versions_in_order(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    n = 100
    save_ids = []
    for i in range(n):
        model = await save_nb(jp_fetch, "burst.ipynb", f"save {i:03d}")
        save_ids.append(model["bookstore_save_id"])
    await drain(bookstore_ext)

    versions = list_versions(s3, s3_bucket, "workspace/burst.ipynb")
    assert len(versions) == n
    oldest_first = list(reversed(versions))
    sources = [
        first_source(get_body(s3, s3_bucket, "workspace/burst.ipynb", v["VersionId"]))
        for v in oldest_first
    ]
    assert sources == [f"save {i:03d}  # 0" for i in range(n)]
    # The newest version is the last save, byte for byte.
    assert versions[0]["IsLatest"]
    assert (
        get_body(s3, s3_bucket, "workspace/burst.ipynb")
        == (jp_root_dir / "burst.ipynb").read_bytes()
    )
    head = s3.head_object(Bucket=s3_bucket, Key="workspace/burst.ipynb")
    assert head["Metadata"]["save-id"] == save_ids[-1]
    assert save_ids == sorted(save_ids)  # ids sort in save order
    assert len(set(save_ids)) == n


async def test_20_paths_x_5_saves_drain_with_all_versions_correct(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    paths = [f"many/nb{p:02d}.ipynb" for p in range(20)]
    await jp_fetch("api", "contents", "many", method="PUT", body=json.dumps({"type": "directory"}))

    async def saves_of(path: str) -> None:
        for i in range(5):
            await save_nb(jp_fetch, path, f"{path} v{i}")

    await asyncio.gather(*(saves_of(p) for p in paths))
    await drain(bookstore_ext)

    for path in paths:
        versions = list_versions(s3, s3_bucket, f"workspace/{path}")
        sources = [
            first_source(get_body(s3, s3_bucket, f"workspace/{path}", v["VersionId"]))
            for v in reversed(versions)
        ]
        assert sources == [f"{path} v{i}  # 0" for i in range(5)]


class TestConcurrentUploads:
    """Uploads of different paths overlap; versions of one path never do."""

    @pytest.fixture
    def link(self, s3_server: S3Server) -> Any:
        with SlowLink(s3_server.host, s3_server.port, delay=0.5) as link:
            yield link

    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any], link: SlowLink) -> dict[str, Any]:
        return {**bookstore_config, "s3_endpoint_url": link.url, "max_concurrent_uploads": 8}

    async def test_different_paths_upload_at_the_same_time(
        self, jp_fetch: Any, bookstore_ext: Any, link: SlowLink, s3: Any, s3_bucket: str
    ) -> None:
        await drain(bookstore_ext)
        paths = [f"par{p:02d}.ipynb" for p in range(12)]
        for rnd in range(2):
            # The paths' saves at once: their uploads are queued together, whatever the
            # machine's load (one after the other, a loaded machine spaced them so much that
            # fewer uploads overlapped than the setting allows).
            await asyncio.gather(*(save_nb(jp_fetch, path, f"{path} r{rnd}") for path in paths))
        await drain(bookstore_ext)
        # Measured: max_concurrent_uploads=1 peaks at 3 connections (one uploading, one
        # closing, one more in passing), 8 peaks at 9.
        assert link.peak >= 6, f"at most {link.peak} connection(s) to S3 at a time"
        for path in paths:
            versions = list_versions(s3, s3_bucket, f"workspace/{path}")
            sources = [
                first_source(get_body(s3, s3_bucket, f"workspace/{path}", v["VersionId"]))
                for v in reversed(versions)
            ]
            assert sources == [f"{path} r{rnd}  # 0" for rnd in range(2)]


class TestUploadsYieldToSaves:
    """An upload waits while a save is in progress (``upload_quiet_period``), within bounds.

    A save is held in progress (its disk write waits for the test) while other saves are
    made: their uploads must wait for it, unless the wait's cap is reached or uploads are
    behind. Nothing here is timed: each test waits on conditions.
    """

    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {
            **bookstore_config,
            "upload_quiet_period": 0.05,
            "upload_quiet_max_wait": 60.0,
            "max_concurrent_uploads": 2,
        }

    @pytest.fixture
    def held(self, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
        """Saves of ``held.ipynb`` stay in progress until ``release`` is set."""
        cm = jp_serverapp.contents_manager
        real = cm._save_notebook
        entered, release = asyncio.Event(), asyncio.Event()

        async def save_notebook(os_path: str, *args: Any, **kwargs: Any) -> None:
            if os_path.endswith("held.ipynb"):
                entered.set()
                await release.wait()
            await real(os_path, *args, **kwargs)

        monkeypatch.setattr(cm, "_save_notebook", save_notebook)
        return entered, release

    async def _start_held_save(self, jp_fetch: Any, held: Any) -> asyncio.Task[Any]:
        entered, _release = held
        task = asyncio.ensure_future(save_nb(jp_fetch, "held.ipynb", "held"))
        await asyncio.wait_for(entered.wait(), 30)
        return task

    async def test_an_upload_waits_for_the_save_in_progress(
        self, jp_fetch: Any, bookstore_ext: Any, held: Any, s3: Any, s3_bucket: str
    ) -> None:
        uploader = bookstore_ext.archiver.uploader
        task = await self._start_held_save(jp_fetch, held)
        await save_nb(jp_fetch, "first.ipynb", "saved meanwhile")
        # However long the held save lasts, the other one's upload waits for it.
        for _ in range(10):
            await asyncio.sleep(0.03)
            assert uploader.uploaded == 0
            assert bookstore_ext.archiver.pending == 1
        held[1].set()
        await task
        await drain(bookstore_ext)
        assert uploader.uploaded == 2
        assert len(list_versions(s3, s3_bucket, "workspace/first.ipynb")) == 1
        assert len(list_versions(s3, s3_bucket, "workspace/held.ipynb")) == 1

    async def _uploads_while_held(
        self, jp_fetch: Any, bookstore_ext: Any, held: Any, paths: list[str]
    ) -> int:
        """Save ``paths`` while the held save is in progress and drain: the uploads made."""
        task = await self._start_held_save(jp_fetch, held)
        try:
            for path in paths:
                await save_nb(jp_fetch, path, "saved meanwhile")
            await drain(bookstore_ext, timeout=20)
            assert not task.done()  # drained while the held save is still in progress
            return int(bookstore_ext.archiver.uploader.uploaded)
        finally:
            held[1].set()
            await task

    async def test_the_wait_is_bounded(self, jp_fetch: Any, bookstore_ext: Any, held: Any) -> None:
        bookstore_ext.archiver.settings.upload_quiet_max_wait = 0.2
        assert await self._uploads_while_held(jp_fetch, bookstore_ext, held, ["first.ipynb"]) == 1

    async def test_uploads_that_are_behind_do_not_wait(
        self, jp_fetch: Any, bookstore_ext: Any, held: Any
    ) -> None:
        # More saves queued than max_concurrent_uploads (2): the uploads go at once.
        paths = [f"behind-{i}.ipynb" for i in range(3)]
        assert await self._uploads_while_held(jp_fetch, bookstore_ext, held, paths) == 3


# --- which files ---------------------------------------------------------------------------


async def test_non_notebooks_are_not_archived_by_default(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    code, model = await save(
        jp_fetch, "notes.txt", {"type": "file", "format": "text", "content": "hello"}
    )
    assert code == 201
    assert "bookstore_save_id" not in model
    await save_nb(jp_fetch, "real.ipynb", "x")  # and a notebook next to it is
    await drain(bookstore_ext)
    assert list_versions(s3, s3_bucket, "workspace/notes.txt") == []
    assert len(list_versions(s3, s3_bucket, "workspace/real.ipynb")) == 1


async def test_notebook_saved_as_file_model_is_archived(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    """A .ipynb uploaded as a plain file (drag and drop) is a notebook save too."""
    raw = json.dumps(notebook("as file")).encode()
    code, _ = await save(
        jp_fetch,
        "upload.ipynb",
        {"type": "file", "format": "base64", "content": base64.b64encode(raw).decode()},
    )
    assert code == 201
    await drain(bookstore_ext)
    assert get_body(s3, s3_bucket, "workspace/upload.ipynb") == raw
    assert (jp_root_dir / "upload.ipynb").read_bytes() == raw


async def test_chunked_upload_is_archived_once_as_a_whole(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    raw = json.dumps(notebook("chunked", n_cells=200)).encode()
    parts = [raw[i : i + len(raw) // 3 + 1] for i in range(0, len(raw), len(raw) // 3 + 1)]
    assert len(parts) == 3
    for i, part in enumerate(parts):
        chunk = -1 if i == len(parts) - 1 else i + 1
        await save(
            jp_fetch,
            "big.ipynb",
            {
                "type": "file",
                "format": "base64",
                "chunk": chunk,
                "content": base64.b64encode(part).decode(),
            },
        )
    await drain(bookstore_ext)
    versions = list_versions(s3, s3_bucket, "workspace/big.ipynb")
    assert len(versions) == 1
    assert (
        get_body(s3, s3_bucket, "workspace/big.ipynb")
        == raw
        == (jp_root_dir / "big.ipynb").read_bytes()
    )


class TestWidenedPatterns:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {**bookstore_config, "archive_patterns": ["*.ipynb", "*.txt", "data/*"]}

    async def test_matching_files_are_archived(
        self, jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
    ) -> None:
        code, model = await save(
            jp_fetch, "notes.txt", {"type": "file", "format": "text", "content": "hello\n"}
        )
        assert code == 201
        assert "bookstore_save_id" in model
        await jp_fetch(
            "api", "contents", "data", method="PUT", body=json.dumps({"type": "directory"})
        )
        blob = bytes(range(256))
        await save(
            jp_fetch,
            "data/blob.bin",
            {"type": "file", "format": "base64", "content": base64.b64encode(blob).decode()},
        )
        await save(jp_fetch, "other.csv", {"type": "file", "format": "text", "content": "a,b\n"})
        await drain(bookstore_ext)

        txt = s3.get_object(Bucket=s3_bucket, Key="workspace/notes.txt")
        assert txt["Body"].read() == (jp_root_dir / "notes.txt").read_bytes()
        assert txt["ContentType"].startswith("text/plain")
        assert get_body(s3, s3_bucket, "workspace/data/blob.bin") == blob
        assert list_versions(s3, s3_bucket, "workspace/other.csv") == []


# --- where ---------------------------------------------------------------------------------


async def test_subdirectories_keep_their_path(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    for d in ("proj", "proj/sub dir"):
        await jp_fetch("api", "contents", d, method="PUT", body=json.dumps({"type": "directory"}))
    await save_nb(jp_fetch, "proj/sub dir/ü.ipynb", "nested")
    await drain(bookstore_ext)
    key = "workspace/proj/sub dir/ü.ipynb"
    obj = s3.get_object(Bucket=s3_bucket, Key=key)
    assert obj["Body"].read() == (jp_root_dir / "proj" / "sub dir" / "ü.ipynb").read_bytes()
    # Metadata is ASCII on the wire; the value is percent-encoded there.
    head = await bookstore_ext.store.head_object(key)
    assert head["Metadata"]["jupyter-path"] == "proj/sub dir/ü.ipynb"


class TestUsernamePrefix:
    @pytest.fixture
    def bookstore_config(
        self, bookstore_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> dict[str, Any]:
        monkeypatch.setenv("JUPYTERHUB_USER", "carol")
        return {**bookstore_config, "workspace_prefix": "users/{username}/workspace"}

    async def test_saves_go_under_the_users_prefix(
        self, jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
    ) -> None:
        await save_nb(jp_fetch, "mine.ipynb", "carol's")
        await drain(bookstore_ext)
        obj = s3.get_object(Bucket=s3_bucket, Key="users/carol/workspace/mine.ipynb")
        assert obj["Metadata"]["user"] == "carol"
        assert list_versions(s3, s3_bucket, "workspace/mine.ipynb") == []
        status = json.loads((await jp_fetch("api", "bookstore")).body)
        assert status["archive"]["prefix"] == "users/carol/workspace"


# --- the spool fails -------------------------------------------------------------------------


async def test_unwritable_spool_does_not_fail_the_save(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str, spool_dir: str
) -> None:
    replace_dir_with_file(spool_dir)

    model = await save_nb(jp_fetch, "unspooled.ipynb", "saved anyway")
    assert "bookstore_save_id" not in model
    assert "saved anyway" in (jp_root_dir / "unspooled.ipynb").read_text()
    status = json.loads((await jp_fetch("api", "bookstore")).body)
    error = status["archive"]["last_error"]
    assert error["path"] == "unspooled.ipynb"
    assert "spool" in error["message"]

    # Once the spool works again, so does archiving.
    os.unlink(spool_dir)
    os.makedirs(spool_dir)
    model = await save_nb(jp_fetch, "unspooled.ipynb", "archived again")
    assert "bookstore_save_id" in model
    await drain(bookstore_ext)
    assert first_source(get_body(s3, s3_bucket, "workspace/unspooled.ipynb")).startswith(
        "archived again"
    )


class TestSpoolUnusableAtStart:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        return {**bookstore_config, "spool_dir": str(blocker / "spool")}

    async def test_server_starts_and_saves_work(
        self, jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path
    ) -> None:
        model = await save_nb(jp_fetch, "x.ipynb", "still saved")
        assert "bookstore_save_id" not in model
        assert "still saved" in (jp_root_dir / "x.ipynb").read_text()
        status = json.loads((await jp_fetch("api", "bookstore")).body)
        assert "spool" in status["archive"]["last_error"]["message"]
