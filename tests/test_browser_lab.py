"""The JupyterLab 4 / Notebook 7 extension, driven through its menus, panel and status bar.

One real ``jupyter lab`` process serves every test here (it also serves Notebook 7's pages),
with the prebuilt extension from this source tree, S3 behind a cuttable proxy, and
headless Chromium. Set ``BOOKSTORE_SCREENSHOTS=<dir>`` to save the screenshots used in docs/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import list_versions, notebook, wait_archived
from jupyter_subprocess import JupyterSubprocess
from labext_helpers import (
    ENV,
    assert_serves_this_build,
    link_build,
    type_in_first_cell,
    type_in_first_cell_and_save,
)
from run_helpers import param_notebook, publish, run_versions

from bookstore.testing import S3Server, TcpProxy

pytestmark = pytest.mark.browser

TIMEOUT_MS = 60_000
SCREENSHOTS = os.environ.get("BOOKSTORE_SCREENSHOTS")


@pytest.fixture(scope="module")
def lab_bucket(s3_server: S3Server) -> str:
    name = f"test-lab-{os.urandom(6).hex()}"
    s3_server.create_bucket(name, versioning=True)
    return name


@pytest.fixture(scope="module")
def lab_proxy(s3_server: S3Server) -> Iterator[TcpProxy]:
    with TcpProxy(s3_server.host, s3_server.port) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def lab(
    s3_server: S3Server,
    lab_bucket: str,
    lab_proxy: TcpProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[JupyterSubprocess]:
    base = tmp_path_factory.mktemp("lab")
    config = {
        "ServerApp": {
            "jpserver_extensions": {"bookstore": True},
            "contents_manager_class": "bookstore.BookstoreContentsArchiver",
        },
        "BookstoreSettings": {
            "s3_bucket": lab_bucket,
            "s3_endpoint_url": lab_proxy.url,
            "s3_access_key_id": s3_server.access_key_id,
            "s3_secret_access_key": s3_server.secret_access_key,
            "s3_region_name": s3_server.region_name,
            "spool_dir": str(base / "spool"),
            "upload_retry_initial_delay": 0.05,
            "upload_retry_max_delay": 0.5,
            "s3_connect_timeout": 2.0,
        },
    }
    # No news pop-up over the status bar.
    news = "lab/user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
    jp = JupyterSubprocess(
        "lab", base, config=config, config_files={news: '{"fetchNews": "false"}'}, env=ENV
    )
    link_build(jp)  # this tree's build, ahead of any installed copy
    with jp:
        assert_serves_this_build(jp, "lab")
        assert_serves_this_build(jp, "tree")  # Notebook 7
        yield jp


def put_notebook(jp: JupyterSubprocess, path: str, source: str) -> None:
    r = jp.request(
        "PUT", f"/api/contents/{path}", json={"type": "notebook", "content": notebook(source)}
    )
    assert r.status_code in (200, 201), r.text


def shot(page: Any, name: str, locator: Any = None) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        (locator or page).screenshot(path=str(Path(SCREENSHOTS) / name))


# Installed before JupyterLab loads (it keeps the `fetch` it finds). Once armed, the
# response of the next GET that lists a notebook's workspace versions is held until
# the test releases it, so a refresh of the history panel is still loading when the
# next one starts.
HOLD_VERSION_LISTS = """
(() => {
  const realFetch = window.fetch.bind(window);
  let release = () => {};
  const released = new Promise(resolve => (release = resolve));
  const hold = (window.__bookstoreHold = { armed: false, held: 0, done: 0, release });
  window.fetch = async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    const method = (init && init.method) || (input instanceof Request ? input.method : 'GET');
    const response = await realFetch(input, init);
    const listing = method.toUpperCase() === 'GET'
      && url.includes('/api/bookstore/versions/')
      && !/[?&](prefix=published|version_id=)/.test(url);
    if (hold.armed && listing) {
      hold.armed = false;
      hold.held += 1;
      await released;
      hold.done += 1;
    }
    return response;
  };
})();
"""


def open_lab(browser: Any, jp: JupyterSubprocess, path: str, init_script: str = "") -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    if init_script:
        page.add_init_script(init_script)
    page.goto(f"{jp.url}lab/tree/{path}?reset&token={jp.token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell .cm-content", state="visible")
    no_kernel(page)
    return page


def no_kernel(page: Any) -> None:
    """The test notebooks name no kernel, so Jupyter asks for one: answer "No Kernel"."""
    page.locator(".jp-Dialog button", has_text="No Kernel").click()
    page.locator(".jp-Dialog").wait_for(state="detached")


def menu(page: Any, *labels: str) -> None:
    """Click through the main menu: ``menu(page, "File", "Bookstore", "Publish notebook")``."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{labels[0]}$")).first.click()
    for label in labels[1:-1]:
        item = page.locator(".lm-Menu-item:visible", has_text=label).first
        item.hover()
        item.click()
    page.locator(
        ".lm-Menu-item:visible .lm-Menu-itemLabel",
        has_text=re.compile(f"^{re.escape(labels[-1])}$"),
    ).last.click()


