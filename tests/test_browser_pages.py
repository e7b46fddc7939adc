"""bookstore's own HTML pages in a real browser: the clone landing page and the history page.

Headless Chromium (the Debian package) driven by Playwright, against a real Jupyter
subprocess with bookstore configured for the test's S3 server. Each test clicks through a
page as a user would, then checks the result through the contents API and S3 itself.
Screenshots are left in /tmp (``BOOKSTORE_SCREENSHOT_DIR``) for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from helpers import first_source, list_versions, notebook, server_config, wait_archived
from jupyter_subprocess import JupyterSubprocess

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(os.environ.get("BOOKSTORE_SCREENSHOT_DIR", "/tmp"))
TIMEOUT_MS = 30_000
#: Shown as "saved by" on every archived version (the archiver reads JUPYTERHUB_USER).
USER = "page-tester"


@pytest.fixture
def jupyter(tmp_path: Path, bookstore_config: dict[str, Any]) -> Iterator[JupyterSubprocess]:
    """``jupyter nbclassic`` with bookstore archiving to the test bucket."""
    config = server_config(bookstore_config, {"nbclassic": True})
    env = {"JUPYTERHUB_USER": USER}
    with JupyterSubprocess("nbclassic", tmp_path / "jp", config=config, env=env) as jp:
        yield jp


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.set_default_timeout(TIMEOUT_MS)
    try:
        yield page
    finally:
        page.close()


def record_problems(page: Any) -> list[str]:
    """Script errors and console errors (CSP violations, failed loads) the page reports."""
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))

    def on_console(message: Any) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text}")

    page.on("console", on_console)
    return problems


def version_source(s3: Any, bucket: str, key: str, version_id: str) -> str:
    """The first cell's source of one S3 version of a notebook."""
    body = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read()
    return first_source({"content": json.loads(body)})


