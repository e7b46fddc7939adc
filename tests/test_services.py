"""Each door goes through one service (:mod:`bookstore.services`): the REST API and the
command line call the same restore and run functions, so they refuse the same input with the
same message and write the same thing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from history_helpers import fetch_error
from run_helpers import cli, param_notebook, publish

from bookstore.pytest_plugin import cli_environment
from bookstore.testing import S3Server


@pytest.fixture
def cli_env(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a ``bookstore`` command on the test server's bucket (no Jupyter
    config files). The command runs as a subprocess: the test's Jupyter server holds the
    process's one traitlets application."""
    return cli_environment(s3_server, s3_bucket, tmp_path / "cli")


async def cli_error(env: dict[str, str], *argv: str) -> tuple[int, str]:
    """(exit status, message) of a ``bookstore`` command that must fail."""
    done = await asyncio.to_thread(cli, *argv, env=env)
    assert done.returncode != 0, done.stderr
    prefix = f"bookstore {argv[0]}: error: "
    assert done.stderr.startswith(prefix), done.stderr
    return done.returncode, done.stderr[len(prefix) :].strip()


def one_line(message: str) -> str:
    return " ".join(message.split())


def versions_of(s3: Any, bucket: str, key: str) -> list[str]:
    listed = s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return [v["VersionId"] for v in listed if v["Key"] == key]


async def test_a_version_that_is_not_a_notebook_is_refused_alike_by_api_page_and_cli(
    jp_fetch: Any,
    bookstore_ext: Any,
    jp_root_dir: Path,
    s3: Any,
    s3_bucket: str,
    cli_env: dict[str, str],
) -> None:
    key = bookstore_ext.bookstore_settings.s3_key("workspace", "broken.ipynb")
    version = s3.put_object(Bucket=s3_bucket, Key=key, Body=b"{not json")["VersionId"]

    status, api_message = await fetch_error(
        jp_fetch,
        "api/bookstore/versions/broken.ipynb",
        method="POST",
        body=json.dumps({"version_id": version}),
    )
    code, cli_message = await cli_error(
        cli_env, "restore", "broken.ipynb", f"--version={version}", f"--root-dir={jp_root_dir}"
    )

    assert status == 422
    assert code == 1
    assert cli_message == one_line(api_message)
    assert f"version {version} of broken.ipynb" in api_message
    assert not (jp_root_dir / "broken.ipynb").exists()  # nothing written, by either door
    assert versions_of(s3, s3_bucket, key) == [version]


@pytest.mark.parametrize(
    ("path", "body", "argv", "status"),
    [
        ("missing.ipynb", {}, [], 404),
        ("ok.ipynb", {"version_id": "nosuchversion"}, ["--version-id", "nosuchversion"], 404),
    ],
)
async def test_a_run_is_refused_alike_by_the_api_and_the_cli(
    jp_fetch: Any,
    bookstore_ext: Any,
    s3: Any,
    s3_bucket: str,
    cli_env: dict[str, str],
    tmp_path: Path,
    path: str,
    body: dict[str, Any],
    argv: list[str],
    status: int,
) -> None:
    publish(s3, s3_bucket, "ok.ipynb", param_notebook("print(x)"))

    got_status, api_message = await fetch_error(
        jp_fetch, "api/bookstore/runs", path, method="POST", body=json.dumps(body)
    )
    code, cli_message = await cli_error(
        cli_env, "run", path, "--output-dir", str(tmp_path / "out"), *argv
    )

    assert got_status == status
    assert code == 2
    assert cli_message == one_line(api_message)
    assert bookstore_ext.runs.active == {}
    assert s3.list_object_versions(Bucket=s3_bucket, Prefix="runs/").get("Versions", []) == []