def notebook_text(page: Any) -> str:
    return str(page.locator(".jp-NotebookPanel:visible .jp-Notebook").first.inner_text())


def versions(page: Any) -> Any:
    return page.locator("#jp-bookstore-history .jp-bookstore-Version")


def test_history_panel_lists_views_diffs_and_restores_versions(
    lab: JupyterSubprocess, browser: Any, s3: Any, lab_bucket: str
) -> None:
    put_notebook(lab, "history.ipynb", "print('version one')")
    page = open_lab(browser, lab, "history.ipynb", HOLD_VERSION_LISTS)
    try:
        type_in_first_cell_and_save(page, "print('version two')")
        type_in_first_cell_and_save(page, "print('version three')")
        wait_archived(lab)
        assert len(list_versions(s3, lab_bucket, "workspace/history.ipynb")) == 3

        menu(page, "File", "Bookstore", "Version history")
        page.wait_for_function(
            "() => document.querySelectorAll('#jp-bookstore-history .jp-bookstore-Version')"
            ".length === 3 && !document.querySelector('#jp-bookstore-history .jp-mod-pending')"
        )
        rows = versions(page)
        assert rows.count() == 3
        first = rows.nth(0)
        assert first.locator(".jp-bookstore-Marker-latest").count() == 1
        assert first.locator(".jp-bookstore-Version-time").get_attribute("title")
        assert re.search(r"\d+ B|KB", first.locator(".jp-bookstore-Version-size").inner_text())
        panel = page.locator("#jp-bookstore-history")

        # View the middle version, rendered by JupyterLab's notebook widget, read-only.
        rows.nth(1).click()
        shot(page, "history-panel.png")
        panel.locator(".jp-bookstore-Actions [data-action=view]").click()
        view = page.locator(".jp-bookstore-VersionView .jp-bookstore-ReadOnlyNotebook")
        view.wait_for(state="visible")
        page.wait_for_function(
            "() => document.querySelector('.jp-bookstore-VersionView')"
            ".innerText.includes('version two')"
        )
        assert "version three" not in view.inner_text()
        assert view.locator(".cm-content").first.get_attribute("aria-readonly") == "true"
        shot(page, "version-view.png")

        # Diff the oldest and the newest with nbdime's widget.
        rows.nth(0).click()
        rows.nth(2).click(modifiers=["Control"])
        assert panel.locator(".jp-bookstore-Version.jp-mod-selected").count() == 2
        panel.locator(".jp-bookstore-Actions [data-action=diff]").click()
        diff = page.locator(".jp-bookstore-DiffView .jp-bookstore-NbdimeDiff")
        diff.wait_for(state="visible")
        page.wait_for_function(
            "() => { const t = document.querySelector("
            "'.jp-bookstore-DiffView:not(.lm-mod-hidden)').innerText;"
            " return t.includes('version one') && t.includes('version three'); }"
        )
        shot(page, "diff.png")

        # Restore the oldest: confirm, and the open notebook shows it.
        rows.nth(2).click()
        oldest_id = rows.nth(2).get_attribute("data-version-id")
        panel.locator(".jp-bookstore-Actions [data-action=restore]").click()
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for(state="visible")
        assert oldest_id
        assert oldest_id in dialog.inner_text()
        shot(page, "restore-dialog.png", dialog.locator(".jp-Dialog-content"))
        # The panel's reload after the restore is held, and a click on Refresh starts
        # another one meanwhile: the newer one is shown, and the older one, released
        # later, does not replace it.
        page.evaluate("() => { window.__bookstoreHold.armed = true; }")
        dialog.locator("button.jp-mod-warn").click()
        page.get_by_text("history.ipynb", exact=True).first.click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-NotebookPanel .jp-Cell .cm-content')]"
            '.some(e => e.innerText.includes("version one"))'
        )
        assert "version one" in (lab.root_dir / "history.ipynb").read_text()
        page.wait_for_function("() => window.__bookstoreHold.held === 1")
        panel.locator(".jp-bookstore-Refresh").click()
        # The restore is itself a save: four versions, the panel refreshed to show it.
        page.wait_for_function(
            "() => document.querySelectorAll('#jp-bookstore-history .jp-bookstore-Version')"
            ".length === 4"
        )
        page.evaluate("() => window.__bookstoreHold.release()")
        page.wait_for_function("() => window.__bookstoreHold.done === 1")
        assert versions(page).count() == 4
        assert versions(page).nth(0).locator(".jp-bookstore-Marker-restored").count() == 1
    finally:
        page.close()


