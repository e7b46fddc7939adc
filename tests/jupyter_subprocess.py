"""A real Jupyter server (``jupyter server|notebook|nbclassic|lab``) in a subprocess, for tests.

The in-process pytest-jupyter server covers most tests; this helper is for what only a real
process shows: the ``jupyter`` command line and its config files, the apps that wrap
jupyter_server (Notebook 7, nbclassic, JupyterLab), signals (SIGTERM, SIGKILL) and restarts
on the same directories, and a browser talking to a real port.

Each server gets its own ``JUPYTER_CONFIG_DIR``, ``JUPYTER_DATA_DIR`` and
``JUPYTER_RUNTIME_DIR`` under ``base_dir``, listens on a free port of 127.0.0.1, and is
protected by a random token::

    with JupyterSubprocess("nbclassic", tmp_path, config={"BookstoreSettings": {...}}) as jp:
        r = jp.request("PUT", "/api/contents/a.ipynb", json={"type": "notebook", ...})
        assert r.status_code == 200
        jp.kill(signal.SIGKILL)

Two servers started one after the other on the same ``base_dir`` share their data directory
(and so bookstore's default spool directory): that is how a restart after a crash is tested.
"""

from __future__ import annotations

import json
import os
import pty
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from bookstore.testing import StopOnExit

__all__ = ["APPS", "JupyterStartError", "JupyterSubprocess", "free_port", "jupyter_command"]

#: The ``jupyter`` subcommands this helper knows how to start.
APPS = ("server", "notebook", "nbclassic", "lab")

_LOOPBACK = "127.0.0.1"


class JupyterStartError(RuntimeError):
    """The server exited or did not answer ``/api/status`` in time; carries its log tail."""


