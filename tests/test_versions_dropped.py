"""Dropped saves in the versions listing (issue 10): what the archiver set aside, and the
saves dropped from a full spool, are visible in ``GET /api/bookstore/versions/<path>``.

- ``dropped``: the path's saves set aside (S3 refused them for good), newest first, on the
  first workspace page; a path whose only saves were set aside still lists them.
- ``dropped_saves`` on a version: how many saves just before it were dropped from the spool.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import notebook
from tornado.httpclient import HTTPClientError

from bookstore.testing import S3Server, TcpProxy


async def save_nb(jp_fetch: Any, path: str, source: str) -> int:
    body = json.dumps({"type": "notebook", "content": notebook(source)})
    r = await jp_fetch("api", "contents", path, method="PUT", body=body)
    return int(r.code)


async def versions(jp_fetch: Any, path: str, **params: str) -> dict[str, Any]:
    r = await jp_fetch("api", "bookstore", "versions", path, params=params)
    answer: dict[str, Any] = json.loads(r.body)
    return answer


async def test_set_aside_saves_are_listed_as_dropped(jp_fetch: Any, bookstore_ext: Any) -> None:
    archiver = bookstore_ext.archiver
    assert await save_nb(jp_fetch, "aside.ipynb", "kept") == 201
    assert await archiver.wait_idle(20)
    listing = await versions(jp_fetch, "aside.ipynb")
    assert listing["dropped"] == []
    (kept,) = listing["versions"]

    # S3 now refuses every upload for good (400 InvalidStorageClass): the save is set aside.
    bookstore_ext.bookstore_settings.s3_storage_class = "NOT_A_CLASS"
    assert await save_nb(jp_fetch, "aside.ipynb", "refused") == 200
    assert await save_nb(jp_fetch, "only-aside.ipynb", "refused too") == 201
    assert await archiver.wait_idle(20)

    listing = await versions(jp_fetch, "aside.ipynb")
    assert [v["version_id"] for v in listing["versions"]] == [kept["version_id"]]
    (dropped,) = listing["dropped"]
    assert set(dropped) == {"save_id", "saved_at", "size", "reason", "code", "set_aside_at"}
    assert dropped["code"] == "InvalidStorageClass"
    assert dropped["save_id"] != kept["save_id"]
    assert dropped["size"] > 0
    assert dropped["saved_at"]
    assert dropped["reason"]
    # Only this path's: the other notebook's refused save is listed under its own path.
    other = await versions(jp_fetch, "only-aside.ipynb")
    assert other["versions"] == []
    assert [d["code"] for d in other["dropped"]] == ["InvalidStorageClass"]
    assert other["dropped"][0]["save_id"] != dropped["save_id"]
    # Not on later pages, nor under the published prefix.
    with pytest.raises(HTTPClientError) as e:
        await versions(jp_fetch, "only-aside.ipynb", prefix="published")
    assert e.value.code == 404
    # A path with nothing at all is still missing.
    with pytest.raises(HTTPClientError) as e:
        await versions(jp_fetch, "never-saved.ipynb")
    assert e.value.code == 404


class TestFullSpool:
    max_bytes = 6000  # about six saves of these small notebooks

    @pytest.fixture
    def proxy(self, s3_server: S3Server) -> Iterator[TcpProxy]:
        with TcpProxy(s3_server.host, s3_server.port) as proxy:
            yield proxy

    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any], proxy: TcpProxy) -> dict[str, Any]:
        return {
            **bookstore_config,
            "s3_endpoint_url": proxy.url,
            "max_spool_bytes": self.max_bytes,
            "min_free_disk_bytes": 0,
        }

    async def test_versions_count_the_saves_dropped_before_them(
        self, jp_fetch: Any, bookstore_ext: Any, proxy: TcpProxy
    ) -> None:
        archiver = bookstore_ext.archiver
        path = "full.ipynb"
        assert await save_nb(jp_fetch, path, "before") == 201
        assert await archiver.wait_idle(20)
        proxy.cut()
        n = 20
        for i in range(n):
            assert await save_nb(jp_fetch, path, f"outage {i}") == 200
        dropped = archiver.status()["dropped_saves"]
        assert dropped > 0
        proxy.restore()
        assert await archiver.wait_idle(30)

        listing = await versions(jp_fetch, path)
        listed = listing["versions"]
        assert len(listed) == 1 + n - dropped
        assert sum(v.get("dropped_saves", 0) for v in listed) == dropped
        assert any(v.get("dropped_saves", 0) > 0 for v in listed)
        assert listed[-1].get("dropped_saves", 0) == 0  # nothing dropped before the first
        assert listing["dropped"] == []  # none set aside
