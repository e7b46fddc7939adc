"""One file name policy (``settings.unarchivable_reason``) for the archiver, history and pages.

Names S3 cannot round-trip (a backslash, which SeaweedFS stores as '/'; control
characters such as tab or DEL) are saved to disk as usual but not archived: the save is
logged and listed as ``not_archivable`` in ``/api/bookstore``, the file keeps Jupyter's
local checkpoints, and the history API and pages answer 400 with the same reason.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import notebook
from history_helpers import drain, fetch_error

from bookstore.settings import BookstoreSettings, clean_api_path, unarchivable_reason

NAMES = ["win\\path.ipynb", "a\tb.ipynb", "del\x7f.ipynb"]


def test_the_policy_names_the_character_and_is_shared() -> None:
    settings = BookstoreSettings()
    for name in NAMES:
        reason = unarchivable_reason(name)
        assert reason is not None
        assert "not archived" in reason
        assert not settings.should_archive(name)
        assert settings.matches_archive_patterns(name)
        with pytest.raises(ValueError, match="not archived") as info:
            clean_api_path(name)
        assert str(info.value) == reason
    assert "backslash" in (unarchivable_reason(NAMES[0]) or "")
    assert "U+0009" in (unarchivable_reason(NAMES[1]) or "")
    assert "U+007F" in (unarchivable_reason(NAMES[2]) or "")
    assert unarchivable_reason("dir/ok name (1).ipynb") is None


async def test_such_files_save_but_are_not_archived_and_history_agrees(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    (jp_root_dir / "win").mkdir()  # "win/path.ipynb" is another file: it must stay apart
    for name in [*NAMES, "win/path.ipynb"]:
        body = {"type": "notebook", "content": notebook(f"saved as {name!r}")}
        r = await jp_fetch("api", "contents", name, method="PUT", body=json.dumps(body))
        assert r.code in (200, 201)
        assert (jp_root_dir / name).is_file()
    await drain(bookstore_ext)

    listed = s3.list_object_versions(Bucket=s3_bucket).get("Versions", [])
    assert [v["Key"] for v in listed] == ["workspace/win/path.ipynb"]

    status = json.loads((await jp_fetch("api", "bookstore")).body)
    skipped = {e["path"]: e["reason"] for e in status["archive"]["not_archivable"]}
    assert set(skipped) == set(NAMES)
    for name in NAMES:
        assert skipped[name] == unarchivable_reason(name)
        for parts in (("api", "bookstore", "versions"), ("bookstore", "versions")):
            code, message = await fetch_error(jp_fetch, *parts, name)
            assert code == 400
            assert skipped[name] in html.unescape(message)
        # Nothing lost: the file keeps Jupyter's own (local) checkpoints.
        r = await jp_fetch("api", "contents", name, "checkpoints", method="POST", body="")
        assert r.code == 201
        assert json.loads(r.body)["id"] == "checkpoint"
    r = await jp_fetch("api", "bookstore", "versions", "win/path.ipynb")
    assert len(json.loads(r.body)["versions"]) == 1
