"""Version history REST API: list, read one, restore, diff; against a real S3 server."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import async_wait_until, list_versions, notebook
from history_helpers import (
    drain,
    fetch_error,
    first_source_on_disk,
    get_json,
    save_nb,
    save_versions,
    sources_of,
)

from bookstore.testing import TcpProxy

API = ("api", "bookstore", "versions")


# --- list -----------------------------------------------------------------------------------


async def test_list_gives_every_version_newest_first_with_its_fields(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    (jp_root_dir / "dir").mkdir()
    await save_versions(bookstore_ext, jp_fetch, "dir/nb.ipynb", ["one", "two", "three"])

    body = await get_json(jp_fetch, *API, "dir/nb.ipynb")

    assert body["path"] == "dir/nb.ipynb"
    assert body["prefix"] == "workspace"
    assert body["s3_path"] == f"s3://{s3_bucket}/workspace/dir/nb.ipynb"
    assert body["next_token"] is None
    expected = list_versions(s3, s3_bucket, "workspace/dir/nb.ipynb")
    got = body["versions"]
    assert [v["version_id"] for v in got] == [v["VersionId"] for v in expected]
    assert [v["is_latest"] for v in got] == [True, False, False]
    for v, ref in zip(got, expected):
        stored = s3.get_object(Bucket=s3_bucket, Key=ref["Key"], VersionId=ref["VersionId"])
        data = stored["Body"].read()
        assert v["sha256"] == hashlib.sha256(data).hexdigest()
        assert v["size"] == len(data)
        assert v["pending"] is False
        assert v["user"] == bookstore_ext.bookstore_settings.username
        assert v["save_id"] == stored["Metadata"]["save-id"]
        # ISO 8601, and the same instant S3 reports.
        assert datetime.fromisoformat(v["last_modified"].replace("Z", "+00:00")) == ref[
            "LastModified"
        ].replace(microsecond=(ref["LastModified"].microsecond // 1000) * 1000)


async def test_pages_follow_next_token_without_gaps_or_repeats(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "paged.ipynb", [f"v{i}" for i in range(5)])

    seen: list[str] = []
    token = None
    sizes = []
    while True:
        body = await get_json(jp_fetch, *API, "paged.ipynb", limit="2", page_token=token)
        sizes.append(len(body["versions"]))
        seen += [v["version_id"] for v in body["versions"]]
        token = body["next_token"]
        if token is None:
            break

    assert sizes == [2, 2, 1]
    expected = list_versions(s3, s3_bucket, "workspace/paged.ipynb")
    assert seen == [v["VersionId"] for v in expected]


async def test_published_prefix_lists_published_versions(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    for text in ("pub 1", "pub 2"):
        s3.put_object(
            Bucket=s3_bucket,
            Key="published/report.ipynb",
            Body=json.dumps(notebook(text)).encode(),
            Metadata={"sha256": "x" * 64, "user": "alice"},
        )

    body = await get_json(jp_fetch, *API, "report.ipynb", prefix="published")

    assert body["prefix"] == "published"
    assert body["s3_path"] == f"s3://{s3_bucket}/published/report.ipynb"
    assert len(body["versions"]) == 2
    assert {v["user"] for v in body["versions"]} == {"alice"}
    # Versions written by other tools are listed too, their metadata as found.
    assert body["versions"][0]["sha256"] == "x" * 64


class TestThroughProxy:
    """S3 reached through a proxy the test can cut: pending saves, outages."""

    @pytest.fixture
    def bookstore_config(
        self, bookstore_config: dict[str, Any], s3_proxy: TcpProxy
    ) -> dict[str, Any]:
        # A long retry delay keeps the saves in the spool while the test looks at them.
        return {
            **bookstore_config,
            "s3_endpoint_url": s3_proxy.url,
            "upload_retry_initial_delay": 60.0,
            "upload_retry_max_delay": 60.0,
            "flush_timeout": 0.2,
        }

    async def test_pending_saves_come_first(
        self, jp_fetch: Any, bookstore_ext: Any, s3_proxy: TcpProxy
    ) -> None:
        await save_versions(bookstore_ext, jp_fetch, "wip.ipynb", ["uploaded"])
        s3_proxy.cut()
        first = await save_nb(jp_fetch, "wip.ipynb", "pending 1")
        second = await save_nb(jp_fetch, "wip.ipynb", "pending 2")
        # Let the first upload attempt fail, so the retry waits its 60 s.
        await async_wait_until(
            lambda: bookstore_ext.archiver.failed_attempts, 10, "a failed upload attempt"
        )
        s3_proxy.restore()

        body = await get_json(jp_fetch, *API, "wip.ipynb")

        versions = body["versions"]
        assert [v["pending"] for v in versions] == [True, True, False]
        assert [v["save_id"] for v in versions[:2]] == [
            second["bookstore_save_id"],
            first["bookstore_save_id"],
        ]
        assert versions[0]["version_id"] is None
        assert versions[0]["is_latest"] is False
        assert re.fullmatch(r"[0-9a-f]{64}", versions[0]["sha256"])
        assert versions[2]["is_latest"] is True

    async def test_a_path_with_only_pending_saves_is_listed(
        self, jp_fetch: Any, bookstore_ext: Any, s3_proxy: TcpProxy
    ) -> None:
        s3_proxy.cut()
        await save_nb(jp_fetch, "new.ipynb", "never uploaded yet")
        await async_wait_until(
            lambda: bookstore_ext.archiver.failed_attempts, 10, "a failed upload attempt"
        )
        s3_proxy.restore()

        body = await get_json(jp_fetch, *API, "new.ipynb")

        assert len(body["versions"]) == 1
        assert body["versions"][0]["pending"] is True

    async def test_s3_unreachable_is_503(
        self, jp_fetch: Any, bookstore_ext: Any, s3_proxy: TcpProxy
    ) -> None:
        s3_proxy.cut()

        code, message = await fetch_error(jp_fetch, *API, "any.ipynb")

        assert code == 503
        assert "unreachable" in message


# --- read one ---------------------------------------------------------------------------------


async def test_read_one_version_as_a_contents_model(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "read.ipynb", ["old text", "new text"])
    old = list_versions(s3, s3_bucket, "workspace/read.ipynb")[1]

    model = await get_json(jp_fetch, *API, "read.ipynb", version_id=old["VersionId"])

    assert model["type"] == "notebook"
    assert model["format"] == "json"
    assert model["name"] == "read.ipynb"
    assert model["path"] == "read.ipynb"
    assert model["writable"] is False
    assert sources_of(model["content"]) == ["old text  # 0"]
    assert model["version_id"] == old["VersionId"]
    assert model["is_latest"] is False
    assert model["size"] == old["Size"]
    assert re.fullmatch(r"[0-9a-f]{64}", model["sha256"])
    assert model["last_modified"].endswith("Z")


class TestTextFiles:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {**bookstore_config, "archive_patterns": ["*"]}

    async def test_text_file_version_has_text_format(
        self, jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
    ) -> None:
        body = {"type": "file", "format": "text", "content": "print('v1')\n"}
        r = await jp_fetch("api", "contents", "script.py", method="PUT", body=json.dumps(body))
        assert r.code == 201
        await drain(bookstore_ext)
        vid = list_versions(s3, s3_bucket, "workspace/script.py")[0]["VersionId"]

        model = await get_json(jp_fetch, *API, "script.py", version_id=vid)

        assert model["type"] == "file"
        assert model["format"] == "text"
        assert model["content"] == "print('v1')\n"
        assert model["is_latest"] is True

    async def test_binary_file_version_is_base64(
        self, jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
    ) -> None:
        body = {"type": "file", "format": "base64", "content": "AP8A/w=="}
        r = await jp_fetch("api", "contents", "blob.bin", method="PUT", body=json.dumps(body))
        assert r.code == 201
        await drain(bookstore_ext)
        vid = list_versions(s3, s3_bucket, "workspace/blob.bin")[0]["VersionId"]

        model = await get_json(jp_fetch, *API, "blob.bin", version_id=vid)

        assert model["format"] == "base64"
        assert model["content"] == "AP8A/w=="


# --- restore ----------------------------------------------------------------------------------


async def test_restore_writes_the_version_back_as_a_new_archived_save(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "r.ipynb", ["good", "broken"])
    good = list_versions(s3, s3_bucket, "workspace/r.ipynb")[1]

    r = await jp_fetch(
        *API, "r.ipynb", method="POST", body=json.dumps({"version_id": good["VersionId"]})
    )

    model = json.loads(r.body)
    assert r.code == 200
    assert model["path"] == "r.ipynb"
    assert model["type"] == "notebook"
    assert model["content"] is None
    assert model["bookstore_save_id"]
    assert first_source_on_disk(jp_root_dir / "r.ipynb") == "good  # 0"
    await drain(bookstore_ext)
    versions = list_versions(s3, s3_bucket, "workspace/r.ipynb")
    assert len(versions) == 3
    latest = s3.get_object(Bucket=s3_bucket, Key="workspace/r.ipynb")
    assert latest["Body"].read() == (jp_root_dir / "r.ipynb").read_bytes()
    assert latest["Metadata"]["save-id"] == model["bookstore_save_id"]
    assert latest["Metadata"]["restored-from"] == good["VersionId"]


async def test_restore_a_published_version_into_the_workspace_file(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "p.ipynb", ["draft"])
    put = s3.put_object(
        Bucket=s3_bucket, Key="published/p.ipynb", Body=json.dumps(notebook("published")).encode()
    )

    body = {"version_id": put["VersionId"], "prefix": "published"}
    r = await jp_fetch(*API, "p.ipynb", method="POST", body=json.dumps(body))

    assert r.code == 200
    assert first_source_on_disk(jp_root_dir / "p.ipynb") == "published  # 0"


async def test_restore_recreates_a_deleted_notebook(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "gone.ipynb", ["keep me"])
    await jp_fetch("api", "contents", "gone.ipynb", method="DELETE")
    assert not (jp_root_dir / "gone.ipynb").exists()
    vid = list_versions(s3, s3_bucket, "workspace/gone.ipynb")[0]["VersionId"]

    await jp_fetch(*API, "gone.ipynb", method="POST", body=json.dumps({"version_id": vid}))

    assert first_source_on_disk(jp_root_dir / "gone.ipynb") == "keep me  # 0"


# --- diff -------------------------------------------------------------------------------------


async def test_diff_between_two_versions_is_cell_aware(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "d.ipynb", ["x = 1", "x = 2"])
    new, old = list_versions(s3, s3_bucket, "workspace/d.ipynb")

    body = await get_json(
        jp_fetch,
        "api",
        "bookstore",
        "diff",
        "d.ipynb",
        **{"from": old["VersionId"], "to": new["VersionId"]},
    )

    assert body["from"] == old["VersionId"]
    assert body["to"] == new["VersionId"]
    assert sources_of(body["base"]) == ["x = 1  # 0"]
    cells = [d for d in body["diff"] if d["key"] == "cells"]
    assert len(cells) == 1
    assert cells[0]["op"] == "patch"
    (cell_patch,) = cells[0]["diff"]
    assert cell_patch["key"] == 0
    assert "source" in {d["key"] for d in cell_patch["diff"]}


async def test_diff_without_to_compares_with_the_current_file(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "cur.ipynb", ["archived"])
    vid = list_versions(s3, s3_bucket, "workspace/cur.ipynb")[0]["VersionId"]

    same = await get_json(jp_fetch, "api", "bookstore", "diff", "cur.ipynb", **{"from": vid})
    assert same["diff"] == []
    assert same["to"] is None

    await save_nb(jp_fetch, "cur.ipynb", "edited")
    changed = await get_json(jp_fetch, "api", "bookstore", "diff", "cur.ipynb", **{"from": vid})
    assert "edited" in json.dumps(changed["diff"])


# --- errors -----------------------------------------------------------------------------------


async def test_unknown_path_is_404(jp_fetch: Any, bookstore_ext: Any) -> None:
    code, message = await fetch_error(jp_fetch, *API, "never-saved.ipynb")
    assert code == 404
    assert "never-saved.ipynb" in message


async def test_unknown_version_is_404(jp_fetch: Any, bookstore_ext: Any) -> None:
    await save_versions(bookstore_ext, jp_fetch, "k.ipynb", ["one"])
    for vid in ("0123456789abcdef0123456789abcdef", "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd"):
        code, _ = await fetch_error(jp_fetch, *API, "k.ipynb", params={"version_id": vid})
        assert code == 404, vid
        code, _ = await fetch_error(
            jp_fetch, *API, "k.ipynb", method="POST", body=json.dumps({"version_id": vid})
        )
        assert code == 404, vid


@pytest.mark.parametrize("bad", ["has space", "semi;colon", "x" * 1025, "quote'", "a\nb", "é"])
async def test_malformed_version_id_is_400_without_asking_s3(
    jp_fetch: Any, bookstore_ext: Any, bad: str
) -> None:
    code, message = await fetch_error(jp_fetch, *API, "k.ipynb", params={"version_id": bad})
    assert code == 400
    assert "version id" in message


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"prefix": "secret"}, "prefix"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"page_token": "bm90LW1pbmU"}, "page_token"),
    ],
)
async def test_bad_list_arguments_are_400(
    jp_fetch: Any, bookstore_ext: Any, params: dict[str, str], needle: str
) -> None:
    code, message = await fetch_error(jp_fetch, *API, "k.ipynb", params=params)
    assert code == 400
    assert needle in message


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("not json", 400),
        ("[1, 2]", 400),
        ("{}", 400),
        ('{"version_id": "bad id"}', 400),
        ('{"version_id": "abc", "prefix": "elsewhere"}', 400),
    ],
)
async def test_bad_restore_bodies_are_refused_and_nothing_is_written(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, body: str, status: int
) -> None:
    code, _ = await fetch_error(jp_fetch, *API, "k.ipynb", method="POST", body=body)
    assert code == status
    assert not (jp_root_dir / "k.ipynb").exists()


@pytest.mark.parametrize("path", ["", "/", "a/../b.ipynb"])
async def test_bad_paths_are_400(jp_fetch: Any, bookstore_ext: Any, path: str) -> None:
    code, _ = await fetch_error(
        jp_fetch, "api", "bookstore", "versions" + path if path else "versions"
    )
    assert code in (400, 404)


async def test_diff_errors(jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str) -> None:
    await save_versions(bookstore_ext, jp_fetch, "e.ipynb", ["one"])
    vid = list_versions(s3, s3_bucket, "workspace/e.ipynb")[0]["VersionId"]
    diff = ("api", "bookstore", "diff")

    assert (await fetch_error(jp_fetch, *diff, "e.ipynb"))[0] == 400  # no from
    assert (await fetch_error(jp_fetch, *diff, "e.ipynb", params={"from": "a b"}))[0] == 400
    unknown = {"from": "0123456789abcdef0123456789abcdef"}
    assert (await fetch_error(jp_fetch, *diff, "e.ipynb", params=unknown))[0] == 404
    other = {"from": vid, "to": "0123456789abcdef0123456789abcdef"}
    assert (await fetch_error(jp_fetch, *diff, "e.ipynb", params=other))[0] == 404
    code, message = await fetch_error(jp_fetch, *diff, "notes.txt", params={"from": vid})
    assert code == 415
    assert "notebook" in message


# --- the listing cache behind the first page ------------------------------------------------------


@pytest.fixture
def store(bookstore_config: dict[str, Any], jp_asyncio_loop: Any) -> Any:
    from bookstore.s3 import S3Store
    from bookstore.settings import BookstoreSettings

    store = S3Store(BookstoreSettings(**bookstore_config))
    yield store
    jp_asyncio_loop.run_until_complete(store.close())


def _put(s3: Any, bucket: str, key: str, n: int) -> list[str]:
    return [
        s3.put_object(Bucket=bucket, Key=key, Body=f"v{i}".encode())["VersionId"] for i in range(n)
    ]


async def test_cached_first_page_sees_new_versions(store: Any, s3: Any, s3_bucket: str) -> None:
    first = _put(s3, s3_bucket, "k", 3)
    page = await store.list_versions_cached("k")
    assert [v.version_id for v in page.versions] == first[::-1]

    added = _put(s3, s3_bucket, "k", 2)  # a few: put in front of the cached page
    page = await store.list_versions_cached("k")
    assert [v.version_id for v in page.versions] == (first + added)[::-1]
    assert [v.is_latest for v in page.versions] == [True, False, False, False, False]

    many = _put(s3, s3_bucket, "k", 30)  # more than one catch-up listing: listed afresh
    page = await store.list_versions_cached("k")
    assert [v.version_id for v in page.versions] == (first + added + many)[::-1]


async def test_cached_first_page_keeps_paging_exact(store: Any, s3: Any, s3_bucket: str) -> None:
    ids = _put(s3, s3_bucket, "k", 5)
    await store.list_versions_cached("k", limit=3)
    ids += _put(s3, s3_bucket, "k", 2)

    page = await store.list_versions_cached("k", limit=3)
    rest = await store.list_versions("k", limit=10, page_token=page.next_token)

    assert [v.version_id for v in page.versions + rest.versions] == ids[::-1]


async def test_cached_first_page_after_the_key_was_deleted(
    store: Any, s3: Any, s3_bucket: str
) -> None:
    ids = _put(s3, s3_bucket, "k", 2)
    await store.list_versions_cached("k")
    s3.delete_object(Bucket=s3_bucket, Key="k")  # a delete marker becomes the latest

    page = await store.list_versions_cached("k")

    assert [v.version_id for v in page.versions] == ids[::-1]
    assert not any(v.is_latest for v in page.versions)
