"""The bookstore demo: SeaweedFS with a versioned bucket, and Jupyter with bookstore.

Run it through ``bash scripts/demo.sh`` (which sets up .venv first). Everything lives in
``.demo/`` in the checkout: SeaweedFS's data (kept across runs, so versions survive a
restart), the Jupyter config, and the notebooks folder. Ctrl-C stops both servers.

The config it writes (``.demo/jupyter/config/jupyter_server_config.py``) holds everything
the server and the ``bookstore`` command need (bucket, endpoint, credentials, root_dir,
spool_dir), so ``JUPYTER_CONFIG_DIR=.demo/jupyter/config bookstore …`` works on the demo.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
from pathlib import Path

import nbformat

from bookstore.testing import start_seaweedfs

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
BUCKET = "bookstore-demo"
ACCESS_KEY = "bookstore-demo"
# A fixed, local-only secret so the data folder keeps working across runs.
SECRET_KEY = "bookstore-demo-secret-key"


def port_free(port: int) -> bool:
    """Whether ``port`` can be listened on, as Jupyter checks it.

    With SO_REUSEADDR, like tornado's listening socket: a port whose last connections are
    in TIME_WAIT (a server stopped a moment ago) is free, so a restart keeps its port.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(preferred: int) -> int:
    """``preferred`` if it is free, else a free port chosen by the system."""
    if port_free(preferred):
        return preferred
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    config_dir: Path,
    endpoint: str,
    root_dir: Path,
    spool_dir: Path,
    *,
    bucket: str = BUCKET,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
) -> Path:
    """The server's config: everything the server and the ``bookstore`` command read.

    Its tests (tests/test_cli_demo.py) call it with the test S3 server's endpoint and keys.
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / "jupyter_server_config.py"
    path.write_text(
        textwrap.dedent(
            f"""\
            # Written by scripts/demo.py: the configuration a bookstore user writes.
            # The server and the `bookstore` command both read it:
            #   JUPYTER_CONFIG_DIR={config_dir} bookstore versions welcome.ipynb
            c.ServerApp.contents_manager_class = "bookstore.BookstoreContentsArchiver"
            c.ServerApp.jpserver_extensions = {{"bookstore": True}}
            c.ServerApp.root_dir = {str(root_dir)!r}

            c.BookstoreSettings.s3_bucket = "{bucket}"
            c.BookstoreSettings.s3_endpoint_url = "{endpoint}"
            c.BookstoreSettings.s3_access_key_id = "{access_key}"
            c.BookstoreSettings.s3_secret_access_key = "{secret_key}"
            c.BookstoreSettings.workspace_prefix = "workspace/{{username}}"
            c.BookstoreSettings.published_prefix = "published/{{username}}"
            c.BookstoreSettings.spool_dir = {str(spool_dir)!r}
            """
        )
    )
    return path


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> bool:
    """Wait until something accepts connections on ``port``, while ``proc`` runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

WELCOME = (
    "# Welcome to bookstore\n\n"
    "Every save of this notebook becomes a new version in the `bookstore-demo` "
    "bucket of the local SeaweedFS.\n\n"
    "1. Change something and press **Save** (Ctrl-S).\n"
    "2. See its versions: *File > Revert to checkpoint* (Notebook 7, JupyterLab and the "
    "classic UI list the newest archived versions and offer the newest first), the "
    "*Version history* panel in JupyterLab and Notebook 7 (*File > Bookstore*), or the "
    "history page at `/bookstore/versions/welcome.ipynb` (view, diff, restore, clone).\n"
    "3. From a terminal in the checkout: "
    "`JUPYTER_CONFIG_DIR=.demo/jupyter/config .venv/bin/bookstore versions welcome.ipynb`.\n"
    "4. Status of the archiver: `/api/bookstore`."
)


def write_welcome(notebooks: Path) -> None:
    """``welcome.ipynb``, with a kernelspec so the UIs open it without asking for a kernel."""
    notebooks.mkdir(parents=True, exist_ok=True)
    target = notebooks / "welcome.ipynb"
    if target.exists():
        # Kept across runs (it has the user's versions); only add what older demos lacked.
        nb = nbformat.read(target, as_version=4)
        if "kernelspec" not in nb.metadata:
            nb.metadata["kernelspec"] = KERNELSPEC
            nbformat.write(nb, target)
        return
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(WELCOME),
        nbformat.v4.new_code_cell("print('hello, bookstore')"),
    ]
    nbformat.write(nb, target)