def test_publish_from_the_file_menu_shows_the_version_id_that_s3_has(
    lab: JupyterSubprocess, browser: Any, s3: Any, lab_bucket: str
) -> None:
    put_notebook(lab, "report.ipynb", "print('to publish')")
    page = open_lab(browser, lab, "report.ipynb")
    try:
        # Unsaved edits are saved before publishing.
        type_in_first_cell(page, "print('published text')")
        menu(page, "File", "Bookstore", "Publish notebook")
        dialog = page.locator(".jp-Dialog")
        dialog.locator(".jp-bookstore-VersionId").wait_for(state="visible")
        version_id = dialog.locator(".jp-bookstore-VersionId").inner_text().strip()
        assert dialog.locator(".jp-bookstore-S3Path").inner_text() == (
            f"s3://{lab_bucket}/published/report.ipynb"
        )
        link = dialog.locator(".jp-bookstore-CloneLink").input_value()
        assert "/bookstore/clone?" in link
        assert version_id in link
        shot(page, "publish-dialog.png", dialog.locator(".jp-Dialog-content"))
        published = list_versions(s3, lab_bucket, "published/report.ipynb")
        assert [v["VersionId"] for v in published] == [version_id]
        body = s3.get_object(Bucket=lab_bucket, Key="published/report.ipynb", VersionId=version_id)
        assert b"published text" in body["Body"].read()
        dialog.locator("button.jp-mod-accept", has_text="Close").click()

        # The panel's Published section lists it.
        menu(page, "File", "Bookstore", "Version history")
        page.locator(
            f"#jp-bookstore-history .jp-bookstore-Published[data-version-id='{version_id}']"
        ).wait_for()
    finally:
        page.close()


def test_status_bar_warns_while_s3_is_cut_and_recovers(
    lab: JupyterSubprocess, browser: Any, lab_proxy: TcpProxy, s3: Any, lab_bucket: str
) -> None:
    put_notebook(lab, "status.ipynb", "print('status')")
    wait_archived(lab)
    page = open_lab(browser, lab, "status.ipynb")
    item = page.locator(".jp-bookstore-StatusItem")
    try:
        page.wait_for_function(
            "() => document.querySelector('.jp-bookstore-StatusItem')"
            "?.innerText.includes('Archived')"
        )
        lab_proxy.cut()
        type_in_first_cell_and_save(page, "print('saved while S3 is down')")
        # The bucket check may report first ("Archive problem"); the failed upload follows.
        page.wait_for_function(
            "() => { const e = document.querySelector('.jp-bookstore-StatusItem.jp-mod-warning');"
            " return e && e.innerText.includes('S3 unreachable'); }"
        )
        assert "S3 unreachable" in item.inner_text()
        assert "1 save waiting" in item.inner_text()
        shot(page, "status-warning.png", page.locator("#jp-main-statusbar"))
        item.click()
        details = page.locator(".jp-Dialog .jp-bookstore-StatusDetails")
        details.wait_for(state="visible")
        assert "Last error" in details.inner_text()
        page.locator(".jp-Dialog button.jp-mod-accept").click()
    finally:
        lab_proxy.restore()
    try:
        page.wait_for_function(
            "() => { const e = document.querySelector('.jp-bookstore-StatusItem');"
            " return e && !e.classList.contains('jp-mod-warning')"
            " && e.innerText.includes('Archived'); }"
        )
        assert len(list_versions(s3, lab_bucket, "workspace/status.ipynb")) == 2
    finally:
        page.close()


def test_notebook7_publishes_and_opens_the_history_panel(
    lab: JupyterSubprocess, browser: Any, s3: Any, lab_bucket: str
) -> None:
    put_notebook(lab, "nb7.ipynb", "print('notebook seven')")
    wait_archived(lab)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(f"{lab.url}notebooks/nb7.ipynb?token={lab.token}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell .cm-content", state="visible")
        no_kernel(page)
        menu(page, "File", "Bookstore", "Publish notebook")
        dialog = page.locator(".jp-Dialog")
        version_id = dialog.locator(".jp-bookstore-VersionId").inner_text().strip()
        assert [v["VersionId"] for v in list_versions(s3, lab_bucket, "published/nb7.ipynb")] == [
            version_id
        ]
        dialog.locator("button.jp-mod-accept", has_text="Close").click()

        menu(page, "File", "Bookstore", "Version history")
        panel = page.locator("#jp-bookstore-history")
        panel.wait_for(state="visible")
        panel.locator(".jp-bookstore-Version").first.wait_for()
        wait_archived(lab)
        # Every archived version is listed (Notebook 7 may save once more on opening).
        archived = list_versions(s3, lab_bucket, "workspace/nb7.ipynb")
        page.wait_for_function(
            f"() => document.querySelectorAll('#jp-bookstore-history .jp-bookstore-Version')"
            f".length === {len(archived)}"
        )
        ids = panel.locator(".jp-bookstore-Version").evaluate_all(
            "rows => rows.map(r => r.dataset.versionId)"
        )
        assert set(ids) == {v["VersionId"] for v in archived}
        panel.locator(f".jp-bookstore-Published[data-version-id='{version_id}']").wait_for()
        shot(page, "notebook7-panel.png")
    finally:
        page.close()


