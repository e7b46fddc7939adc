"""The history page's Runs section in a real browser: "Run this version", then see it finish."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from helpers import server_config
from jupyter_subprocess import JupyterSubprocess
from run_helpers import param_notebook, publish, run_versions

pytestmark = pytest.mark.browser


@pytest.fixture
def jupyter(tmp_path: Path, bookstore_config: dict[str, Any]) -> Iterator[JupyterSubprocess]:
    config = server_config(bookstore_config, {"nbclassic": True})
    with JupyterSubprocess("nbclassic", tmp_path / "jp", config=config) as jp:
        yield jp


@pytest.mark.timeout(600)  # a Jupyter server, a run subprocess and its kernel
def test_run_this_version_from_the_history_page_and_see_it_finish(
    jupyter: JupyterSubprocess, browser: Any, s3: Any, s3_bucket: str
) -> None:
    path = "report.ipynb"
    old = publish(s3, s3_bucket, path, param_notebook("print('result', x + 1)"))
    publish(s3, s3_bucket, path, param_notebook("print('newer code')"))
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(30_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(f"{jupyter.url}bookstore/versions/{quote(path)}?token={jupyter.token}")
        assert page.locator("#bs-h-runs").inner_text().startswith("Runs")
        assert page.locator("li.bs-run-entry").count() == 0
        published = page.locator(
            f"section[aria-labelledby=bs-h-published] li[data-version-id='{old}']"
        )
        published.get_by_role("button", name="Run this version").click()

        page.wait_for_url("**started=*")
        finished = page.locator("li.bs-run-entry[data-status=succeeded]")
        try:
            finished.wait_for(timeout=240_000)  # the page refreshes itself while the run runs
        except Exception:
            page.screenshot(path="/tmp/bookstore-run-from-history-failed.png", full_page=True)
            runs = page.locator("section.bs-runs").inner_text()
            raise AssertionError(f"{runs}\n--- server log:\n{jupyter.log_text()[-6000:]}") from None
        entry = finished.first
        assert old in entry.locator(".bs-source").inner_text()
        entry.get_by_role("link", name="View output").click()
        page.wait_for_url("**prefix=runs*")
        assert "result 2" in page.locator("main").inner_text()
        page.screenshot(path="/tmp/bookstore-run-from-history.png", full_page=True)
    finally:
        page.close()
    (run,) = run_versions(s3, s3_bucket, path)
    assert run["metadata"]["source-version-id"] == old
    assert run["metadata"]["run-status"] == "succeeded"
    assert problems == []
