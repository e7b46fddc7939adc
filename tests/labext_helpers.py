"""The JupyterLab 4 / Notebook 7 extension as the browser tests load it: this tree's build.

In a virtualenv Jupyter prefers the environment's directories (``JUPYTER_PREFER_ENV_PATH``),
so an installed copy of the extension under ``<venv>/share/jupyter/labextensions`` would be
found before one in the server's own data directory. The servers these tests start turn that
preference off and link this tree's build (``jlpm build`` → ``bookstore/labextension``)
into their data directory; :func:`assert_serves_this_build` checks the page loads it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

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
