"""Jupyter checkpoints backed by S3 versions, and history kept across delete and rename."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import list_versions, notebook, wait_until
from history_helpers import (
    drain,
    fetch_error,
    first_source_on_disk,
    get_json,
    save_nb,
    save_versions,
)
from slow_link import SlowLink

from bookstore.history import (
    BadRequest,
    checkpoint_id_for_save,
    checkpoint_id_for_version,
    parse_checkpoint_id,
)
from bookstore.pytest_plugin import S3Requests
from bookstore.testing import S3Server, TcpProxy

JUPYTER_ID = re.compile(r"^[\w-]+$")


def checkpoints_url(path: str) -> tuple[str, ...]:
    return ("api", "contents", path, "checkpoints")


# --- ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version_id",
    [
        "1f3b8a6e-3c1d-4a51-9d1c-0a1b2c3d4e5f",  # moto
        "0123456789abcdef0123456789abcdef",  # SeaweedFS
        "3sL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo",  # AWS docs
        "Uf2bnV8Szb0WTq1kvqEERC8.MHSGpJcD_x/y=",
        "null",
    ],
)
def test_checkpoint_ids_fit_jupyter_and_decode_back(version_id: str) -> None:
    cid = checkpoint_id_for_version(version_id)
    assert JUPYTER_ID.match(cid)
    assert parse_checkpoint_id(cid) == ("version", version_id)


def test_pending_checkpoint_ids_decode_to_the_save() -> None:
    cid = checkpoint_id_for_save("01732700000000000000-a1b2c3")
    assert JUPYTER_ID.match(cid)
    assert parse_checkpoint_id(cid) == ("save", "01732700000000000000-a1b2c3")


@pytest.mark.parametrize("cid", ["checkpoint", "v-", "v-_zz", "v-a_2", "p-123", "x-abc"])
def test_foreign_checkpoint_ids_are_refused(cid: str) -> None:
    with pytest.raises(BadRequest):
        parse_checkpoint_id(cid)


# --- list, create, restore ---------------------------------------------------------------------


async def test_checkpoints_are_the_archived_versions_newest_last(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "c.ipynb", ["one", "two", "three"])

    checkpoints = await get_json(jp_fetch, *checkpoints_url("c.ipynb"))

    # Jupyter's frontends take the last checkpoint as the latest: oldest first.
    versions = list_versions(s3, s3_bucket, "workspace/c.ipynb")
    assert [c["id"] for c in checkpoints] == [
        checkpoint_id_for_version(v["VersionId"]) for v in reversed(versions)
    ]
    assert all(JUPYTER_ID.match(c["id"]) for c in checkpoints)
    assert all(c["last_modified"] for c in checkpoints)


async def test_restore_checkpoint_restores_that_version(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "c.ipynb", ["one", "two", "three"])
    checkpoints = await get_json(jp_fetch, *checkpoints_url("c.ipynb"))

    r = await jp_fetch(*checkpoints_url("c.ipynb"), checkpoints[0]["id"], method="POST", body="")

    assert r.code == 204
    assert first_source_on_disk(jp_root_dir / "c.ipynb") == "one  # 0"
    # The restore is a save like any other: archived as the newest version.
    await drain(bookstore_ext)
    versions = list_versions(s3, s3_bucket, "workspace/c.ipynb")
    assert len(versions) == 4
    oldest = versions[-1]["VersionId"]
    latest = s3.get_object(Bucket=s3_bucket, Key="workspace/c.ipynb")
    assert latest["Metadata"]["restored-from"] == oldest


async def test_save_and_checkpoint_returns_the_version_of_that_save(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "sc.ipynb", ["earlier"])
    saved = await save_nb(jp_fetch, "sc.ipynb", "checkpointed")

    r = await jp_fetch(*checkpoints_url("sc.ipynb"), method="POST", body="")

    assert r.code == 201
    checkpoint = json.loads(r.body)
    assert JUPYTER_ID.match(checkpoint["id"])
    kind, ident = parse_checkpoint_id(checkpoint["id"])
    if kind == "save":  # still uploading: the id names the save itself
        assert ident == saved["bookstore_save_id"]
    # Whether it was pending or not, the id still restores that save once it is in S3.
    await drain(bookstore_ext)
    await save_nb(jp_fetch, "sc.ipynb", "later")
    await jp_fetch(*checkpoints_url("sc.ipynb"), checkpoint["id"], method="POST", body="")
    assert first_source_on_disk(jp_root_dir / "sc.ipynb") == "checkpointed  # 0"


async def test_checkpoint_after_upload_is_the_latest_version_not_a_new_one(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "up.ipynb", ["uploaded"])

    r = await jp_fetch(*checkpoints_url("up.ipynb"), method="POST", body="")

    latest = list_versions(s3, s3_bucket, "workspace/up.ipynb")
    assert len(latest) == 1
    assert json.loads(r.body)["id"] == checkpoint_id_for_version(latest[0]["VersionId"])


async def test_checkpoint_of_a_file_changed_on_disk_archives_it(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "disk.ipynb", ["saved"])
    text = (jp_root_dir / "disk.ipynb").read_text().replace("saved", "edited outside")
    (jp_root_dir / "disk.ipynb").write_text(text)

    r = await jp_fetch(*checkpoints_url("disk.ipynb"), method="POST", body="")

    assert r.code == 201
    await drain(bookstore_ext)
    versions = list_versions(s3, s3_bucket, "workspace/disk.ipynb")
    assert len(versions) == 2
    body = s3.get_object(Bucket=s3_bucket, Key="workspace/disk.ipynb")["Body"].read()
    assert b"edited outside" in body


async def test_restoring_an_unknown_checkpoint_is_404_or_400(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "u.ipynb", ["only"])
    before = (jp_root_dir / "u.ipynb").read_bytes()

    missing = checkpoint_id_for_version("0123456789abcdef0123456789abcdef")
    code, _ = await fetch_error(
        jp_fetch, *checkpoints_url("u.ipynb"), missing, method="POST", body=""
    )
    assert code == 404
    unknown_save = checkpoint_id_for_save("00000000000000000001-abcdef")
    code, _ = await fetch_error(
        jp_fetch, *checkpoints_url("u.ipynb"), unknown_save, method="POST", body=""
    )
    assert code == 404
    code, _ = await fetch_error(
        jp_fetch, *checkpoints_url("u.ipynb"), "nonsense", method="POST", body=""
    )
    assert code == 400
    assert (jp_root_dir / "u.ipynb").read_bytes() == before


# --- history is never deleted ---------------------------------------------------------------


async def test_deleting_a_checkpoint_is_refused_and_keeps_the_version(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "keep.ipynb", ["one", "two"])
    checkpoints = await get_json(jp_fetch, *checkpoints_url("keep.ipynb"))

    code, message = await fetch_error(
        jp_fetch, *checkpoints_url("keep.ipynb"), checkpoints[0]["id"], method="DELETE"
    )

    assert code == 403
    assert "never" in message
    assert len(list_versions(s3, s3_bucket, "workspace/keep.ipynb")) == 2


async def test_deleting_a_notebook_keeps_its_history(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "del.ipynb", ["one", "two"])

    r = await jp_fetch("api", "contents", "del.ipynb", method="DELETE")

    assert r.code == 204
    assert not (jp_root_dir / "del.ipynb").exists()
    assert len(list_versions(s3, s3_bucket, "workspace/del.ipynb")) == 2
    body = await get_json(jp_fetch, "api", "bookstore", "versions", "del.ipynb")
    assert len(body["versions"]) == 2


async def test_rename_starts_the_new_paths_history_and_keeps_the_old(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "old.ipynb", ["one", "two"])

    r = await jp_fetch(
        "api", "contents", "old.ipynb", method="PATCH", body=json.dumps({"path": "new.ipynb"})
    )

    assert r.code == 200
    await drain(bookstore_ext)
    assert len(list_versions(s3, s3_bucket, "workspace/old.ipynb")) == 2
    new_versions = list_versions(s3, s3_bucket, "workspace/new.ipynb")
    assert len(new_versions) == 1
    obj = s3.get_object(Bucket=s3_bucket, Key="workspace/new.ipynb")
    assert obj["Metadata"]["renamed-from"] == "old.ipynb"
    assert obj["Body"].read() == (jp_root_dir / "new.ipynb").read_bytes()
    listing = await get_json(jp_fetch, "api", "bookstore", "versions", "new.ipynb")
    assert listing["versions"][0]["renamed_from"] == "old.ipynb"


async def test_renaming_a_directory_archives_each_notebook_inside(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    (jp_root_dir / "proj" / "sub").mkdir(parents=True)
    await save_nb(jp_fetch, "proj/a.ipynb", "a")
    await save_nb(jp_fetch, "proj/sub/b.ipynb", "b")
    (jp_root_dir / "proj" / "notes.txt").write_text("not archived")
    await drain(bookstore_ext)

    r = await jp_fetch(
        "api", "contents", "proj", method="PATCH", body=json.dumps({"path": "renamed"})
    )

    assert r.code == 200
    await drain(bookstore_ext)
    for old, new in (
        ("proj/a.ipynb", "renamed/a.ipynb"),
        ("proj/sub/b.ipynb", "renamed/sub/b.ipynb"),
    ):
        assert len(list_versions(s3, s3_bucket, f"workspace/{old}")) == 1
        obj = s3.get_object(Bucket=s3_bucket, Key=f"workspace/{new}")
        assert obj["Metadata"]["renamed-from"] == old
    assert list_versions(s3, s3_bucket, "workspace/renamed/notes.txt") == []


# --- files bookstore does not archive keep local checkpoints ----------------------------------


async def test_unarchived_files_keep_jupyters_local_checkpoints(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path
) -> None:
    body = {"type": "file", "format": "text", "content": "v1"}
    await jp_fetch("api", "contents", "notes.txt", method="PUT", body=json.dumps(body))

    r = await jp_fetch(*checkpoints_url("notes.txt"), method="POST", body="")
    checkpoint = json.loads(r.body)
    assert checkpoint["id"] == "checkpoint"
    body["content"] = "v2"
    await jp_fetch("api", "contents", "notes.txt", method="PUT", body=json.dumps(body))
    await jp_fetch(*checkpoints_url("notes.txt"), "checkpoint", method="POST", body="")

    assert (jp_root_dir / "notes.txt").read_text() == "v1"
    assert (jp_root_dir / ".ipynb_checkpoints" / "notes-checkpoint.txt").exists()


async def test_archived_notebooks_get_no_local_checkpoint_files(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "clean.ipynb", ["one"])
    assert not (jp_root_dir / ".ipynb_checkpoints").exists()


# --- S3 outages never fail a save -------------------------------------------------------------


class TestOutage:
    @pytest.fixture
    def bookstore_config(
        self, bookstore_config: dict[str, Any], s3_proxy: TcpProxy
    ) -> dict[str, Any]:
        return {**bookstore_config, "s3_endpoint_url": s3_proxy.url, "s3_connect_timeout": 0.5}

    async def test_first_save_of_a_notebook_works_while_s3_is_down(
        self, jp_fetch: Any, bookstore_ext: Any, s3_proxy: TcpProxy, jp_root_dir: Path
    ) -> None:
        s3_proxy.cut()

        # jupyter_server asks for the new notebook's checkpoints during the save.
        saved = await save_nb(jp_fetch, "offline.ipynb", "offline")

        assert (jp_root_dir / "offline.ipynb").exists()
        checkpoint = await jp_fetch(*checkpoints_url("offline.ipynb"), method="POST", body="")
        assert parse_checkpoint_id(json.loads(checkpoint.body)["id"]) == (
            "save",
            saved["bookstore_save_id"],
        )
        code, _ = await fetch_error(jp_fetch, *checkpoints_url("offline.ipynb"))
        assert code == 503
        s3_proxy.restore()
        await drain(bookstore_ext)
        listed = await get_json(jp_fetch, *checkpoints_url("offline.ipynb"))
        assert len(listed) == 1


# --- each save listed once, while its upload finishes ------------------------------------------


def save_ids_of(listing: list[dict[str, Any]], save_of_version: dict[str, str]) -> list[str]:
    """The save behind each checkpoint: ``p-<save id>`` itself, ``v-<id>`` from S3 metadata."""
    out = []
    for checkpoint in listing:
        kind, ident = parse_checkpoint_id(checkpoint["id"])
        out.append(ident if kind == "save" else save_of_version[ident])
    return out


def wait_versions(s3: Any, bucket: str, key: str, count: int, timeout: float = 60) -> int:
    """Until S3 itself lists ``count`` versions of ``key`` or more; how many (blocking)."""
    stored: int = wait_until(
        lambda: (n := len(list_versions(s3, bucket, key))) >= count and n,
        timeout,
        f"S3 never listed {count} versions of {key}",
        interval=0.01,
    )
    return stored


class TestListingWhileUploading:
    """S3 lists a version before its upload's answer is back: the save is still pending."""

    @pytest.fixture
    def link(self, s3_server: S3Server) -> Any:
        with SlowLink(s3_server.host, s3_server.port, delay=0.4) as link:
            yield link

    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any], link: SlowLink) -> dict[str, Any]:
        return {**bookstore_config, "s3_endpoint_url": link.url}

    async def test_each_save_is_listed_once_while_its_upload_finishes(
        self, jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
    ) -> None:
        key = "workspace/race.ipynb"
        saves = [
            (await save_nb(jp_fetch, "race.ipynb", f"save {i}"))["bookstore_save_id"]
            for i in range(4)
        ]
        listings = [await get_json(jp_fetch, *checkpoints_url("race.ipynb"))]
        in_window = stored = 0
        while stored < len(saves):
            # S3 has stored another upload (seen directly, not through the slow link): if
            # its answer is still on the way back, the archiver still holds that save.
            stored = await asyncio.to_thread(wait_versions, s3, s3_bucket, key, stored + 1)
            in_window += bookstore_ext.archiver.pending > len(saves) - stored
            listings.append(await get_json(jp_fetch, *checkpoints_url("race.ipynb")))
        await drain(bookstore_ext)
        listings.append(await get_json(jp_fetch, *checkpoints_url("race.ipynb")))

        save_of_version = {
            v["VersionId"]: s3.head_object(Bucket=s3_bucket, Key=key, VersionId=v["VersionId"])[
                "Metadata"
            ]["save-id"]
            for v in list_versions(s3, s3_bucket, key)
        }
        for listing in listings:
            listed = save_ids_of(listing, save_of_version)
            assert sorted(listed) == saves, [c["id"] for c in listing]  # each save once
        assert in_window, "no listing was made while an upload was finishing"
        assert all(c["id"].startswith("v-") for c in listings[-1])


