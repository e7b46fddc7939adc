"""The bookstore demo: SeaweedFS with a versioned bucket, and Jupyter with bookstore.

Run it through ``bash scripts/demo.sh`` (which sets up .venv first). Everything lives in
``.demo/`` in the checkout: SeaweedFS's data (kept across runs, so versions survive a
restart), the Jupyter config, and the notebooks folder. Ctrl-C stops both servers.
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
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def write_config(config_dir: Path, endpoint: str) -> Path:
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / "jupyter_server_config.py"
    path.write_text(
        textwrap.dedent(
            f"""\
            # Written by scripts/demo.py: the configuration a bookstore user writes.
            c.ServerApp.contents_manager_class = "bookstore.BookstoreContentsArchiver"
            c.ServerApp.jpserver_extensions = {{"bookstore": True}}

            c.BookstoreSettings.s3_bucket = "{BUCKET}"
            c.BookstoreSettings.s3_endpoint_url = "{endpoint}"
            c.BookstoreSettings.s3_access_key_id = "{ACCESS_KEY}"
            c.BookstoreSettings.s3_secret_access_key = "{SECRET_KEY}"
            c.BookstoreSettings.workspace_prefix = "workspace/{{username}}"
            c.BookstoreSettings.published_prefix = "published/{{username}}"
            """
        )
    )
    return path


def write_welcome(notebooks: Path) -> None:
    notebooks.mkdir(parents=True, exist_ok=True)
    target = notebooks / "welcome.ipynb"
    if target.exists():
        return
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "# Welcome to bookstore\n\n"
            "Every save of this notebook becomes a new version in the `bookstore-demo` "
            "bucket of the local SeaweedFS.\n\n"
            "1. Change something and press **Save** (Ctrl-S).\n"
            "2. See its versions: *File > Revert to checkpoint* (classic UI) or the "
            "history page at `/bookstore/versions/welcome.ipynb`.\n"
            "3. Status of the archiver: `/api/bookstore`."
        ),
        nbformat.v4.new_code_cell("print('hello, bookstore')"),
    ]
    nbformat.write(nb, target)


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
        config_path = write_config(jupyter_home / "config", s3.endpoint_url)
        notebooks = DEMO / "notebooks"
        write_welcome(notebooks)
        port = 8888 if port_free(8888) else 0
        token = secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JPYNB_"))}
        env.update(
            JUPYTER_CONFIG_DIR=str(jupyter_home / "config"),
            JUPYTER_DATA_DIR=str(jupyter_home / "data"),
            JUPYTER_RUNTIME_DIR=str(jupyter_home / "runtime"),
            JUPYTER_TOKEN=token,
        )
        jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or "jupyter"
        args = [
            jupyter,
            ui,
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--ServerApp.root_dir={notebooks}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--allow-root")
        if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
            args.append("--no-browser")
        print(f"==> bookstore config: {config_path}", flush=True)
        print(f"==> starting jupyter {ui}; open the URL it prints (token {token})", flush=True)
        print(
            "    history of a notebook: <url>/bookstore/versions/welcome.ipynb ; status: "
            "<url>/api/bookstore ; command line: .venv/bin/bookstore --help",
            flush=True,
        )
        proc = subprocess.Popen(args, env=env)
        try:
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
