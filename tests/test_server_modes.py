"""The extension under every way users run Jupyter, as real subprocesses.

``jupyter server``, ``jupyter notebook`` (7), ``jupyter nbclassic`` and ``jupyter lab``; the
original bookstore's ``jupyter_notebook_config.py``; and enabling the extension through the
shipped jupyter-config file or ``jupyter server extension enable``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import list_versions, notebook, server_config, wait_until
from jupyter_subprocess import JupyterSubprocess, jupyter_command

from bookstore.testing import S3Server

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = REPO / "jupyter-config" / "jupyter_server_config.d" / "bookstore.json"


def wait_for_versions(s3: Any, bucket: str, key: str, count: int, timeout: float = 30) -> None:
    wait_until(
        lambda: len(list_versions(s3, bucket, key)) >= count,
        timeout,
        f"{key} has not {count} version(s) in S3",
    )


def check_archives(jp: JupyterSubprocess, s3: Any, bucket: str, path: str) -> None:
    """bookstore is loaded and archiving in ``jp``: a save becomes a version."""
    r = jp.request("GET", "/api/bookstore")
    assert r.status_code == 200, r.text
    assert r.json()["features"]["archive_valid"] is True
    model = jp.save_notebook(path, notebook(f"saved under {jp.app}"))
    assert "bookstore_save_id" in model
    wait_for_versions(s3, bucket, f"workspace/{path}", 1)
    body = s3.get_object(Bucket=bucket, Key=f"workspace/{path}")["Body"].read()
    assert body == (jp.root_dir / path).read_bytes()


@pytest.mark.parametrize("app", ["server", "notebook", "nbclassic", "lab"])
def test_extension_archives_under_each_app(
    app: str, tmp_path: Path, bookstore_config: dict[str, Any], s3: Any, s3_bucket: str
) -> None:
    config = server_config(bookstore_config)
    with JupyterSubprocess(app, tmp_path / app, config=config) as jp:
        check_archives(jp, s3, s3_bucket, f"{app}.ipynb")
        if app != "server":  # the app's own UI is served next to bookstore
            page = {"notebook": "tree", "nbclassic": "tree", "lab": "lab"}[app]
            assert jp.request("GET", f"/{page}").status_code == 200


def _original_config(s3_server: S3Server, bucket: str, spool_dir: str, class_object: bool) -> str:
    """A jupyter_notebook_config.py as the original bookstore's README wrote it."""
    manager = (
        "from bookstore import BookstoreContentsArchiver\n"
        "c.NotebookApp.contents_manager_class = BookstoreContentsArchiver\n"
        if class_object
        else 'c.NotebookApp.contents_manager_class = "bookstore.BookstoreContentsArchiver"\n'
    )
    return (
        manager
        + f"""
c.BookstoreSettings.workspace_prefix = "/workspace/kylek/notebooks"
c.BookstoreSettings.published_prefix = "/published/kylek/notebooks"
c.BookstoreSettings.s3_bucket = {bucket!r}
c.BookstoreSettings.s3_endpoint_url = {s3_server.endpoint_url!r}
c.BookstoreSettings.s3_access_key_id = {s3_server.access_key_id!r}
c.BookstoreSettings.s3_secret_access_key = {s3_server.secret_access_key!r}
c.BookstoreSettings.spool_dir = {spool_dir!r}
"""
    )


@pytest.mark.parametrize(
    ("app", "class_object"),
    [("notebook", False), ("nbclassic", True)],
    ids=["notebook7-string", "nbclassic-class"],
)
def test_original_notebook_config_works(
    app: str,
    class_object: bool,
    tmp_path: Path,
    s3_server: S3Server,
    s3: Any,
    s3_bucket: str,
    spool_dir: str,
) -> None:
    """``c.NotebookApp.contents_manager_class`` in jupyter_notebook_config.py, as before.

    The extension itself is enabled the way an installed package enables it: by the
    jupyter-config file the package ships.
    """
    files = {
        "jupyter_notebook_config.py": _original_config(
            s3_server, s3_bucket, spool_dir, class_object
        ),
        "jupyter_server_config.d/bookstore.json": SHIPPED_CONFIG.read_text(),
    }
    with JupyterSubprocess(app, tmp_path / app, config_files=files) as jp:
        r = jp.request("GET", "/api/bookstore")
        assert r.status_code == 200, jp.log_text()[-3000:]
        assert r.json()["archive"]["prefix"] == "workspace/kylek/notebooks"
        model = jp.save_notebook("legacy.ipynb", notebook("configured the old way"))
        assert "bookstore_save_id" in model
        wait_for_versions(s3, s3_bucket, "workspace/kylek/notebooks/legacy.ipynb", 1)


