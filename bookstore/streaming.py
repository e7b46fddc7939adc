"""Writing S3 objects into the Jupyter root without holding them in memory.

Clone and restore of files other than notebooks stream the object into a hidden
temporary file in the destination folder, then move it into place with ``os.replace``
(atomic: readers see the old file or the new one). Notebooks are not streamed: they are
parsed, validated and saved through the contents manager, within ``max_read_bytes``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from .s3 import ObjectInfo, S3Store
from .threads import in_thread

#: Prefix of the temporary files a streamed write leaves in the destination folder.
TEMP_PREFIX = ".bookstore-download-"


def local_os_path(contents_manager: Any, path: str) -> str | None:
    """The file system path of Jupyter ``path``, or None when the contents manager keeps
    files elsewhere (then the object is read into memory and saved through it)."""
    get = getattr(contents_manager, "_get_os_path", None)
    if get is None:
        return None
    # Only the server calls this: the command line's import path stays free of tornado.
    from tornado import web

    try:
        return str(get(path))
    except web.HTTPError:
        return None


async def download_into_folder(
    store: S3Store,
    key: str,
    os_path: str,
    version_id: str | None = None,
    *,
    bucket: str | None = None,
) -> tuple[str, ObjectInfo]:
    """Stream an object into a temporary file next to ``os_path``; move it there with
    :func:`move_into_place` (or remove it with :func:`discard`)."""
    return await store.download_to_temp(
        key, os.path.dirname(os_path) or ".", version_id, bucket=bucket, prefix=TEMP_PREFIX
    )


def _move(tmp: str, os_path: str) -> None:
    try:
        mode = os.stat(os_path).st_mode & 0o7777  # a replaced file keeps its mode
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp, mode)
    os.replace(tmp, os_path)


async def move_into_place(tmp: str, os_path: str) -> None:
    """Atomically put the downloaded file at ``os_path`` (replacing what is there)."""
    await in_thread(_move, tmp, os_path)


async def discard(tmp: str) -> None:
    """Remove a temporary download that will not be used."""

    def remove() -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

    await in_thread(remove)