def free_port(host: str = _LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def jupyter_command() -> list[str]:
    """The ``jupyter`` executable of this Python environment (not whatever is first on PATH)."""
    here = Path(sys.executable).parent / "jupyter"
    if here.exists():
        return [str(here)]
    return [sys.executable, "-m", "jupyter"]


class JupyterSubprocess(StopOnExit):
    """One ``jupyter <app>`` process; use as a context manager or call :meth:`start`/:meth:`stop`.

    ``config`` is written as ``jupyter_server_config.json`` (a dict of
    ``{"Section": {"trait": value}}``, e.g. ``{"BookstoreSettings": {"s3_bucket": "b"}}``);
    ``config_files`` maps further file names in the config directory to their contents
    (e.g. ``{"jupyter_notebook_config.py": "c.NotebookApp..."}``). ``env`` adds to (or, with
    ``None`` values, removes from) the environment of the test process. With ``tty=True`` the
    server's stdin is a terminal, so it handles Ctrl-C (SIGINT) as in an interactive shell:
    ask first, stop cleanly on the second.
    """

    def __init__(
        self,
        app: str = "server",
        base_dir: str | os.PathLike[str] = ".",
        *,
        root_dir: str | os.PathLike[str] | None = None,
        config: Mapping[str, Any] | None = None,
        config_files: Mapping[str, str] | None = None,
        env: Mapping[str, str | None] | None = None,
        extra_args: Sequence[str] = (),
        token: str | None = None,
        tty: bool = False,
        startup_timeout: float = 90.0,
        request_timeout: float = 30.0,
    ) -> None:
        if app not in APPS:
            raise ValueError(f"unknown Jupyter app {app!r}: use one of {', '.join(APPS)}")
        self.app = app
        self.base_dir = Path(base_dir).resolve()
        self.root_dir = Path(root_dir).resolve() if root_dir else self.base_dir / "root"
        self.config_dir = self.base_dir / "config"
        self.data_dir = self.base_dir / "data"
        self.runtime_dir = self.base_dir / "runtime"
        self.config = dict(config or {})
        self.config_files = dict(config_files or {})
        self.env_overrides = dict(env or {})
        self.extra_args = list(extra_args)
        self.token = token or secrets.token_hex(16)
        self.tty = tty
        self._tty_master: int | None = None
        self.startup_timeout = startup_timeout
        self.request_timeout = request_timeout
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.base_dir / f"jupyter-{app}.log"
        self.startup_seconds = 0.0
        self._session = self._new_session()

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"token {self.token}"
        return session

    # --- properties --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:8888/`` (ends with a slash)."""
        return f"http://{_LOOPBACK}:{self.port}/"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the server is not started")
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def environ(self) -> dict[str, str]:
        """The environment the server runs with."""
        env = dict(os.environ)
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        env["JUPYTER_CONFIG_DIR"] = str(self.config_dir)
        env["JUPYTER_DATA_DIR"] = str(self.data_dir)
        env["JUPYTER_RUNTIME_DIR"] = str(self.runtime_dir)
        env["JUPYTER_PLATFORM_DIRS"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        for name, value in self.env_overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def log_text(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # --- lifecycle ---------------------------------------------------------------------

    def write_config(self) -> None:
        """Create the directories and write the config files (done by :meth:`start`).

        Call it directly to run other ``jupyter`` commands in this environment first.
        """
        for d in (self.root_dir, self.config_dir, self.data_dir, self.runtime_dir):
            d.mkdir(parents=True, exist_ok=True)
        if self.config:
            (self.config_dir / "jupyter_server_config.json").write_text(
                json.dumps(self.config, indent=2)
            )
        for name, text in self.config_files.items():
            target = self.config_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

    def command(self) -> list[str]:
        """The command line that starts the server."""
        return [
            *jupyter_command(),
            self.app,
            "--allow-root",
            "--no-browser",
            f"--ServerApp.ip={_LOOPBACK}",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--IdentityProvider.token={self.token}",
            "--NotebookNotary.db_file=:memory:",
            *self.extra_args,
        ]

    def start(self) -> JupyterSubprocess:
        """Start the server; wait until ``/api/status`` answers, else raise JupyterStartError."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the server is already running")
        self.write_config()
        self._session = self._new_session()
        for attempt in range(3):
            self.port = free_port()
            started = time.monotonic()
            stdin: int = subprocess.DEVNULL
            if self.tty:
                self._close_tty()
                self._tty_master, stdin = pty.openpty()
            with open(self.log_path, "ab") as log:
                log.write(f"\n--- starting {' '.join(self.command())}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    self.command(),
                    cwd=self.root_dir,
                    env=self.environ(),
                    stdin=stdin,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a Ctrl-C in the test run is not sent to it
                )
            if self.tty:
                os.close(stdin)  # the child has its own copy
            try:
                self._wait_ready()
            except JupyterStartError:
                port_taken = "already in use" in self.log_text()
                self.stop(timeout=5)
                if port_taken and attempt < 2:
                    continue  # another process took the port between free_port() and bind
                raise
            self.startup_seconds = time.monotonic() - started
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise JupyterStartError(
                    f"jupyter {self.app} exited with status {self.proc.returncode}:\n"
                    f"{self._log_tail()}"
                )
            try:
                r = self._session.get(self.url + "api/status", timeout=2)
            except requests.RequestException:
                pass
            else:
                if r.status_code == 200:
                    return
            time.sleep(0.1)
        raise JupyterStartError(
            f"jupyter {self.app} did not answer /api/status within {self.startup_timeout:.0f}s:\n"
            f"{self._log_tail()}"
        )

    def _log_tail(self, limit: int = 6000) -> str:
        return self.log_text()[-limit:]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the server process (SIGKILL by default: a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit and return its status; raises TimeoutExpired."""
        if self.proc is None:
            raise RuntimeError("the server was never started")
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop the server cleanly (SIGTERM), SIGKILL after ``timeout``; return the exit status.

        Idempotent. Any child processes (kernels) in the server's session are killed too.
        """
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leftover kernels of this session
        except (ProcessLookupError, PermissionError):
            pass
        self._session.close()
        self._close_tty()
        return proc.returncode

    def _close_tty(self) -> None:
        if self._tty_master is not None:
            os.close(self._tty_master)
            self._tty_master = None

    def __enter__(self) -> JupyterSubprocess:
        return self.start()

    # --- HTTP --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        authenticated: bool = True,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send a request to ``path`` (relative to :attr:`url`), with the token unless told not to.

        Returns the response whatever its status; check ``status_code`` yourself.
        """
        url = self.url + path.lstrip("/")
        timeout = self.request_timeout if timeout is None else timeout
        if authenticated:
            return self._session.request(method, url, json=json, timeout=timeout, **kwargs)
        return requests.request(method, url, json=json, timeout=timeout, **kwargs)

    def save_notebook(self, path: str, nb: Mapping[str, Any]) -> dict[str, Any]:
        """PUT a notebook through the contents API; return the saved model (raise on error)."""
        r = self.request(
            "PUT",
            f"/api/contents/{path}",
            json={"type": "notebook", "format": "json", "content": nb},
        )
        r.raise_for_status()
        return r.json()

    def __repr__(self) -> str:
        state = "running" if self.returncode is None and self.proc else "stopped"
        return f"<JupyterSubprocess {self.app} {self.url} {state}>"
