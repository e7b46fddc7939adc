"""The documented ``bookstore`` commands, run as a user runs them on the demo.

The config layout is the demo's own (``scripts/demo.py`` writes it), pointed at the test S3
server; the only variable set is ``JUPYTER_CONFIG_DIR``, as the README says, and the commands
run from another directory, so the root dir and the spool must come from the config.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import nbformat
import pytest
from traitlets.config import Config

from bookstore.cli import main
from bookstore.settings import BookstoreSettings
from bookstore.testing import S3Server

ROOT = Path(__file__).resolve().parent.parent


def load_demo() -> Any:
    spec = importlib.util.spec_from_file_location("bookstore_demo", ROOT / "scripts" / "demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def demo(tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> dict[str, Any]:
    """The demo's ``.demo/`` layout in ``tmp_path``, its config aimed at the test S3 server."""
    module = load_demo()
    home = tmp_path / ".demo"
    notebooks = home / "notebooks"
    spool = home / "jupyter" / "data" / "bookstore" / "spool"
    config = module.write_config(
        home / "jupyter" / "config",
        s3_server.endpoint_url,
        root_dir=notebooks,
        spool_dir=spool,
        bucket=s3_bucket,
        access_key=s3_server.access_key_id,
        secret_key=s3_server.secret_access_key,
    )
    module.write_welcome(notebooks)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "JPYNB_", "BOOKSTORE_", "JUPYTER_"))
    }
    env.update(
        JUPYTER_CONFIG_DIR=str(config.parent),
        HOME=str(tmp_path / "home"),
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return {"env": env, "cwd": elsewhere, "notebooks": notebooks, "spool": spool, "home": home}


def bookstore_process(demo: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    """``bookstore ARGS`` as its own Python process, with the demo's environment only."""
    return subprocess.run(
        [sys.executable, "-m", "bookstore.cli", *args],
        env=demo["env"],
        cwd=demo["cwd"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def bookstore(
    demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Result]:
    """``bookstore ARGS`` in this process, in the environment and directory the subprocess
    gets: nothing of the test's own environment is left to help it find the config."""
    for name in list(os.environ):
        if name not in demo["env"]:
            monkeypatch.delenv(name)
    for name, value in demo["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(demo["cwd"])

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


# One command as its own process (the installed entry point finds the config by itself), the
# other ten in this process: each fresh interpreter costs a second or more of CPU.
def test_documented_commands_work_with_only_the_demo_config_dir(
    demo: dict[str, Any], bookstore: Callable[..., Result], s3: Any, s3_bucket: str
) -> None:
    config = Config({"BookstoreSettings": {"workspace_prefix": "workspace/{username}"}})
    key = BookstoreSettings(config=config).s3_key("workspace", "welcome.ipynb")
    ids = []
    for source in ("one", "two"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        body = nbformat.writes(nb).encode()
        ids.append(s3.put_object(Bucket=s3_bucket, Key=key, Body=body)["VersionId"])
    old, new = ids
    welcome = demo["notebooks"] / "welcome.ipynb"

    versions = bookstore_process(demo, "versions", "welcome.ipynb")
    assert versions.returncode == 0, versions.stderr
    assert f"s3://{s3_bucket}/{key}: 2 versions" in versions.stdout
    assert versions.stdout.index(new) < versions.stdout.index(old)

    show = bookstore("show", "welcome.ipynb", "--version", old)
    assert show.returncode == 0, show.stderr
    assert "one" in show.stdout

    raw = bookstore("show", "welcome.ipynb", f"--version={old}", "--raw")
    assert nbformat.reads(raw.stdout, as_version=4).cells[0].source == "one"

    between = bookstore("diff", "welcome.ipynb", old, new)
    assert between.returncode == 0, between.stderr
    assert "- one" in between.stdout
    assert "+ two" in between.stdout

    # Against the local file: the root dir comes from c.ServerApp.root_dir in the config.
    local = bookstore("diff", "welcome.ipynb", old)
    assert local.returncode == 0, local.stderr
    assert f"+++ local file {welcome}" in local.stdout

    restore = bookstore("restore", "welcome.ipynb", "--version", old)
    assert restore.returncode == 0, restore.stderr
    assert nbformat.read(welcome, as_version=4).cells[0].source == "one"
    listed = bookstore("versions", "welcome.ipynb", "--limit=1")
    assert f"restored from {old}" in listed.stdout
    assert "1 of 3 versions shown" in listed.stdout

    publish = bookstore("publish", "welcome.ipynb")
    assert publish.returncode == 0, publish.stderr
    published_key = BookstoreSettings(
        config=Config({"BookstoreSettings": {"published_prefix": "published/{username}"}})
    ).s3_key("published", "welcome.ipynb")
    assert f"s3://{s3_bucket}/{published_key}" in publish.stdout

    clone = bookstore("clone", published_key, "--to", "copy.ipynb")
    assert clone.returncode == 0, clone.stderr
    assert nbformat.read(demo["notebooks"] / "copy.ipynb", as_version=4).cells[0].source == "one"

    doctor = bookstore("doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"{demo['spool']} " in doctor.stdout
    assert str(demo["home"] / "jupyter" / "config" / "jupyter_server_config.py") in doctor.stdout
    assert "All good." in doctor.stdout


def test_help_opens_with_a_description_and_each_subcommand_has_an_example(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("bookstore: ")
    assert "entry point" not in first
    for name in ("versions", "show", "diff", "restore", "publish", "clone", "doctor"):
        assert main([name, "--help"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == "Usage:"
        assert lines[1].strip().startswith(f"bookstore {name}")
        examples = [line.strip() for line in lines[lines.index("Examples:") + 1 :]]
        assert any(e.split()[:2] == ["bookstore", name] for e in examples[:3])
