"""Local files written by the commands: read within a limit, replaced atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile

from .base import CommandError


def read_local_file(path: str, max_bytes: int | None = None) -> bytes:
    """A local file's bytes; over ``max_bytes`` a CommandError naming the setting."""
    with open(path, "rb") as f:
        if max_bytes is None:
            return f.read()
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise CommandError(
            f"{path} is larger than the read limit of {max_bytes} bytes; raise "
            f"c.BookstoreSettings.max_read_bytes (--BookstoreSettings.max_read_bytes=N) to read it"
        )
    return data


def move_into_place(tmp: str, path: str) -> None:
    """Give ``tmp`` the mode ``path`` has (or a new file's), then rename it over ``path``."""
    if os.path.exists(path):
        os.chmod(tmp, os.stat(path).st_mode & 0o7777)
    else:
        os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, path)


def remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def write_local_file(path: str, data: bytes) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bookstore-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
