"""Packaging: the wheel carries the prebuilt frontend and the server-extension config, and
once installed ``jupyter labextension list`` shows the frontend enabled and OK."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = "jupyterlab-bookstore"


def no_colours(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.slow
def test_wheel_installs_the_prebuilt_extension_enabled_and_ok(tmp_path: Path) -> None:
    if not (ROOT / "bookstore" / "labextension" / "package.json").exists():
        pytest.fail("no built frontend: run `jlpm install && jlpm build` first")
    # The extension as built (`jlpm build`); no node here: HATCH_JUPYTER_BUILDER_SKIP_NPM.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        env={**os.environ, "HATCH_JUPYTER_BUILDER_SKIP_NPM": "1"},
    )
    (wheel,) = (tmp_path / "dist").glob("bookstore-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    data = next(n.split("/")[0] for n in names if ".data/" in n)
    share = f"{data}/data/share/jupyter/labextensions/{EXTENSION}"
    assert f"{share}/package.json" in names
    assert f"{share}/install.json" in names
    assert any(re.fullmatch(rf"{share}/static/remoteEntry\.[0-9a-f]+\.js", n) for n in names)
    assert f"{data}/data/etc/jupyter/jupyter_server_config.d/bookstore.json" in names
    assert "bookstore/templates/versions.html" in names
    assert "bookstore/templates/_macros.html" in names  # every page imports it

    # Install it into a prefix of its own and ask Jupyter what it sees there.
    prefix = tmp_path / "prefix"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--ignore-installed",
            "--prefix",
            str(prefix),
            str(wheel),
        ],
        check=True,
    )
    site = sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)})
    env = {
        **os.environ,
        "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": site,
    }
    listing = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    out = no_colours(listing.stdout + listing.stderr)
    line = next((ln for ln in out.splitlines() if EXTENSION in ln), "")
    assert re.search(rf"{EXTENSION} v\S+ enabled\s+OK \(python, bookstore\)", line), out


def npm_version(pep440: str) -> str:
    """The npm (semver) spelling of a PEP 440 version: 3.0.0.dev0 → 3.0.0-dev.0."""
    m = re.fullmatch(r"(\d+\.\d+\.\d+)(?:\.?(dev|a|b|rc)(\d+))?", pep440)
    assert m, f"{pep440!r} is not a version this check knows how to spell for npm"
    release, tag, n = m.groups()
    if tag is None:
        return release
    npm_tag = {"a": "alpha", "b": "beta"}.get(tag, tag)
    return f"{release}-{npm_tag}.{n}"


def test_frontend_version_is_the_python_package_version() -> None:
    """package.json (and so `jupyter labextension list`) names the same release as the wheel."""
    from bookstore._version import __version__

    assert npm_version("3.0.0.dev0") == "3.0.0-dev.0"
    assert npm_version("3.1.0rc2") == "3.1.0-rc.2"
    assert npm_version("3.1.0") == "3.1.0"
    source = json.loads((ROOT / "package.json").read_text())
    assert source["version"] == npm_version(__version__), (source["version"], __version__)
    built = ROOT / "bookstore" / "labextension" / "package.json"
    if built.exists():  # built by `jlpm build`: it must not be left from an older version
        assert json.loads(built.read_text())["version"] == source["version"]
