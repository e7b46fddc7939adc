"""Retention inside the server: identical saves skipped, pins shown by the API and the page."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import list_versions, notebook
from history_helpers import drain, get_json

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


async def test_pins_show_in_the_versions_api_and_the_history_page(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    for source in ("one", "two", "three"):
        await save_nb(jp_fetch, "p.ipynb", source)
    await drain(bookstore_ext)
    versions = list_versions(s3, s3_bucket, "workspace/p.ipynb")
    pinned = versions[1]["VersionId"]
    s3.put_object_tagging(
        Bucket=s3_bucket,
        Key="workspace/p.ipynb",
        VersionId=pinned,
        Tagging={"TagSet": [{"Key": "bookstore-pinned", "Value": "true"}]},
    )

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