def _jupyter(jp: JupyterSubprocess, *args: str) -> str:
    """Run ``jupyter <args>`` in ``jp``'s environment; its output, without colour codes."""
    done = subprocess.run(
        [*jupyter_command(), *args],
        env=jp.environ(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)


def _listed(listing: str, state: str) -> bool:
    return re.search(rf"^\s*bookstore\s+{state}\b", listing, re.MULTILINE) is not None


def test_shipped_config_file_enables_the_extension(tmp_path: Path) -> None:
    assert '"bookstore": true' in SHIPPED_CONFIG.read_text()
    jp = JupyterSubprocess(
        "server",
        tmp_path / "jp",
        config_files={"jupyter_server_config.d/bookstore.json": SHIPPED_CONFIG.read_text()},
    )
    jp.write_config()
    listing = _jupyter(jp, "server", "extension", "list")
    assert _listed(listing, "enabled"), listing
    assert re.search(r"bookstore \S+ OK", listing), listing


def test_pyproject_installs_the_config_file() -> None:
    """Installing the package (not editable) puts the file where Jupyter reads it."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    shared = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["jupyter-config/jupyter_server_config.d"] == "etc/jupyter/jupyter_server_config.d"
    assert (REPO / "jupyter-config/jupyter_server_config.d/bookstore.json").is_file()
    installed = Path(sys.prefix) / "etc/jupyter/jupyter_server_config.d/bookstore.json"
    assert json.loads(installed.read_text()) == json.loads(SHIPPED_CONFIG.read_text())


def test_pyproject_installs_the_classic_notebook_extension() -> None:
    """nbclassic loads nbextensions/bookstore/checkpoints.js, enabled by nbconfig/notebook.d."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    shared = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["bookstore/nbextension"] == "share/jupyter/nbextensions/bookstore"
    assert shared["jupyter-config/nbconfig/notebook.d"] == "etc/jupyter/nbconfig/notebook.d"
    nbconfig = REPO / "jupyter-config" / "nbconfig" / "notebook.d" / "bookstore.json"
    enabled = json.loads(nbconfig.read_text())["load_extensions"]
    assert enabled == {"bookstore/checkpoints": True}
    assert (REPO / "bookstore" / "nbextension" / "checkpoints.js").is_file()
    # The regular install the test command makes put both where nbclassic looks.
    prefix = Path(sys.prefix)
    assert (prefix / "share/jupyter/nbextensions/bookstore/checkpoints.js").is_file()
    assert json.loads((prefix / "etc/jupyter/nbconfig/notebook.d/bookstore.json").read_text())


def test_extension_disable_and_enable_commands(
    tmp_path: Path, bookstore_config: dict[str, Any], s3: Any, s3_bucket: str
) -> None:
    """``jupyter server extension disable|enable bookstore`` (--user: the test's config dir).

    jupyter_server 2.21 only toggles an extension already listed in the target directory
    (else: "The module 'bookstore' could not be found"), so the directory starts as an
    installed package leaves it: with the shipped file.
    """
    config = {
        "ServerApp": {"contents_manager_class": "bookstore.BookstoreContentsArchiver"},
        "BookstoreSettings": bookstore_config,
    }
    shipped = {"jupyter_server_config.d/bookstore.json": SHIPPED_CONFIG.read_text()}
    jp = JupyterSubprocess("server", tmp_path / "jp", config=config, config_files=shipped)
    jp.write_config()

    out = _jupyter(jp, "server", "extension", "disable", "--user", "bookstore")
    assert "disabled" in out, out
    assert _listed(_jupyter(jp, "server", "extension", "list"), "disabled")

    out = _jupyter(jp, "server", "extension", "enable", "--user", "bookstore")
    assert "successfully enabled" in out, out
    assert _listed(_jupyter(jp, "server", "extension", "list"), "enabled")
    jp.config_files = {}  # start() must not overwrite what the command wrote
    with jp:
        check_archives(jp, s3, s3_bucket, "enabled.ipynb")