#: Where each UI opens a notebook.
NOTEBOOK_URLS = {
    "notebook": "notebooks/{path}",
    "nbclassic": "nbclassic/notebooks/{path}",
    "lab": "lab/tree/{path}",
    "server": "bookstore/versions/{path}",
}


def banner(ui: str, port: int, token: str, config_dir: Path) -> str:
    """What to open and what to type, with URLs that carry the token (clickable)."""
    base = f"http://127.0.0.1:{port}/"
    query = "?" + urllib.parse.urlencode({"token": token})
    notebook = base + NOTEBOOK_URLS[ui].format(path="welcome.ipynb") + query
    history = base + "bookstore/versions/welcome.ipynb" + query
    try:
        shown_dir = config_dir.relative_to(Path.cwd())
    except ValueError:
        shown_dir = config_dir
    return textwrap.dedent(
        f"""
        ==> bookstore demo is running. Open (Ctrl-click):
              {notebook}
            history page:  {history}
            Jupyter:       {base}{query}
            command line:  JUPYTER_CONFIG_DIR={shown_dir} .venv/bin/bookstore versions welcome.ipynb
            Ctrl-C stops Jupyter and SeaweedFS (your versions are kept in .demo/).
        """
    )


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ui = sys.argv[1] if len(sys.argv) > 1 else "notebook"
    if ui not in {"notebook", "nbclassic", "lab", "server"}:
        print(f"unknown UI {ui!r}: use notebook, nbclassic, lab or server", file=sys.stderr)
        return 2
    DEMO.mkdir(exist_ok=True)
    s3_port = 8333 if port_free(8333) else None
    print(f"==> starting SeaweedFS (data in {DEMO / 'seaweedfs'})", flush=True)
    s3 = start_seaweedfs(
        DEMO / "seaweedfs",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        s3_port=s3_port,
        log_file=str(DEMO / "seaweedfs.log"),
    )
    try:
        client = s3.boto3_client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if BUCKET not in existing:
            s3.create_bucket(BUCKET, versioning=True)
        else:
            client.put_bucket_versioning(
                Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
            )
        print(f"==> S3 endpoint {s3.endpoint_url}, versioned bucket {BUCKET!r}", flush=True)

        jupyter_home = DEMO / "jupyter"
        notebooks = DEMO / "notebooks"
        config_path = write_config(
            jupyter_home / "config",
            s3.endpoint_url,
            root_dir=notebooks,
            spool_dir=jupyter_home / "data" / "bookstore" / "spool",
        )
        write_welcome(notebooks)
        port = free_port(8888)
        token = secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JPYNB_"))}
        env.update(
            JUPYTER_CONFIG_DIR=str(jupyter_home / "config"),
            JUPYTER_DATA_DIR=str(jupyter_home / "data"),
            JUPYTER_RUNTIME_DIR=str(jupyter_home / "runtime"),
            JUPYTER_TOKEN=token,
        )
        jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or "jupyter"
        args = [jupyter, ui, "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--allow-root")
        if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
            args.append("--no-browser")
        print(f"==> bookstore config: {config_path}", flush=True)
        print(f"==> starting jupyter {ui} on port {port}", flush=True)
        proc = subprocess.Popen(args, env=env)
        try:
            if wait_listening(port, proc):
                print(banner(ui, port, token, config_path.parent), flush=True)
            return proc.wait()
        except (KeyboardInterrupt, SystemExit):
            # Ctrl-C or SIGTERM: let Jupyter stop cleanly (it flushes bookstore's queue).
            if proc.poll() is None:
                # SIGTERM: jupyter_server shuts down cleanly without asking for confirmation.
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(KeyboardInterrupt, subprocess.TimeoutExpired):
                proc.wait(30)
            if proc.poll() is None:
                proc.kill()
            return 0
    finally:
        print("==> stopping SeaweedFS", flush=True)
        s3.stop()


if __name__ == "__main__":
    sys.exit(main())
