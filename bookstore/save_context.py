"""What a save in progress carries along: its spool stages, extra metadata, content types.

The contents manager (:mod:`bookstore.archive`) opens a save context around each save;
the methods it overrides deep inside jupyter_server's save, and bookstore's checkpoints
(:mod:`bookstore.checkpoints`), read it from here. Neither module imports the other.
"""

from __future__ import annotations

import contextlib
import contextvars
import mimetypes
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .metadata import NOTEBOOK_CONTENT_TYPE

if TYPE_CHECKING:
    from .spool import StagedSave

__all__ = [
    "NOTEBOOK_CONTENT_TYPE",
    "archive_metadata",
    "content_type",
    "current_stages",
    "extra_metadata",
    "guess_type",
    "saving",
]

# The stages of the save running in this task, so _save_notebook/_save_file can hand
# them to save() without changing their signatures.
_stages: contextvars.ContextVar[list[StagedSave] | None] = contextvars.ContextVar(
    "bookstore_staged", default=None
)
# Extra S3 metadata for the saves made in this context (e.g. "restored-from").
_extra_metadata: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "bookstore_extra_metadata", default=None
)


@contextlib.contextmanager
def saving() -> Iterator[list[StagedSave]]:
    """Open a save context: the stages made inside the block are collected in the list."""
    stages: list[StagedSave] = []
    token = _stages.set(stages)
    try:
        yield stages
    finally:
        _stages.reset(token)


def current_stages() -> list[StagedSave] | None:
    """The stages of the save running in this task, or None outside a save."""
    return _stages.get()


@contextlib.contextmanager
def archive_metadata(**meta: str) -> Iterator[None]:
    """Attach extra S3 metadata to the versions archived by saves made inside the block."""
    token = _extra_metadata.set(dict(meta))
    try:
        yield
    finally:
        _extra_metadata.reset(token)


def extra_metadata() -> dict[str, str] | None:
    """The extra metadata set by :func:`archive_metadata` around this save, if any."""
    return _extra_metadata.get()


def guess_type(path: str) -> str:
    """The content type bookstore stores a file's versions with, from its name."""
    if path.endswith(".ipynb"):
        return NOTEBOOK_CONTENT_TYPE
    return mimetypes.guess_type(os.path.basename(path))[0] or "application/octet-stream"


def content_type(model: dict[str, Any]) -> str:
    """The content type of a contents model (its ``mimetype`` if it has one)."""
    if model.get("type") == "notebook":
        return NOTEBOOK_CONTENT_TYPE
    return str(model.get("mimetype") or guess_type(model.get("path", "")))
