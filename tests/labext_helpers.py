"""The JupyterLab 4 / Notebook 7 extension as the browser tests load it: this tree's build.

In a virtualenv Jupyter prefers the environment's directories (``JUPYTER_PREFER_ENV_PATH``),
so an installed copy of the extension under ``<venv>/share/jupyter/labextensions`` would be
found before one in the server's own data directory. The servers these tests start turn that
preference off and link this tree's build (``jlpm build`` → ``bookstore/labextension``)
into their data directory; :func:`assert_serves_this_build` checks the page loads it.

Also the steps the JupyterLab tests share: typing into a notebook and saving it
(:func:`type_in_first_cell`, :func:`type_in_first_cell_and_save`), and waits that fail
with what the page showed (:func:`wait_for_page`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jupyter_subprocess import JupyterSubprocess

import bookstore

EXTENSION = "jupyterlab-bookstore"

#: The environment of a server that must find this tree's build first.
ENV = {"JUPYTER_PREFER_ENV_PATH": "0"}


def built_extension() -> Path:
    """The prebuilt extension next to the imported package (source tree or installed wheel)."""
    path = Path(bookstore.__file__).parent / "labextension"
    if not (path / "package.json").exists():
        pytest.fail(
            f"no built frontend at {path}: run `jlpm install && jlpm build` (or pip install .)"
        )
    return path


def link_build(jp: JupyterSubprocess) -> None:
    """Put this tree's build in the server's data directory (before it starts)."""
    target = jp.data_dir / "labextensions" / EXTENSION
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(built_extension(), target_is_directory=True)


def assert_serves_this_build(jp: JupyterSubprocess, page: str = "lab") -> None:
    """The page's config names this build's ``remoteEntry`` (not an installed copy's)."""
    html = jp.request("GET", f"/{page}").text
    found = re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', html, re.S)
    assert found, f"no page config in /{page}"
    extensions = json.loads(found.group(1))["federated_extensions"]
    (ours,) = [e for e in extensions if e["name"] == EXTENSION]
    assert (built_extension() / ours["load"]).exists(), (
        f"/{page} loads {ours['load']}, not this tree's build in {built_extension()}"
    )


#: What a failed wait in JupyterLab reports: open dialogs, the dirty marks, the focus and
#: the notebook's first cell, so that a failure in CI says which state the page was in.
_PAGE_STATE_JS = """() => ({
  dialogs: [...document.querySelectorAll('.jp-Dialog')].map(d => d.innerText.slice(0, 500)),
  dirtyTabs: [...document.querySelectorAll('.lm-TabBar-tab.jp-mod-dirty')]
    .map(t => t.innerText),
  dirtyPanels: document.querySelectorAll('.jp-NotebookPanel .jp-mod-dirty').length,
  editMode: !!document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-mod-editMode'),
  focused: document.activeElement ? document.activeElement.className.slice(0, 200) : null,
  firstCell: (document.querySelector(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content') || {}).innerText,
  toasts: [...document.querySelectorAll('.Toastify__toast')].map(t => t.innerText),
})"""


def page_state(page: Any) -> str:
    """The page's state as :data:`_PAGE_STATE_JS` reads it (for failure messages)."""
    try:
        return json.dumps(page.evaluate(_PAGE_STATE_JS), indent=1)
    except Exception as e:  # the page itself is gone or hung
        return f"(page state unreadable: {e})"


def wait_for_page(page: Any, condition: str, what: str, timeout_ms: float | None = None) -> None:
    """``page.wait_for_function(condition)``; on timeout, fail with what the page showed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        if timeout_ms is None:
            page.wait_for_function(condition)
        else:
            page.wait_for_function(condition, timeout=timeout_ms)
        return
    except PlaywrightTimeout as e:
        waited = str(e).splitlines()[0]
    pytest.fail(f"{what} ({waited}); the page showed:\n{page_state(page)}")


def type_in_first_cell(page: Any, text: str) -> None:
    """Replace the open notebook's first cell with ``text`` by keyboard, unsaved.

    Each step waits for its effect before the next one, so that a keystroke never lands
    before the editor has the focus: the editor focused, then the text in the cell and the
    document marked changed.
    """
    panel = ".jp-NotebookPanel:not(.lm-mod-hidden)"
    editor = page.locator(f"{panel} .jp-Cell .cm-content").first
    editor.click()
    wait_for_page(
        page,
        f"() => !!document.querySelector('{panel} .jp-Cell .cm-editor.cm-focused')",
        "the first cell's editor did not take the focus",
    )
    page.keyboard.press("Control+a")
    page.keyboard.type(text)
    wait_for_page(
        page,
        f"() => document.querySelector('{panel} .jp-Cell .cm-content').innerText"
        f" === {json.dumps(text)} && !!document.querySelector('.lm-TabBar-tab.jp-mod-dirty')",
        f"the typed text {text!r} is not in the cell, or the notebook is not marked changed",
    )


def type_in_first_cell_and_save(page: Any, text: str) -> None:
    """:func:`type_in_first_cell`, then Ctrl+S; done once no change mark is left."""
    type_in_first_cell(page, text)
    page.keyboard.press("Control+s")
    wait_for_page(
        page,
        "() => !document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-mod-dirty')"
        " && !document.querySelector('.lm-TabBar-tab.jp-mod-dirty')",
        f"the save of {text!r} did not finish",
    )
