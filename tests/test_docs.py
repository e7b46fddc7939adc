"""The docs stay true to the code: the configuration reference and the changelog."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bookstore.cli import main
from bookstore.settings import BookstoreSettings, config_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_generated_from_the_traits() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == config_markdown(), "run `python docs/gen_config.py` and commit the result"


def test_every_option_is_in_the_reference_with_its_help() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for name, trait in BookstoreSettings.class_traits(config=True).items():
        assert f"## `{name}`" in text
        assert trait.help, f"{name} has no help text"
        assert trait.help.split(".")[0] in text


def test_client_imports_without_the_server_stack() -> None:
    """A kernel environment may lack jupyter_server and aiobotocore: the client needs neither."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        blocked = {'jupyter_server', 'aiobotocore', 'tornado', 'botocore'}\n"
        "        if name.split('.')[0] in blocked:\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from bookstore.client import BookstoreClient\n"
        "print(BookstoreClient.__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "BookstoreClient"


def test_original_import_path_still_works() -> None:
    """The original README's config line: ``from bookstore import BookstoreContentsArchiver``."""
    from bookstore import BookstoreContentsArchiver
    from bookstore.archive import BookstoreContentsArchiver as Direct

    assert BookstoreContentsArchiver is Direct


def test_the_readme_names_a_command_that_lists_every_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    readme = (ROOT / "README.md").read_text()
    assert "by `bookstore --help-all`" in readme
    assert main(["--help-all"]) == 0
    out = capsys.readouterr().out
    for name in BookstoreSettings.class_traits(config=True):
        assert f"--BookstoreSettings.{name}=" in out


def test_version_sorts_above_the_original_bookstore_and_matches_the_api_description() -> None:
    from packaging.version import Version

    import bookstore

    assert Version(bookstore.__version__) > Version("2.5.1")
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    assert spec["info"]["version"] == bookstore.__version__


def test_no_placeholder_urls() -> None:
    placeholder = "github.com/" + "bookstore/bookstore"
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        path = ROOT / name
        if path.suffix in {".md", ".toml", ".py", ".yaml", ".html", ".cfg", ".txt"}:
            assert placeholder not in path.read_text(), name


def test_lint_tools_are_pinned_once_and_pre_commit_runs_those() -> None:
    from importlib.metadata import version

    import tomllib  # Python 3.11+, which the test environment runs

    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = dict(r.split("==") for r in dev["dev"] if r.split("==")[0] in {"ruff", "mypy"})
    assert set(pins) == {"ruff", "mypy"}, "pin ruff and mypy exactly in the dev extra"
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert all(repo["repo"] == "local" for repo in config["repos"]), "no second pin in a rev"
    assert hooks["ruff"]["entry"].split()[0] == "ruff"
    assert hooks["ruff-format"]["entry"].split()[0] == "ruff"
    assert hooks["mypy"]["entry"] == "mypy"
    # The environment running the tests has the pinned versions (scripts/test.sh installs them).
    assert version("ruff") == pins["ruff"]
    assert version("mypy") == pins["mypy"]
