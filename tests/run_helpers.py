"""Helpers for the command-line tests: parametrised notebooks, publishing them, running the
``bookstore`` command in-process or as a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import nbformat
import pytest
from helpers import wait_until

from bookstore.cli import main


def param_notebook(code: str, parameters: str = "x = 1") -> bytes:
    """A notebook with a cell tagged ``parameters`` and a code cell, for the python3 kernel."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(code)]
    return nbformat.writes(nb).encode("utf-8")


def publish(s3: Any, bucket: str, path: str, body: bytes, prefix: str = "published") -> str:
    """Store ``body`` as a new version of ``<prefix>/<path>``; its version id."""
    put = s3.put_object(
        Bucket=bucket,
        Key=f"{prefix}/{path}",
        Body=body,
        Metadata={"sha256": hashlib.sha256(body).hexdigest(), "user": "alice"},
    )
    return str(put["VersionId"])


def run_versions(s3: Any, bucket: str, path: str, prefix: str = "runs") -> list[dict[str, Any]]:
    """The versions of ``<prefix>/<path>`` newest first, with their metadata and notebook."""
    key = f"{prefix}/{path}"
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        for v in page.get("Versions", []):
            if v["Key"] != key:
                continue
            got = s3.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])
            body = got["Body"].read()
            out.append(
                {
                    "version_id": v["VersionId"],
                    "last_modified": v["LastModified"],
                    "metadata": got["Metadata"],
                    "body": body,
                    "nb": json.loads(body),
                }
            )
    out.sort(key=lambda v: v["last_modified"], reverse=True)
    return out


def outputs_text(nb: dict[str, Any]) -> str:
    """All stream and text/plain outputs of a notebook, joined."""
    parts = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                parts.append("".join(o["text"]) if isinstance(o["text"], list) else o["text"])
            elif "data" in o and "text/plain" in o["data"]:
                t = o["data"]["text/plain"]
                parts.append("".join(t) if isinstance(t, list) else t)
    return "".join(parts)


def cli(*argv: str, env: dict[str, str] | None = None, cwd: str | None = None, **kw: Any) -> Any:
    """Run ``bookstore`` as a subprocess; the CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, "-m", "bookstore.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=kw.pop("timeout", 180),
        check=False,
        **kw,
    )


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``bookstore`` in-process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """Run ``bookstore ... --json`` in-process; it must succeed. Its JSON answer."""
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@contextmanager
def cli_process(argv: list[str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """``bookstore`` as a subprocess (text pipes); killed on the way out if still running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bookstore.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=dict(os.environ),
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_while_running(
    proc: subprocess.Popen[str], predicate: Callable[[], Any], what: str, timeout: float = 240.0
) -> None:
    """Until ``predicate()``; fails at once, with its stderr, if ``proc`` ends first."""

    def done() -> bool:
        if proc.poll() is not None:
            stderr = proc.stderr.read() if proc.stderr is not None else ""
            raise AssertionError(f"bookstore ended ({proc.returncode}) before {what}: {stderr}")
        return bool(predicate())

    wait_until(done, timeout, f"timed out waiting for {what}")
