"""Helpers for the version history tests (REST API, checkpoints, history page)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from helpers import drain, save_nb

__all__ = [
    "drain",
    "fetch_error",
    "first_source_on_disk",
    "get_json",
    "query",
    "save_nb",
    "save_versions",
    "sources_of",
]


async def save_versions(ext: Any, jp_fetch: Any, path: str, sources: list[str]) -> None:
    """Save ``path`` once per source, then wait until every save is in S3."""
    for source in sources:
        await save_nb(jp_fetch, path, source)
    await drain(ext)


async def get_json(jp_fetch: Any, *parts: str, **params: Any) -> Any:
    r = await jp_fetch(*parts, params={k: v for k, v in params.items() if v is not None})
    assert r.code == 200
    return json.loads(r.body)


async def fetch_error(jp_fetch: Any, *parts: str, **kwargs: Any) -> tuple[int, str]:
    """(status, message) of a request that must fail."""
    r = await jp_fetch(*parts, raise_error=False, **kwargs)
    if r.code < 400:
        raise AssertionError(f"expected an error, got {r.code}: {r.body[:200]!r}")
    body = r.body or b"{}"
    try:
        message = json.loads(body).get("message", "")
    except ValueError:
        message = body.decode("utf-8", "replace")
    return r.code, message


def sources_of(nb: dict[str, Any]) -> list[str]:
    """The cell sources of a notebook model's content."""
    out = []
    for cell in nb["cells"]:
        src = cell["source"]
        out.append("".join(src) if isinstance(src, list) else src)
    return out


def first_source_on_disk(path: Any) -> str:
    return sources_of(json.loads(path.read_text()))[0]


def query(**params: Any) -> str:
    return urlencode({k: v for k, v in params.items() if v is not None})
