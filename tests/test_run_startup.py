"""What ``bookstore run`` does not do: load the server stack, or hand papermill a copy.

Its speed against papermill alone is measured in bench/bench_run.py; these tests pin the
behaviour behind it.
"""

from __future__ import annotations

import gc
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from run_helpers import outputs_text, param_notebook, publish, run_versions

import bookstore.cli
from bookstore.cli import main
from bookstore.cli.app import SUBCOMMANDS

#: Modules of the Jupyter server side, which the command line's run path never needs.
SERVER_MODULES = (
    "tornado.web",
    "jupyter_server",
    "bookstore.extension",
    "bookstore.handlers",
    "bookstore.cli.prune",
    "bookstore.prune",
    # and the other subcommands' modules
    "bookstore.cli.doctor",
    "bookstore.cli.history",
    "bookstore.cli.sharing",
    "bookstore.cli.published",
)


def test_the_run_path_does_not_import_the_server_stack() -> None:
    code = (
        "import json, sys\n"
        "from bookstore.cli import RunCommand, main\n"
        "from bookstore.runs import Runner\n"
        "assert main(['run', '--help']) == 0\n"
        f"print(json.dumps([m for m in {list(SERVER_MODULES)!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_each_subcommands_help_line_is_its_classs_docstring() -> None:
    """The subcommands are imported when used; the one-line help ``bookstore --help`` shows
    without importing them must stay the first line of each class's docstring."""
    for name, (target, help_line) in SUBCOMMANDS.items():
        module, _, cls_name = target.rpartition(".")
        cls = getattr(importlib.import_module(module), cls_name)
        assert (cls.__doc__ or "").strip().splitlines()[0] == help_line, name
        assert getattr(bookstore.cli, cls_name, cls) is cls


def test_the_command_line_loads_nbformat_only_to_read_a_notebook() -> None:
    """Importing nbformat loads jsonschema's format checkers (seconds of start-up, every
    time): ``bookstore versions``, ``pin``, ``prune`` and the others never need it."""
    code = (
        "import json, sys\n"
        "import bookstore.cli, bookstore.cli.app, bookstore.history, bookstore.services\n"
        "print(json.dumps([m for m in ('nbformat', 'jsonschema') if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_command_freezes_the_heap_before_its_process_exits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As the command (no argv: its process exits next), the final garbage collections are
    spared; called with arguments from other code (as here), the caller's heap is left alone."""
    assert gc.get_freeze_count() == 0
    assert main(["--version"]) == 0
    assert gc.get_freeze_count() == 0
    monkeypatch.setattr(sys, "argv", ["bookstore", "--version"])
    try:
        assert main() == 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert capsys.readouterr().out.strip()


@pytest.fixture
def env(bookstore_cli_env: dict[str, str]) -> Path:
    """The command line's configuration from the environment; returns the runs' local dir."""
    return Path(bookstore_cli_env["JUPYTER_DATA_DIR"]) / "bookstore" / "runs"


def test_the_output_names_its_s3_source_and_keeps_no_copy_of_it(
    env: Path, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = param_notebook("print('sum', x + 1)")
    publish(s3, s3_bucket, "lean/report.ipynb", source)

    code = main(["run", "lean/report.ipynb", "-p", "x", "41", "--json"])

    out = capsys.readouterr()
    assert code == 0, out.err
    [run] = run_versions(s3, s3_bucket, "lean/report.ipynb")
    assert "sum 42" in outputs_text(run["nb"])
    papermill = run["nb"]["metadata"]["papermill"]
    # The source's S3 key, not the source notebook itself nor a local file.
    assert papermill["input_path"] == f"s3://{s3_bucket}/published/lean/report.ipynb"
    assert papermill["parameters"] == {"x": 41}
    assert json.loads(out.out)["source"]["key"] == "published/lean/report.ipynb"
    # Nothing left behind locally once the output is archived.
    assert sorted(p.name for p in env.iterdir()) == []
