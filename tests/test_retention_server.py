"""Retention inside the server: identical saves skipped, pins shown by the API and the page."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from typing import Any

import pytest
from helpers import list_versions, notebook
from history_helpers import drain, get_json

from bookstore.prune import set_pin
from bookstore.s3 import S3Store
from bookstore.settings import BookstoreSettings

# Fixed notebooks: helpers.notebook() makes new random cell ids at every call.
NOTEBOOKS = {source: notebook(source) for source in ("one", "two", "three")}


async def save_nb(jp_fetch: Any, path: str, source: str) -> dict[str, Any]:
    body = {"type": "notebook", "content": NOTEBOOKS[source]}
    r = await jp_fetch("api", "contents", path, method="PUT", body=json.dumps(body))
    assert r.code in (200, 201), r.body
    return json.loads(r.body)  # type: ignore[no-any-return]


async def test_identical_saves_are_skipped_and_a_changed_save_is_stored(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    first = await save_nb(jp_fetch, "same.ipynb", "one")
    # Identical to the save still queued (or being uploaded).
    again = await save_nb(jp_fetch, "same.ipynb", "one")
    assert again["bookstore_save_id"] == first["bookstore_save_id"]
    await drain(bookstore_ext)
    # Identical to the save this server uploaded: still no S3 request needed.
    await save_nb(jp_fetch, "same.ipynb", "one")
    await drain(bookstore_ext)
    assert len(list_versions(s3, s3_bucket, "workspace/same.ipynb")) == 1

    changed = await save_nb(jp_fetch, "same.ipynb", "two")
    await drain(bookstore_ext)

    versions = list_versions(s3, s3_bucket, "workspace/same.ipynb")
    assert len(versions) == 2
    head = s3.head_object(Bucket=s3_bucket, Key="workspace/same.ipynb")
    assert head["Metadata"]["save-id"] == changed["bookstore_save_id"]
    status = await get_json(jp_fetch, "api", "bookstore")
    assert status["archive"]["skipped_identical"] == 2
    assert status["archive"]["uploaded"] == 2
    # Saving back the first content is a change from the newest version: stored.
    await save_nb(jp_fetch, "same.ipynb", "one")
    await drain(bookstore_ext)
    assert len(list_versions(s3, s3_bucket, "workspace/same.ipynb")) == 3


class TestSkippingDisabled:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {**bookstore_config, "skip_identical_saves": False}

    async def test_every_save_is_stored(
        self, jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
    ) -> None:
        await save_nb(jp_fetch, "same.ipynb", "one")
        await save_nb(jp_fetch, "same.ipynb", "one")
        await drain(bookstore_ext)

        assert len(list_versions(s3, s3_bucket, "workspace/same.ipynb")) == 2
        status = await get_json(jp_fetch, "api", "bookstore")
        assert status["archive"]["skipped_identical"] == 0


@pytest.fixture
def cli_env(bookstore_cli_env: dict[str, str]) -> None:
    """Point the command line (run in a thread: its own S3 client) at the server's bucket."""


async def cli(*argv: str) -> None:
    """Run ``bookstore ARGV`` in another process (its own S3 client), as a user would."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bookstore.cli",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, (argv, out, err)


async def pin_elsewhere(
    bookstore_config: dict[str, Any], path: str, version_id: str, pinned: bool = True
) -> None:
    """Pin (or unpin) through another S3 client than the server's (quicker than a process)."""
    settings = BookstoreSettings(**bookstore_config)
    store = S3Store(settings)
    try:
        await set_pin(store, settings, path, version_id, pinned)
    finally:
        await store.close()


async def pins_listed(jp_fetch: Any, path: str) -> set[str]:
    listing = await get_json(jp_fetch, "api", "bookstore", "versions", path)
    return {v["version_id"] for v in listing["versions"] if v["pinned"]}


async def test_pins_show_in_the_versions_api_and_the_history_page(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str, cli_env: None
) -> None:
    for source in ("one", "two", "three"):
        await save_nb(jp_fetch, "p.ipynb", source)
    await drain(bookstore_ext)
    versions = list_versions(s3, s3_bucket, "workspace/p.ipynb")
    pinned = versions[1]["VersionId"]
    assert await pins_listed(jp_fetch, "p.ipynb") == set()  # the server has looked once

    # Pinned by the command line (another S3 client): the very next listing shows it.
    await cli("pin", "p.ipynb", pinned)

    listing = await get_json(jp_fetch, "api", "bookstore", "versions", "p.ipynb")
    one = await get_json(jp_fetch, "api", "bookstore", "versions", "p.ipynb", version_id=pinned)
    r = await jp_fetch("bookstore", "versions", "p.ipynb")

    assert {v["version_id"]: v["pinned"] for v in listing["versions"]} == {
        v["VersionId"]: v["VersionId"] == pinned for v in versions
    }
    assert one["pinned"] is True
    body = r.body.decode()
    assert body.count("bs-badge-pinned") == 1
    item = body[body.index(f'data-version-id="{pinned}"') :]
    assert item.index("bs-badge-pinned") < item.index("</li>")
    assert json.dumps(listing)  # the listing stays plain JSON

    # Unpinned elsewhere: gone from the next listing and the page.
    await cli("unpin", "p.ipynb", pinned)
    assert await pins_listed(jp_fetch, "p.ipynb") == set()
    r = await jp_fetch("bookstore", "versions", "p.ipynb")
    assert "bs-badge-pinned" not in r.body.decode()


def count_s3_calls(store: Any) -> Counter[str]:
    """Count the S3 operations ``store``'s client sends from now on."""
    calls: Counter[str] = Counter()

    def record(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    client = store._client
    assert client is not None
    client.meta.events.register("before-call.s3", record)
    return calls


async def test_a_listing_page_reads_the_pins_with_one_request(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str, bookstore_config: dict[str, Any]
) -> None:
    """Not one tag request per version: the pin index is listed once per page."""
    key = "workspace/many.ipynb"
    for i in range(30):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=json.dumps(notebook(f"v{i}")).encode())
    ids = [v["VersionId"] for v in list_versions(s3, s3_bucket, key)]
    await pin_elsewhere(bookstore_config, "many.ipynb", ids[3])
    await pin_elsewhere(bookstore_config, "many.ipynb", ids[17])
    await get_json(jp_fetch, "api", "bookstore")  # the server's S3 client exists
    await bookstore_ext.store.client()
    calls = count_s3_calls(bookstore_ext.store)

    cold = await pins_listed(jp_fetch, "many.ipynb")
    cold_calls = dict(calls)
    calls.clear()
    warm = await pins_listed(jp_fetch, "many.ipynb")

    assert cold == warm == {ids[3], ids[17]}
    for seen in (cold_calls, dict(calls)):
        assert seen.get("GetObjectTagging", 0) == 0, seen
        assert seen.get("ListObjectsV2", 0) == 1, seen
    # The cold page still reads each version's metadata once (HEAD): pins add one request.
    assert cold_calls.get("HeadObject", 0) >= 30
