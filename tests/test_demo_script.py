"""scripts/demo.py and scripts/setup-env.sh: what a first run and a restart of the demo do."""

from __future__ import annotations

import importlib.util
import os
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def load_demo() -> Any:
    spec = importlib.util.spec_from_file_location("bookstore_demo", ROOT / "scripts" / "demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_port_in_time_wait_counts_as_free_so_a_restart_keeps_its_port() -> None:
    demo = load_demo()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first: its end goes to TIME_WAIT, like a stopped Jupyter
    client.recv(1)
    client.close()
    server.close()

    assert demo.port_free(port)
    assert demo.free_port(port) == port


def test_a_port_in_use_is_not_free() -> None:
    demo = load_demo()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not demo.port_free(port)
        assert demo.free_port(port) != port


def test_welcome_notebook_has_a_kernelspec_and_says_revert_works_everywhere(
    tmp_path: Path,
) -> None:
    demo = load_demo()
    demo.write_welcome(tmp_path)
    nb = nbformat.read(tmp_path / "welcome.ipynb", as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    text = nb.cells[0].source
    assert "classic UI)" not in text
    assert "Notebook 7, JupyterLab and the classic UI" in text

    # A welcome.ipynb from an older demo gets the kernelspec; its cells are the user's.
    old = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("mine")])
    nbformat.write(old, tmp_path / "welcome.ipynb")
    demo.write_welcome(tmp_path)
    nb = nbformat.read(tmp_path / "welcome.ipynb", as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].source == "mine"


def test_the_banner_prints_urls_with_their_token(tmp_path: Path) -> None:
    demo = load_demo()
    text = demo.banner("lab", 8890, "abc123", tmp_path)
    assert "http://127.0.0.1:8890/lab/tree/welcome.ipynb?token=abc123" in text
    assert "http://127.0.0.1:8890/bookstore/versions/welcome.ipynb?token=abc123" in text
    assert f"JUPYTER_CONFIG_DIR={tmp_path} " in text


def test_setup_env_installs_once_and_skips_when_nothing_changed(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    calls = tmp_path / "calls"
    python = venv / "bin" / "python"
    # Records what setup-env.sh asks of the venv's python (pip installs), and succeeds.
    python.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    # The hub's proxy is there already: no npm install (that step is not under test here).
    proxy = venv / "node_modules" / ".bin" / "configurable-http-proxy"
    proxy.parent.mkdir(parents=True)
    proxy.write_text("#!/bin/sh\n")
    proxy.chmod(0o755)
    env = {**os.environ, "BOOKSTORE_VENV": str(venv)}

    def setup() -> str:
        run = subprocess.run(
            ["bash", str(ROOT / "scripts" / "setup-env.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return run.stdout

    setup()
    first = calls.read_text().splitlines()
    assert any("--force-reinstall" in line for line in first)
    assert (venv / ".bookstore-install-stamp").exists()

    out = setup()
    assert calls.read_text().splitlines() == first  # nothing installed again
    assert "up to date" in out

    env["BOOKSTORE_REINSTALL"] = "1"
    setup()
    assert len(calls.read_text().splitlines()) > len(first)