# --- long histories stay cheap -----------------------------------------------------------------


def put_foreign_versions(s3: Any, bucket: str, key: str, count: int) -> list[str]:
    """Versions written by another server (their metadata is not in this server's cache)."""
    save_ids = []
    for i in range(count):
        save_id = f"{time.time_ns():020d}-{i:06x}"
        body = json.dumps(notebook(f"foreign {i}")).encode()
        s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"save-id": save_id})
        save_ids.append(save_id)
    return save_ids


class TestLongHistory:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {**bookstore_config, "max_checkpoints": 3}

    async def test_the_list_holds_the_newest_max_checkpoints_versions(
        self, jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str, s3_requests: S3Requests
    ) -> None:
        await save_versions(bookstore_ext, jp_fetch, "long.ipynb", [f"v{i}" for i in range(6)])
        s3_requests.ops.clear()

        checkpoints = await get_json(jp_fetch, *checkpoints_url("long.ipynb"))

        newest = list_versions(s3, s3_bucket, "workspace/long.ipynb")[:3]
        assert [c["id"] for c in checkpoints] == [
            checkpoint_id_for_version(v["VersionId"]) for v in reversed(newest)
        ]
        assert s3_requests.reads() == ["ListObjectVersions"]
        # The versions API still pages through all of them.
        listing = await get_json(jp_fetch, "api", "bookstore", "versions", "long.ipynb")
        assert len(listing["versions"]) == 6

    async def test_restoring_a_version_checkpoint_is_one_get(
        self,
        jp_fetch: Any,
        bookstore_ext: Any,
        jp_root_dir: Path,
        s3: Any,
        s3_bucket: str,
        s3_requests: S3Requests,
    ) -> None:
        await save_versions(bookstore_ext, jp_fetch, "one.ipynb", ["first", "second"])
        oldest = list_versions(s3, s3_bucket, "workspace/one.ipynb")[-1]["VersionId"]
        s3_requests.ops.clear()

        r = await jp_fetch(
            *checkpoints_url("one.ipynb"),
            checkpoint_id_for_version(oldest),
            method="POST",
            body="",
        )

        assert r.code == 204
        assert first_source_on_disk(jp_root_dir / "one.ipynb") == "first  # 0"
        assert s3_requests.reads() == ["GetObject"]

    async def test_a_missing_checkpoint_is_404_after_a_few_requests(
        self,
        jp_fetch: Any,
        bookstore_ext: Any,
        jp_root_dir: Path,
        s3: Any,
        s3_bucket: str,
        s3_requests: S3Requests,
    ) -> None:
        key = "workspace/many.ipynb"
        foreign = put_foreign_versions(s3, s3_bucket, key, 8)
        await save_versions(bookstore_ext, jp_fetch, "many.ipynb", ["mine"])
        before = (jp_root_dir / "many.ipynb").read_bytes()
        url = checkpoints_url("many.ipynb")
        missing_version = checkpoint_id_for_version("0123456789abcdef0123456789abcdef")
        now = f"{time.time_ns():020d}-abcdef"
        tomorrow = f"{time.time_ns() + 86_400 * 10**9:020d}-abcdef"

        s3_requests.ops.clear()
        code, _ = await fetch_error(jp_fetch, *url, missing_version, method="POST", body="")
        assert (code, s3_requests.reads()) == (404, ["GetObject"])

        # A save id: at most the newest max_checkpoints versions are looked at, and only
        # those not uploaded by this server need a HEAD.
        s3_requests.ops.clear()
        code, message = await fetch_error(
            jp_fetch, *url, checkpoint_id_for_save(now), method="POST", body=""
        )
        assert code == 404
        assert "newest 3 versions" in message
        assert s3_requests.reads() == ["ListObjectVersions", "HeadObject", "HeadObject"]

        # A save made after every stored version cannot be among them: the listing is
        # reused (a HEAD of the key shows nothing changed), and no version is looked at.
        s3_requests.ops.clear()
        code, _ = await fetch_error(
            jp_fetch, *url, checkpoint_id_for_save(tomorrow), method="POST", body=""
        )
        assert (code, s3_requests.reads()) == (404, ["HeadObject"])

        # A foreign save among the newest versions is found (its metadata is known by
        # now) and restored.
        s3_requests.ops.clear()
        r = await jp_fetch(*url, checkpoint_id_for_save(foreign[-1]), method="POST", body="")
        assert r.code == 204
        assert first_source_on_disk(jp_root_dir / "many.ipynb") == "foreign 7  # 0"
        assert s3_requests.reads() == ["HeadObject", "GetObject"]
        assert before != (jp_root_dir / "many.ipynb").read_bytes()