def test_clone_landing_page_clones_an_older_version_and_opens_it(
    jupyter: JupyterSubprocess, page: Any, s3: Any, s3_bucket: str
) -> None:
    key = "workspace/shared/report.ipynb"
    old, new = (
        s3.put_object(Bucket=s3_bucket, Key=key, Body=json.dumps(notebook(f"print('{text}')")))
        for text in ("old report", "new report")
    )
    assert old["VersionId"] != new["VersionId"]
    query = urlencode({"s3_bucket": s3_bucket, "s3_key": key, "s3_version_id": old["VersionId"]})

    problems = record_problems(page)
    page.goto(f"{jupyter.url}bookstore/clone?{query}&token={jupyter.token}")
    rows = dict(
        zip(
            page.locator("dl.bs-facts dt").all_inner_texts(),
            page.locator("dl.bs-facts dd").all_inner_texts(),
        )
    )
    assert rows == {"Bucket": s3_bucket, "Key": key, "Version": old["VersionId"]}
    assert page.locator("h1").inner_text() == "Clone report.ipynb"
    assert page.input_value("#bookstore-target") == "report.ipynb"
    # The history pages' header, styled buttons, and a way back to the source's history.
    assert page.locator("header.bs-header .bs-app").inner_text() == "bookstore"
    assert page.locator("#bookstore-home-link").get_attribute("href") == "/nbclassic/tree"
    history = page.locator("#bookstore-history-link")
    assert (
        history.get_attribute("href") == "/bookstore/versions/shared/report.ipynb?prefix=workspace"
    )
    button = page.locator("#bookstore-clone-button")
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(243, 119, 38)"
    assert history.evaluate("a => getComputedStyle(a).borderStyle") == "solid"
    page.screenshot(path=str(SCREENSHOTS / "bookstore-clone-page.png"), full_page=True)
    page.set_viewport_size({"width": 420, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 420
    page.set_viewport_size({"width": 1200, "height": 800})

    # Opening the clone in nbclassic would start a kernel: not this test's business.
    page.route("**/api/sessions**", lambda route: route.abort())
    with page.expect_navigation(wait_until="commit") as nav:
        page.click("#bookstore-clone-button")
    # The page opens the clone in the server's default frontend, here nbclassic.
    assert nav.value.status == 200
    assert page.url == f"{jupyter.url}nbclassic/notebooks/report.ipynb"
    assert problems == []

    r = jupyter.request("GET", "/api/contents/report.ipynb")
    assert r.status_code == 200, r.text
    assert first_source(r.json()) == "print('old report')  # 0"


def test_history_page_lists_diffs_and_restores_versions(
    jupyter: JupyterSubprocess, page: Any, s3: Any, s3_bucket: str
) -> None:
    path = "notes/history page.ipynb"
    key = f"workspace/{path}"
    assert jupyter.request("PUT", "/api/contents/notes", json={"type": "directory"}).ok
    words = ("one", "two", "three")
    for word in words:
        jupyter.save_notebook(path, notebook(f"print('version {word}')"))
    wait_archived(jupyter)
    # Which S3 version holds which save, found by content: saves made within one second
    # tie on LastModified, so listing order alone proves nothing.
    by_source = {
        version_source(s3, s3_bucket, key, v["VersionId"]): v["VersionId"]
        for v in list_versions(s3, s3_bucket, key)
    }
    vid = {word: by_source.pop(f"print('version {word}')  # 0") for word in words}
    assert by_source == {}

    url = f"{jupyter.url}bookstore/versions/{quote(path)}"
    problems = record_problems(page)
    page.goto(f"{url}?token={jupyter.token}")
    entries = page.locator("section[aria-labelledby=bs-h-workspace] li.bs-version")
    assert entries.count() == 3
    assert entries.evaluate_all("els => els.map(e => e.dataset.versionId)") == [
        vid["three"],
        vid["two"],
        vid["one"],
    ]
    for i in range(3):
        entry = entries.nth(i)
        when = entry.locator("time")
        assert when.get_attribute("datetime")
        assert re.search(r"\d", when.inner_text())
        # UTC and labelled, like the `bookstore` command's SAVED (UTC) column.
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", when.inner_text())
        assert re.fullmatch(r"\d+ B|\d+\.\d KB", entry.locator(".bs-size").inner_text())
        assert entry.locator(".bs-user").inner_text() == USER
    assert "latest" in entries.nth(0).inner_text()
    # The logo goes back to the server's UI (nbclassic here), and the notebook opens in it.
    assert page.locator("#bookstore-home-link").get_attribute("href") == "/nbclassic/tree"
    open_link = page.get_by_role("link", name="Open notebook")
    assert open_link.get_attribute("href") == f"/nbclassic/notebooks/{quote(path)}"
    # The oldest version has nothing before it to diff against.
    assert entries.nth(2).get_by_role("link", name="Diff vs previous").count() == 0

    with page.expect_navigation() as nav:
        entries.nth(0).get_by_role("link", name="Diff vs previous").click()
    response = nav.value
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    diff = page.locator(".bs-diff")
    summary = page.locator(".bs-diff-summary").inner_text()
    assert "1 cell changed" in summary
    assert summary.index(vid["two"]) < summary.index(vid["three"])
    assert diff.locator("tr.bs-del .bs-line").all_inner_texts() == ["print('version two')  # 0"]
    assert diff.locator("tr.bs-add .bs-line").all_inner_texts() == ["print('version three')  # 0"]
    assert not page.inner_text("body").lstrip().startswith("{")
    page.screenshot(path=str(SCREENSHOTS / "bookstore-diff-page.png"), full_page=True)

    page.go_back()
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    oldest = page.locator(f"li.bs-version[data-version-id='{vid['one']}']")
    with page.expect_navigation():
        oldest.get_by_role("button", name="Restore").click()
    assert len(dialogs) == 1
    assert path in dialogs[0]
    notice = page.locator(".bs-notice")
    assert vid["one"] in notice.inner_text()

    model = jupyter.request("GET", f"/api/contents/{quote(path)}").json()
    assert first_source(model) == "print('version one')  # 0"
    wait_archived(jupyter)
    after = list_versions(s3, s3_bucket, key)
    assert len(after) == 4
    new_ids = {v["VersionId"] for v in after} - set(vid.values())
    assert len(new_ids) == 1
    assert version_source(s3, s3_bucket, key, new_ids.pop()) == "print('version one')  # 0"
    page.reload()
    entries = page.locator("section[aria-labelledby=bs-h-workspace] li.bs-version")
    assert entries.count() == 4
    # The newest version is the oldest one's content again.
    assert entries.nth(0).locator(".bs-sha").inner_text() == (
        entries.nth(3).locator(".bs-sha").inner_text()
    )
    assert problems == []
    # The restore is in the timeline, noted; at 420 px wide nothing runs off the page.
    restored = page.locator("section[aria-labelledby=bs-h-workspace] li.bs-version").nth(0)
    assert f"restored from {vid['one']}" in restored.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "bookstore-history-page.png"), full_page=True)
    page.set_viewport_size({"width": 420, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth") <= 420
    tag = restored.locator(".bs-tag")
    box = tag.bounding_box()
    assert box is not None
    assert box["x"] + box["width"] <= 420
    page.screenshot(path=str(SCREENSHOTS / "bookstore-history-page-420px.png"), full_page=False)
    assert problems == []
