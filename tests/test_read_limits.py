"""Reads have a size limit (``max_read_bytes``), and large clones stream to disk.

Objects over the limit get 413 from clone, the version view (API and page), diff (API and
page) and restore, naming the setting, and nothing is written. Files under it that are not
notebooks stream from S3 into a temporary file next to their destination.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import notebook
from history_helpers import fetch_error
from slow_link import SlowLink

from bookstore.streaming import TEMP_PREFIX
from bookstore.testing import S3Server

LIMIT = 64 * 1024


def big_notebook(size: int, tag: str = "") -> bytes:
    """A valid notebook of about ``size`` bytes."""
    nb = notebook(f"# {tag}\n" + "x = 1\n" * (size // 6))
    return json.dumps(nb).encode()


def put(s3: Any, bucket: str, key: str, body: bytes) -> str:
    return str(s3.put_object(Bucket=bucket, Key=key, Body=body)["VersionId"])


def root_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


class TestOverTheLimit:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {**bookstore_config, "max_read_bytes": LIMIT}

    async def test_clone_of_a_big_object_is_413_and_writes_nothing(
        self, jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
    ) -> None:
        put(s3, s3_bucket, "published/team/big.ipynb", big_notebook(2 * LIMIT))
        put(s3, s3_bucket, "published/team/big.bin", os.urandom(LIMIT + 1))
        put(s3, s3_bucket, "published/team/small.bin", os.urandom(LIMIT))
        before = root_files(jp_root_dir)
        for key in ("published/team/big.ipynb", "published/team/big.bin"):
            status, message = await fetch_error(
                jp_fetch,
                "api",
                "bookstore",
                "clone",
                method="POST",
                body=json.dumps({"s3_key": key}),
            )
            assert status == 413, message
            assert "max_read_bytes" in message
            assert str(LIMIT) in message
        assert root_files(jp_root_dir) == before
        # Exactly at the limit is allowed.
        r = await jp_fetch(
            "api",
            "bookstore",
            "clone",
            method="POST",
            body=json.dumps({"s3_key": "published/team/small.bin"}),
        )
        assert r.code == 200
        assert (jp_root_dir / "small.bin").stat().st_size == LIMIT

    async def test_view_diff_and_restore_of_a_big_version_are_413(
        self, jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
    ) -> None:
        key = "workspace/nb.ipynb"
        small = put(s3, s3_bucket, key, json.dumps(notebook("small")).encode())
        big = put(s3, s3_bucket, key, big_notebook(2 * LIMIT, "big"))
        on_disk = json.dumps(notebook("on disk"))
        (jp_root_dir / "nb.ipynb").write_text(on_disk)
        api = ("api", "bookstore")
        requests: list[tuple[tuple[str, ...], dict[str, Any]]] = [
            ((*api, "versions", "nb.ipynb"), {"params": {"version_id": big}}),
            (("bookstore", "versions", "nb.ipynb"), {"params": {"version_id": big}}),
            ((*api, "diff", "nb.ipynb"), {"params": {"from": small, "to": big}}),
            ((*api, "diff", "nb.ipynb"), {"params": {"from": big}}),
            (("bookstore", "diff", "nb.ipynb"), {"params": {"from": small, "to": big}}),
            (
                (*api, "versions", "nb.ipynb"),
                {"method": "POST", "body": json.dumps({"version_id": big})},
            ),
        ]
        for parts, kwargs in requests:
            status, message = await fetch_error(jp_fetch, *parts, **kwargs)
            assert status == 413, (parts, kwargs, message)
            assert "max_read_bytes" in message, message
        assert (jp_root_dir / "nb.ipynb").read_text() == on_disk
        # The small version is still read as usual.
        r = await jp_fetch(*api, "versions", "nb.ipynb", params={"version_id": small})
        assert r.code == 200

    async def test_restore_of_a_big_file_leaves_the_file_and_no_temporary(
        self, jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
    ) -> None:
        big = put(s3, s3_bucket, "workspace/data.bin", os.urandom(LIMIT + 10))
        (jp_root_dir / "data.bin").write_bytes(b"current")
        status, message = await fetch_error(
            jp_fetch,
            "api",
            "bookstore",
            "versions",
            "data.bin",
            method="POST",
            body=json.dumps({"version_id": big}),
        )
        assert status == 413
        assert "max_read_bytes" in message
        assert root_files(jp_root_dir) == {"data.bin"}
        assert (jp_root_dir / "data.bin").read_bytes() == b"current"


class TestStreaming:
    """A clone under the limit goes to disk as it arrives (seen through a slowed link)."""

    @pytest.fixture
    def link(self, s3_server: S3Server) -> Any:
        with SlowLink(s3_server.host, s3_server.port, delay=0.02) as link:
            yield link

    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any], link: SlowLink) -> dict[str, Any]:
        return {**bookstore_config, "s3_endpoint_url": link.url, "s3_read_timeout": 60.0}

    async def test_a_large_clone_streams_into_a_temporary_file_then_moves(
        self, jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
    ) -> None:
        data = os.urandom(6 * 1024 * 1024)
        version = put(s3, s3_bucket, "published/team/data.bin", data)
        (jp_root_dir / "out").mkdir()
        clone = asyncio.ensure_future(
            jp_fetch(
                "api",
                "bookstore",
                "clone",
                method="POST",
                body=json.dumps({"s3_key": "published/team/data.bin", "target_path": "out/"}),
                request_timeout=120,
            )
        )
        partial_sizes: set[int] = set()
        while not clone.done():
            for p in (jp_root_dir / "out").glob(f"{TEMP_PREFIX}*"):
                try:
                    size = p.stat().st_size
                except FileNotFoundError:
                    continue
                if 0 < size < len(data):
                    partial_sizes.add(size)
            await asyncio.sleep(0.01)
        r = await clone
        assert r.code == 200
        body = json.loads(r.body)
        assert body["path"] == "out/data.bin"
        assert body["versionID"] == version
        # Part of the object was on disk, in the destination folder, before all of it was.
        assert partial_sizes, "no partial temporary file was seen while cloning"
        assert (jp_root_dir / "out" / "data.bin").read_bytes() == data
        assert os.listdir(jp_root_dir / "out") == ["data.bin"]  # the temporary file moved
