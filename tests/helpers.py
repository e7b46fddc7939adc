"""Small helpers shared by the tests (not fixtures: those are in conftest.py and
:mod:`bookstore.pytest_plugin`)."""

from __future__ import annotations

import json
from typing import Any

import nbformat

from bookstore.pytest_plugin import async_wait_until, server_config, wait_until

__all__ = [
    "async_wait_until",
    "drain",
    "first_source",
    "get_status",
    "list_versions",
    "notebook",
    "put_notebook",
    "save_nb",
    "server_config",
    "wait_archived",
    "wait_until",
]


def notebook(source: str = "print('hello')", n_cells: int = 1) -> dict[str, Any]:
    """A valid nbformat v4 notebook as a JSON-ready dict."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"{source}  # {i}") for i in range(n_cells)]
    as_json: dict[str, Any] = json.loads(nbformat.writes(nb))
    return as_json


def list_versions(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    """All versions of exactly ``key``, newest first, via boto3 (for assertions)."""
    out: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        out.extend(v for v in page.get("Versions", []) if v["Key"] == key)
    out.sort(key=lambda v: v["LastModified"], reverse=True)
    return out


def first_source(nb: bytes | str | dict[str, Any]) -> str:
    """The source of a notebook's first cell.

    ``nb`` is the notebook file's bytes (as in S3 or on disk), a notebook dict, or a contents
    model (its ``content``). On disk, nbformat stores a source as a list of lines.
    """
    model: dict[str, Any] = json.loads(nb) if isinstance(nb, (bytes, str)) else nb
    assert isinstance(model, dict)
    if "cells" not in model and isinstance(model.get("content"), dict):
        model = model["content"]
    source = model["cells"][0]["source"]
    return "".join(source) if isinstance(source, list) else str(source)


async def put_notebook(
    jp_fetch: Any, path: str, source: str, n_cells: int = 1
) -> tuple[int, dict[str, Any]]:
    """PUT a notebook through the contents API; (HTTP status, answer) whatever the status."""
    body = json.dumps({"type": "notebook", "content": notebook(source, n_cells)})
    r = await jp_fetch("api", "contents", path, method="PUT", body=body, raise_error=False)
    return r.code, json.loads(r.body)


async def save_nb(jp_fetch: Any, path: str, source: str, n_cells: int = 1) -> dict[str, Any]:
    """Save a notebook through the contents API; return the saved model."""
    code, model = await put_notebook(jp_fetch, path, source, n_cells)
    assert code in (200, 201), model
    return model


async def drain(ext: Any, timeout: float = 60) -> None:
    """Until the extension's archiver has uploaded every queued save."""
    assert await ext.archiver.wait_idle(timeout), ext.archiver.status()


async def get_status(jp_fetch: Any) -> dict[str, Any]:
    """The archiver's part of ``GET /api/bookstore``."""
    archive: dict[str, Any] = json.loads((await jp_fetch("api", "bookstore")).body)["archive"]
    return archive


def wait_archived(jp: Any, timeout: float = 60) -> None:
    """Until the archiver of a :class:`JupyterSubprocess` has uploaded every queued save."""
    wait_until(
        lambda: jp.request("GET", "/api/bookstore").json()["archive"]["pending"] == 0,
        timeout,
        "the archiver did not upload the saves in time",
    )
