"""*Revert to checkpoint* in the three Jupyter UIs offers the archived S3 versions, newest last.

One real Jupyter process serves the classic notebook (nbclassic, with bookstore's
nbextension installed as the package installs it), Notebook 7 and JupyterLab 4; headless
Chromium drives each UI. Every test saves a notebook three times, then changes the file on
disk behind Jupyter's back, so that reverting to a checkpoint is visible: the UI's default
(the last checkpoint, or the preselected one) must bring back the newest save.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import list_versions, notebook, wait_archived
from jupyter_subprocess import JupyterSubprocess
from labext_helpers import ENV, assert_serves_this_build, link_build

from bookstore.history import checkpoint_id_for_version
from bookstore.testing import S3Server

pytestmark = pytest.mark.browser

TIMEOUT_MS = 60_000
REPO = Path(__file__).resolve().parent.parent
SAVES = ("version one", "version two", "version three")
SCREENSHOTS = os.environ.get("BOOKSTORE_SCREENSHOTS")


@pytest.fixture(scope="module")
def revert_bucket(s3_server: S3Server) -> str:
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_server.create_bucket(name, versioning=True)
    return name


@pytest.fixture(scope="module")
def jupyter(
    s3_server: S3Server, revert_bucket: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterSubprocess]:
    """One server for the three UIs: /nbclassic/notebooks, /notebooks and /lab/tree."""
    base = tmp_path_factory.mktemp("revert")
    config = {
        "ServerApp": {
            "jpserver_extensions": {
                "bookstore": True,
                "nbclassic": True,
                "notebook": True,
                "jupyterlab": True,
            },
            "contents_manager_class": "bookstore.BookstoreContentsArchiver",
        },
        "BookstoreSettings": {
            "s3_bucket": revert_bucket,
            "s3_endpoint_url": s3_server.endpoint_url,
            "s3_access_key_id": s3_server.access_key_id,
            "s3_secret_access_key": s3_server.secret_access_key,
            "s3_region_name": s3_server.region_name,
            "spool_dir": str(base / "spool"),
        },
    }
    # Where installing the package puts the nbextension and the config that loads it.
    nbconfig = REPO / "jupyter-config" / "nbconfig" / "notebook.d" / "bookstore.json"
    jp = JupyterSubprocess(
        "nbclassic",
        base / "jupyter",
        config=config,
        config_files={"nbconfig/notebook.d/bookstore.json": nbconfig.read_text()},
        env=ENV,
    )
    nbextensions = jp.data_dir / "nbextensions" / "bookstore"
    nbextensions.mkdir(parents=True)
    shutil.copy(REPO / "bookstore" / "nbextension" / "checkpoints.js", nbextensions)
    link_build(jp)  # this tree's JupyterLab / Notebook 7 build, ahead of any installed copy
    with jp:
        assert_serves_this_build(jp, "lab")
        assert_serves_this_build(jp, "tree")  # Notebook 7
        yield jp


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(TIMEOUT_MS)
    page.script_errors = []
    page.on("pageerror", lambda e: page.script_errors.append(f"{e}\n{e.stack}"))
    try:
        yield page
    finally:
        page.close()


def python_notebook(source: str) -> dict[str, Any]:
    """A notebook with a kernelspec, so that the UIs start its kernel without asking."""
    nb = notebook(source)
    nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    return nb


def three_saves_then_edit_on_disk(
    jp: JupyterSubprocess, s3: Any, bucket: str, path: str
) -> list[dict[str, Any]]:
    """Save ``path`` three times, then change the file on disk (not a save: not archived).

    Answers the checkpoint listing, which must be the three versions, newest last.
    """
    for text in SAVES:
        r = jp.request(
            "PUT",
            f"/api/contents/{path}",
            json={"type": "notebook", "content": python_notebook(f"print('{text}')")},
        )
        assert r.status_code in (200, 201), r.text
    wait_archived(jp)
    versions = list_versions(s3, bucket, f"workspace/{path}")
    assert len(versions) == 3
    checkpoints: list[dict[str, Any]] = jp.request(
        "GET", f"/api/contents/{path}/checkpoints"
    ).json()
    assert [c["id"] for c in checkpoints] == [
        checkpoint_id_for_version(v["VersionId"]) for v in reversed(versions)
    ]
    (jp.root_dir / path).write_text(json.dumps(python_notebook("print('edited on disk')")))
    return checkpoints


def source_on_disk(jp: JupyterSubprocess, path: str) -> str:
    return "".join(json.loads((jp.root_dir / path).read_text())["cells"][0]["source"])


def test_classic_menu_ends_with_the_newest_save(
    jupyter: JupyterSubprocess, page: Any, s3: Any, revert_bucket: str
) -> None:
    jp = jupyter
    checkpoints = three_saves_then_edit_on_disk(jp, s3, revert_bucket, "classic.ipynb")
    newest = checkpoints[-1]

    page.goto(f"{jp.url}nbclassic/notebooks/classic.ipynb?token={jp.token}")
    page.wait_for_function(
        "() => window.Jupyter && Jupyter.notebook && Jupyter.notebook._fully_loaded"
    )
    assert "edited on disk" in page.inner_text("#notebook-container")
    # bookstore's nbextension labels the entries (it marks the newest "latest").
    page.wait_for_function(
        "() => document.querySelectorAll('#restore_checkpoint ul li a[data-checkpoint-id]')"
        ".length === 3"
    )
    items = page.locator("#restore_checkpoint ul li a")
    assert items.evaluate_all("els => els.map(e => e.dataset.checkpointId)") == [
        c["id"] for c in checkpoints
    ]
    labels = items.all_inner_texts()
    assert len(set(labels)) == 3, labels
    assert all(re.search(r"\d:\d\d:\d\d", label) for label in labels), labels
    assert labels[-1].endswith("(latest)")
    # "Last Checkpoint" is the newest save, as is the notebook's own default revert target.
    assert page.evaluate("Jupyter.notebook.last_checkpoint.id") == newest["id"]
    assert page.evaluate("Jupyter.save_widget._checkpoint_date.getTime()") == page.evaluate(
        "d => new Date(d).getTime()", newest["last_modified"]
    )

    page.click("#filelink")
    page.hover("#restore_checkpoint")
    items.nth(2).click()
    page.locator(".modal-dialog .modal-footer button.btn-danger").click()
    page.wait_for_function(
        "() => document.querySelector('#notebook-container').innerText.includes('version three')"
    )
    assert source_on_disk(jp, "classic.ipynb") == "print('version three')  # 0"
    assert page.script_errors == []  # bookstore's nbextension included


def open_revert_dialog(page: Any) -> Any:
    """File > Revert Notebook to Checkpoint… in JupyterLab / Notebook 7: answers its select."""
    page.get_by_role("menuitem", name="File").click()
    page.get_by_role("menuitem", name=re.compile("Revert Notebook to Checkpoint")).click()
    select = page.locator(".jp-Dialog select")
    select.wait_for(state="visible")
    return select


def confirm_revert(page: Any) -> None:
    page.locator(".jp-Dialog .jp-mod-accept").click()  # OK: that checkpoint
    page.locator(".jp-Dialog .jp-mod-warn", has_text="Revert").click()
    page.locator(".jp-Dialog").wait_for(state="detached")


@pytest.mark.parametrize(
    ("ui", "url"),
    [("notebook7", "notebooks/{path}"), ("jupyterlab", "lab/tree/{path}")],
)
def test_revert_dialog_entries_are_distinct_and_the_newest_preselected(
    jupyter: JupyterSubprocess, page: Any, s3: Any, revert_bucket: str, ui: str, url: str
) -> None:
    """Three saves within seconds: three entries that differ (seconds, short id), newest first
    and preselected; reverting to the one chosen brings back that save."""
    jp = jupyter
    path = f"{ui}.ipynb"
    checkpoints = three_saves_then_edit_on_disk(jp, s3, revert_bucket, path)

    page.goto(f"{jp.url}{url.format(path=path)}?token={jp.token}")
    page.locator(".jp-Notebook .jp-Cell", has_text="edited on disk").first.wait_for()

    select = open_revert_dialog(page)
    labels: list[str] = select.evaluate("s => [...s.options].map(o => o.textContent)")
    assert len(labels) == 3, labels
    assert len(set(labels)) == 3, labels
    for i, (label, checkpoint) in enumerate(zip(labels, reversed(checkpoints), strict=True)):
        assert label.startswith(f"{i}. "), labels
        assert re.search(r"\d\d:\d\d:\d\d", label), labels  # seconds
        assert checkpoint["id"][:12] in label, (checkpoint["id"], labels)  # short id
    assert select.evaluate("s => s.selectedIndex") == 0  # the newest
    assert labels[0].endswith("newest")
    if SCREENSHOTS and ui == "jupyterlab":
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.locator(".jp-Dialog-content").screenshot(
            path=str(Path(SCREENSHOTS) / "jupyterlab-revert-dialog.png")
        )
    select.select_option(label=labels[1])  # the middle save
    confirm_revert(page)
    page.locator(".jp-Notebook .jp-Cell", has_text="version two").first.wait_for()
    assert source_on_disk(jp, path) == "print('version two')  # 0"
    ours = [e for e in page.script_errors if "labextensions/jupyterlab-bookstore" in e]
    assert ours == [], page.script_errors


def revert_with_the_preselected_checkpoint(page: Any) -> str:
    """File > Revert to Checkpoint… in JupyterLab / Notebook 7: answers the preselected item."""
    page.get_by_role("menuitem", name="File").click()
    page.get_by_role("menuitem", name=re.compile("Revert Notebook to Checkpoint")).click()
    select = page.locator(".jp-Dialog select")
    select.wait_for(state="visible")
    assert select.locator("option").count() == 3
    chosen: str = select.evaluate("s => s.options[s.selectedIndex].textContent")
    page.locator(".jp-Dialog .jp-mod-accept").click()  # OK: that checkpoint
    page.locator(".jp-Dialog .jp-mod-warn", has_text="Revert").click()
    return chosen


@pytest.mark.parametrize(
    ("ui", "url"),
    [("notebook7", "notebooks/{path}"), ("jupyterlab", "lab/tree/{path}")],
)
def test_revert_dialog_preselects_the_newest_save(
    jupyter: JupyterSubprocess, page: Any, s3: Any, revert_bucket: str, ui: str, url: str
) -> None:
    jp = jupyter
    path = f"{ui}-default.ipynb"
    three_saves_then_edit_on_disk(jp, s3, revert_bucket, path)

    page.goto(f"{jp.url}{url.format(path=path)}?token={jp.token}")
    page.locator(".jp-Notebook .jp-Cell", has_text="edited on disk").first.wait_for()

    chosen = revert_with_the_preselected_checkpoint(page)

    assert chosen.startswith("0. ")
    page.locator(".jp-Notebook .jp-Cell", has_text="version three").first.wait_for()
    assert source_on_disk(jp, path) == "print('version three')  # 0"
