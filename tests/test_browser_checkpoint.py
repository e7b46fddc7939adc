"""The classic notebook's File > Revert to Checkpoint offers every archived S3 version.

A real ``jupyter nbclassic`` process, a real S3 server and headless Chromium: the notebook
has several archived versions, the test picks an older one from the menu, confirms, and
checks that the notebook then shows that version's content.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import list_versions, notebook
from jupyter_subprocess import JupyterSubprocess

from bookstore.history import checkpoint_id_for_version
from bookstore.testing import S3Server

pytestmark = pytest.mark.browser

TIMEOUT_MS = 60_000


@pytest.fixture
def nbclassic(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> Iterator[JupyterSubprocess]:
    config = {
        "ServerApp": {
            "jpserver_extensions": {"bookstore": True, "nbclassic": True},
            "contents_manager_class": "bookstore.BookstoreContentsArchiver",
        },
        "BookstoreSettings": {
            "s3_bucket": s3_bucket,
            "s3_endpoint_url": s3_server.endpoint_url,
            "s3_access_key_id": s3_server.access_key_id,
            "s3_secret_access_key": s3_server.secret_access_key,
            "s3_region_name": s3_server.region_name,
            "spool_dir": str(tmp_path / "spool"),
        },
    }
    with JupyterSubprocess("nbclassic", tmp_path / "jupyter", config=config) as jp:
        yield jp


def wait_archived(jp: JupyterSubprocess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if jp.request("GET", "/api/bookstore").json()["archive"]["pending"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the archiver did not upload the saves in time")


def test_revert_to_an_older_s3_version_from_the_file_menu(
    nbclassic: JupyterSubprocess, browser: Any, s3: Any, s3_bucket: str
) -> None:
    jp = nbclassic
    for text in ("version one", "version two", "version three"):
        r = jp.request(
            "PUT",
            "/api/contents/history.ipynb",
            json={"type": "notebook", "content": notebook(f"print('{text}')")},
        )
        assert r.status_code in (200, 201), r.text
    wait_archived(jp)
    versions = list_versions(s3, s3_bucket, "workspace/history.ipynb")
    assert len(versions) == 3
    checkpoints = jp.request("GET", "/api/contents/history.ipynb/checkpoints").json()
    # Newest first, one per S3 version: the last entry is the oldest, "version one".
    assert [c["id"] for c in checkpoints] == [
        checkpoint_id_for_version(v["VersionId"]) for v in versions
    ]

    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(f"{jp.url}nbclassic/notebooks/history.ipynb?token={jp.token}")
        page.wait_for_selector("#notebook-container .cell .CodeMirror", state="visible")
        page.wait_for_function(
            "() => window.Jupyter && Jupyter.notebook && Jupyter.notebook._fully_loaded"
        )
        assert "version three" in page.inner_text("#notebook-container")
        # The menu is filled from the checkpoint listing once the notebook loads.
        items = page.locator("#restore_checkpoint ul li a")
        page.wait_for_function(
            "() => document.querySelectorAll('#restore_checkpoint ul li a[href]').length === 3"
        )

        page.click("#filelink")
        page.hover("#restore_checkpoint")
        oldest = items.nth(2)
        oldest.wait_for(state="visible")
        oldest.click()
        revert = page.locator(".modal-dialog .modal-footer button.btn-danger")
        revert.wait_for(state="visible")
        revert.click()

        page.wait_for_function(
            "() => document.querySelector('#notebook-container').innerText.includes('version one')"
        )
        text = page.inner_text("#notebook-container")
        assert "version one" in text
        assert "version three" not in text
    finally:
        page.close()

    # The revert went through bookstore: the file on disk is the old version, and the
    # revert itself was archived as the newest version.
    on_disk = (jp.root_dir / "history.ipynb").read_text()
    assert "version one" in on_disk
    wait_archived(jp)
    assert len(list_versions(s3, s3_bucket, "workspace/history.ipynb")) == 4
