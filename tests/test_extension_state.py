"""The extension builds its shared objects once, behind ``Type`` traits, and reports the
features whose handlers it registered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from history_helpers import save_versions

from bookstore.history import VersionHistory
from bookstore.s3 import S3Store


class RecordingStore(S3Store):
    """A real store that counts the version GETs made through it (a config-swapped class)."""

    gets = 0

    async def get_object(self, *args: Any, **kwargs: Any) -> Any:
        type(self).gets += 1
        return await super().get_object(*args, **kwargs)


class RecordingHistory(VersionHistory):
    built = 0
    #: The paths whose pending saves were asked for through this class.
    pending_of: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).built += 1
        super().__init__(*args, **kwargs)

    async def pending(self, path: str) -> Any:
        type(self).pending_of.append(path)
        return await super().pending(path)


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    # A shared folder that does not exist when the server starts: fs-clone is not registered.
    missing = tmp_path / "shared-later"
    return {
        **jp_server_config,
        "BookstoreSettings": {
            **jp_server_config["BookstoreSettings"],
            "fs_cloning_basedir": str(missing),
        },
        "BookstoreExtension": {
            "store_class": "test_extension_state.RecordingStore",
            "history_class": RecordingHistory,
        },
    }


async def test_the_classes_come_from_config_and_are_built_once(
    jp_fetch: Any, bookstore_ext: Any
) -> None:
    RecordingStore.gets = 0
    assert type(bookstore_ext.store) is RecordingStore
    assert type(bookstore_ext.history) is RecordingHistory
    settings = bookstore_ext.serverapp.web_app.settings
    assert settings["bookstore_store"] is bookstore_ext.store
    assert settings["bookstore_history"] is bookstore_ext.history
    assert bookstore_ext.history.store is bookstore_ext.store
    built = RecordingHistory.built

    await save_versions(bookstore_ext, jp_fetch, "once.ipynb", ["a = 1", "a = 2"])
    listing = json.loads((await jp_fetch("api", "bookstore", "versions", "once.ipynb")).body)
    version_id = listing["versions"][-1]["version_id"]
    await jp_fetch("api", "bookstore", "versions", "once.ipynb", params={"version_id": version_id})

    assert RecordingHistory.built == built  # no request builds its own history
    assert RecordingStore.gets >= 1  # the requests went through the configured store


async def test_checkpoints_use_the_history_the_extension_built(
    jp_fetch: Any, bookstore_ext: Any
) -> None:
    cm = bookstore_ext.serverapp.contents_manager
    assert cm.bookstore_history is bookstore_ext.history
    await save_versions(bookstore_ext, jp_fetch, "cp.ipynb", ["a = 1", "a = 2"])
    built = RecordingHistory.built
    RecordingHistory.pending_of.clear()

    listed = json.loads((await jp_fetch("api", "contents", "cp.ipynb", "checkpoints")).body)
    oldest = listed[0]["id"]
    r = await jp_fetch("api", "contents", "cp.ipynb", "checkpoints", oldest, method="POST", body="")

    assert r.code == 204
    assert len(listed) == 2
    assert RecordingHistory.built == built
    assert "cp.ipynb" in RecordingHistory.pending_of  # the extension's history answered


async def test_features_are_what_was_registered(
    jp_fetch: Any, bookstore_ext: Any, tmp_path: Path
) -> None:
    # The folder appears after start: the route was never registered, so the feature is off.
    (tmp_path / "shared-later").mkdir()

    status = json.loads((await jp_fetch("api", "bookstore")).body)
    resp = await jp_fetch(
        "api",
        "bookstore",
        "fs-clone",
        method="POST",
        body=json.dumps({"relpath": "x.ipynb"}),
        raise_error=False,
    )

    assert status["features"]["fs_clone_valid"] is False
    assert resp.code == 404
    assert status["features"]["publish_valid"] is True
    assert status["features"]["bookstore_valid"] is True


async def test_clone_lock_is_built_at_start(bookstore_ext: Any) -> None:
    settings = bookstore_ext.serverapp.web_app.settings
    assert settings["bookstore_clone_lock"] is bookstore_ext.clone_lock