class TestLongQueue:
    """Saves waiting for S3: the list shows the newest ``max_checkpoints`` of them."""

    @pytest.fixture
    def bookstore_config(
        self, bookstore_config: dict[str, Any], s3_proxy: TcpProxy
    ) -> dict[str, Any]:
        return {**bookstore_config, "max_checkpoints": 3, "s3_endpoint_url": s3_proxy.url}

    async def test_the_list_holds_the_newest_waiting_saves_oldest_first(
        self, jp_fetch: Any, bookstore_ext: Any, s3_proxy: TcpProxy, s3: Any, s3_bucket: str
    ) -> None:
        await save_versions(bookstore_ext, jp_fetch, "queue.ipynb", ["uploaded"])
        uploader = bookstore_ext.archiver.uploader
        failed, resume = asyncio.Event(), asyncio.Event()

        async def held_sleep(delay: float) -> None:  # the first retry waits for the test
            failed.set()
            await resume.wait()

        uploader.sleep = held_sleep
        s3_proxy.cut()
        try:
            ids = [(await save_nb(jp_fetch, "queue.ipynb", "waiting 0"))["bookstore_save_id"]]
            await asyncio.wait_for(failed.wait(), 30)
            ids += [
                (await save_nb(jp_fetch, "queue.ipynb", f"waiting {i}"))["bookstore_save_id"]
                for i in range(1, 6)
            ]
        finally:
            s3_proxy.restore()
        try:
            checkpoints = await get_json(jp_fetch, *checkpoints_url("queue.ipynb"))
        finally:
            resume.set()

        assert [c["id"] for c in checkpoints] == [checkpoint_id_for_save(i) for i in ids[-3:]]
        await drain(bookstore_ext)
        assert len(list_versions(s3, s3_bucket, "workspace/queue.ipynb")) == 7


def test_without_the_extension_checkpoints_build_one_history_for_their_archiver(
    tmp_path: Path,
) -> None:
    # As jupyter_server's own contents tests run it (tests_upstream): a contents manager
    # given its archiver directly, no extension and so no history built at start.
    import logging

    from bookstore import BookstoreContentsArchiver
    from bookstore.s3 import S3Store
    from bookstore.settings import BookstoreSettings
    from bookstore.spool import Archiver

    settings = BookstoreSettings(s3_bucket="notebooks", spool_dir=str(tmp_path / "spool"))
    log = logging.getLogger("test")
    cm = BookstoreContentsArchiver(root_dir=str(tmp_path))
    cm.bookstore_archiver = Archiver(settings, S3Store(settings, log=log), log)
    checkpoints = cm.checkpoints

    first = checkpoints._history(cm.bookstore_archiver)
    assert checkpoints._history(cm.bookstore_archiver) is first  # built once, not per call
    assert first.archiver is cm.bookstore_archiver
    other = Archiver(settings, S3Store(settings, log=log), log)
    assert checkpoints._history(other).archiver is other  # never another archiver's
