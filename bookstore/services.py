"""What the doors into bookstore share: the REST API, the pages, the CLI and the client.

Each operation is one function here, called by every door, so they cannot drift:

* :func:`publish_notebook`: check a notebook given as JSON, serialise it as the archive
  does, store it under the published prefix (``PUT /api/bookstore/publish``, ``bookstore
  publish``; the client calls the API);
* :func:`clone_target`: where a clone lands: the path asked for or, when a file is
  already there and ``overwrite`` is not given, the first free name ``name-1.ipynb``,
  ``name-2.ipynb``... (``POST /api/bookstore/clone``, the clone pages, ``bookstore clone``,
  ``BookstoreClient.clone``). A folder in the way is a conflict (409).

Nothing here knows about HTTP: failures are :class:`bookstore.errors.BookstoreError`.
"""

from __future__ import annotations

import itertools
import posixpath
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .errors import Conflict
from .notebooks import check_notebook, notebook_bytes
from .publisher import publish_bytes
from .threads import in_thread

if TYPE_CHECKING:
    from .s3 import S3Store
    from .settings import BookstoreSettings


def _serialise(content: Any, what: str) -> bytes:
    return notebook_bytes(check_notebook(content, what))


async def publish_notebook(
    store: S3Store,
    settings: BookstoreSettings,
    path: str,
    content: Any,
    what: str = "the published notebook",
) -> dict[str, Any]:
    """Validate ``content`` (nbformat 4 JSON), serialise it and store it at
    ``<published prefix>/<path>``; the publish API's answer (``s3_path``, ``versionID``...).

    ``path`` must be clean (:func:`bookstore.settings.clean_api_path`) and a notebook's.
    Validation runs in a thread (large notebooks take a while).
    """
    data = await in_thread(_serialise, content, what)
    return await publish_bytes(store, settings, path, data)


def free_name(name: str, attempt: int) -> str:
    """``name`` for attempt 0, then ``stem-1.ext``, ``stem-2.ext``... as Jupyter names copies
    (``ContentsManager.increment_filename`` with ``insert="-"``)."""
    if attempt == 0:
        return name
    stem, dot, ext = name.rpartition(".")
    if ext != "ipynb":
        stem, dot, ext = name.partition(".")
    return f"{stem}-{attempt}{dot}{ext}"


async def clone_target(
    target: str,
    *,
    overwrite: bool,
    file_exists: Callable[[str], Awaitable[bool]],
    dir_exists: Callable[[str], Awaitable[bool]],
) -> str:
    """Where a clone asked to land at ``target`` (a Jupyter path) is written.

    ``overwrite`` replaces a file there; otherwise the first free name is used. A folder
    at ``target`` is a :class:`Conflict`. ``file_exists`` and ``dir_exists`` ask the
    destination (the contents manager, or the local folder of the CLI).
    """
    if await dir_exists(target):
        raise Conflict(f"{target!r} is a folder in the Jupyter root")
    if overwrite:
        return target
    parent, name = posixpath.split(target)
    for attempt in itertools.count():
        candidate = posixpath.join(parent, free_name(name, attempt))
        if not await file_exists(candidate) and not await dir_exists(candidate):
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover
