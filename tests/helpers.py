"""Small helpers shared by the tests (not fixtures)."""

from __future__ import annotations

import json
from typing import Any

import nbformat


def notebook(source: str = "print('hello')", n_cells: int = 1) -> dict[str, Any]:
    """A valid nbformat v4 notebook as a JSON-ready dict."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"{source}  # {i}") for i in range(n_cells)]
    return json.loads(nbformat.writes(nb))  # type: ignore[no-any-return]


def list_versions(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    """All versions of exactly ``key``, newest first, via boto3 (for assertions)."""
    out: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        out.extend(v for v in page.get("Versions", []) if v["Key"] == key)
    out.sort(key=lambda v: v["LastModified"], reverse=True)
    return out
