"""A user types in the classic notebook UI (nbclassic), clicks Save, and S3 has a new version.

Headless Chromium (the Debian package) driven by Playwright, against a real ``jupyter
nbclassic`` subprocess with bookstore archiving to the test's S3 server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import list_versions, notebook, server_config, wait_until
from jupyter_subprocess import JupyterSubprocess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOT = Path(os.environ.get("BOOKSTORE_SCREENSHOT", "/tmp/bookstore-browser-save.png"))
TYPED = "print('typed in the browser, saved to S3')"


@pytest.fixture
def nbclassic(tmp_path: Path, bookstore_config: dict[str, Any]) -> Iterator[JupyterSubprocess]:
    config = server_config(bookstore_config)
    with JupyterSubprocess("nbclassic", tmp_path / "jp", config=config) as jp:
        yield jp


def latest_source(s3: Any, bucket: str, key: str) -> str:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return "".join(json.loads(body)["cells"][0]["source"])


def test_typing_and_clicking_save_creates_a_version(
    browser: Any, nbclassic: JupyterSubprocess, s3: Any, s3_bucket: str
) -> None:
    key = "workspace/browser.ipynb"
    nb = notebook("")
    nb["cells"][0]["source"] = ""
    nbclassic.save_notebook("browser.ipynb", nb)
    wait_until(lambda: list_versions(s3, s3_bucket, key), 30, "the first save was not archived")

    page = browser.new_page(viewport={"width": 1200, "height": 700})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    try:
        # With Notebook 7 installed too, nbclassic serves the classic UI under /nbclassic.
        page.goto(f"{nbclassic.url}nbclassic/notebooks/browser.ipynb?token={nbclassic.token}")
        # The classic UI is ready once the notebook is loaded and its kernel connected (the
        # kernel's start-up writes its metadata into the notebook, marking it changed).
        page.wait_for_function(
            "window.Jupyter && Jupyter.notebook && Jupyter.notebook._fully_loaded"
            " && Jupyter.notebook.kernel && Jupyter.notebook.kernel.is_connected()",
            timeout=60_000,
        )
        page.locator(".cell .CodeMirror").first.click()
        page.keyboard.type(TYPED)
        page.wait_for_function("Jupyter.notebook.dirty === true")

        page.locator('button[data-jupyter-action="jupyter-notebook:save-notebook"]').click()
        # The UI says it saved ("Checkpoint created: <time>") and the notebook is clean.
        page.locator("#notification_notebook", has_text="Checkpoint created").wait_for(
            timeout=30_000
        )
        page.wait_for_function("Jupyter.notebook.dirty === false")

        wait_until(
            lambda: len(list_versions(s3, s3_bucket, key)) >= 2,
            30,
            "the save from the browser was not archived",
        )
    finally:
        page.screenshot(path=str(SCREENSHOT))
        page.close()

    assert len(list_versions(s3, s3_bucket, key)) == 2
    assert TYPED in latest_source(s3, s3_bucket, key)
    assert (nbclassic.root_dir / "browser.ipynb").read_bytes() == s3.get_object(
        Bucket=s3_bucket, Key=key
    )["Body"].read()
    assert errors == [], errors