@pytest.mark.timeout(600)  # a run subprocess and its kernel
def test_run_published_version_with_a_parameter_from_the_panel(
    lab: JupyterSubprocess, browser: Any, s3: Any, lab_bucket: str
) -> None:
    """File > Bookstore > Run published version…: the run appears in the panel's Runs
    section, succeeds, and its output (opened from the panel) has the parameter injected."""
    path = "runme.ipynb"
    put_notebook(lab, path, "print('workspace copy')")
    published = publish(s3, lab_bucket, path, param_notebook("print('result', x + 1)"))
    page = open_lab(browser, lab, path)
    try:
        menu(page, "File", "Bookstore", "Run published version…")
        dialog = page.locator(".jp-Dialog")
        select = dialog.locator("select.jp-bookstore-RunVersion")
        assert select.input_value() == published
        dialog.locator("textarea.jp-bookstore-RunParameters").fill("x = 41")
        dialog.locator("button.jp-mod-accept", has_text="Run").click()
        dialog.wait_for(state="detached")

        panel = page.locator("#jp-bookstore-history")
        panel.wait_for(state="visible")
        run = panel.locator(".jp-bookstore-Run").first
        run.wait_for()
        try:  # the panel polls the runs while one is running
            panel.locator(".jp-bookstore-Run[data-status=succeeded]").wait_for(timeout=300_000)
        except Exception:
            runs = panel.locator(".jp-bookstore-RunList").inner_text()
            raise AssertionError(f"{runs}\n--- server log:\n{lab.log_text()[-6000:]}") from None
        assert panel.locator(".jp-bookstore-Run").count() == 1
        assert run.locator(".jp-bookstore-RunParams").inner_text() == "x=41"
        assert published[:10] in run.locator(".jp-bookstore-RunSource").inner_text()
        assert run.locator(".jp-bookstore-RunDuration").inner_text()
        shot(page, "runs-section.png", panel)

        run.locator("[data-action=open-output]").click()
        output = page.locator(".jp-bookstore-ReadOnlyNotebook:visible")
        output.wait_for()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-bookstore-ReadOnlyNotebook')]"
            ".some(e => e.innerText.includes('result 42'))"
        )
        text = output.inner_text()
        assert "x = 41" in text  # papermill's injected-parameters cell
        assert "result 42" in text
    finally:
        page.close()
    (archived,) = run_versions(s3, lab_bucket, path)
    assert archived["metadata"]["source-version-id"] == published
    assert archived["metadata"]["run-status"] == "succeeded"


def test_panel_marks_a_save_the_archiver_set_aside(
    lab: JupyterSubprocess, browser: Any, s3: Any, lab_bucket: str
) -> None:
    """A save S3 can never take (its key is over 1,024 bytes) is listed as not archived."""
    parts = [f"{i}" + "d" * 219 for i in range(5)]
    for depth in range(1, len(parts) + 1):
        r = lab.request(
            "PUT", f"/api/contents/{'/'.join(parts[:depth])}", json={"type": "directory"}
        )
        assert r.status_code in (200, 201), r.text
    path = "/".join(parts) + "/aside.ipynb"
    put_notebook(lab, path, "print('set aside')")
    wait_archived(lab)
    aside = lab.request("GET", "/api/bookstore").json()["archive"]["set_aside"]
    assert [a["path"] for a in aside if a["path"] == path] == [path]

    page = open_lab(browser, lab, path)
    try:
        menu(page, "File", "Bookstore", "Version history")
        row = page.locator("#jp-bookstore-history .jp-bookstore-Version.jp-mod-dropped")
        row.wait_for()
        assert versions(page).count() == 1
        marker = row.locator(".jp-bookstore-Marker-dropped")
        assert marker.inner_text() == "not archived"
        assert "limit of 1024" in (marker.get_attribute("title") or "")
        assert row.locator(".jp-bookstore-Version-id").inner_text() == "not in S3"
        row.click()  # nothing to view or restore: it is not in S3
        view = page.locator("#jp-bookstore-history .jp-bookstore-Actions [data-action=view]")
        assert view.is_disabled()
        shot(page, "panel-dropped-save.png", page.locator("#jp-bookstore-history"))
    finally:
        page.close()
