"""Opening files of the shared folder (``fs_cloning_basedir``) without ever leaving it.

Checking a path with ``realpath`` and opening it afterwards leaves a window in which a
folder can be swapped for a symlink to anywhere. Here the path is walked one part at a
time, each part opened relative to the folder opened before it with ``O_NOFOLLOW``: a
part that is a symlink is read (``readlink``) and its target walked the same way, inside
the shared folder only, so a link that stays inside still works and nothing outside can
be reached, whatever changes under the walk. ``..`` goes back to the folder opened one
step earlier (never to the filesystem's parent). This is what ``openat2`` with
``RESOLVE_BENEATH`` does in the kernel; the standard library has no binding for it.

Only regular files are opened, with ``O_NONBLOCK`` so a FIFO swapped in cannot block the
worker thread. Everything here blocks on the filesystem: run it in a thread.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque

from .errors import BookstoreError

__all__ = [
    "NotInSharedFolder",
    "OutsideSharedFolder",
    "SharedFolderError",
    "open_beneath",
    "read_beneath",
]

#: Symlinks followed in one lookup before giving up (Linux's own limit).
MAX_SYMLINKS = 40

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | _CLOEXEC


class SharedFolderError(BookstoreError):
    """A shared file that cannot be opened; ``status`` is the HTTP status to answer."""

    status = 400


class OutsideSharedFolder(SharedFolderError):
    """The path leads out of the shared folder, or to something that is not a file."""


class NotInSharedFolder(SharedFolderError):
    """There is no such file in the shared folder."""

    status = 404


def open_beneath(basedir: str, relpath: str) -> int:
    """A read-only descriptor of regular file ``relpath`` inside ``basedir``.

    Raises :class:`OutsideSharedFolder` (a path or symlink leading out, a folder, a FIFO,
    a device or a socket) or :class:`NotInSharedFolder`. The caller closes the descriptor.
    """
    base = os.path.realpath(basedir)
    # The names an absolute symlink may give the shared folder: as configured, or real.
    bases = sorted({base, os.path.abspath(basedir).rstrip("/") or "/"}, key=len, reverse=True)
    try:
        base_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    except OSError as e:
        raise NotInSharedFolder(f"the shared folder {basedir} cannot be opened: {e}") from e
    stack = [base_fd]  # the folders walked into; stack[0] is the shared folder itself
    todo = deque(relpath.split("/"))
    links = 0
    try:
        while todo:
            part = todo.popleft()
            if part in {"", "."}:
                continue
            if part == "..":
                if len(stack) == 1:
                    raise OutsideSharedFolder(f"{relpath!r} leads out of the shared folder")
                os.close(stack.pop())
                continue
            st = os.stat(part, dir_fd=stack[-1], follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise OutsideSharedFolder(f"{relpath!r}: too many levels of symbolic links")
                try:
                    target = os.readlink(part, dir_fd=stack[-1])
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise
                    # No longer a symlink (swapped back since the stat): look at it again;
                    # ``links`` bounds how often a tree changing under the walk loops here.
                    todo.appendleft(part)
                    continue
                if target.startswith("/"):
                    # Absolute: allowed only when it names a place inside the shared folder.
                    inside = next(
                        (b for b in bases if target.rstrip("/") == b or target.startswith(b + "/")),
                        None,
                    )
                    if inside is None:
                        raise OutsideSharedFolder(
                            f"{relpath!r} is a symbolic link out of the shared folder"
                        )
                    target = target[len(inside) :]
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo.extendleft(reversed(target.split("/")))
                continue
            if not todo:
                return _open_file(stack[-1], part, st, relpath)
            if not stat.S_ISDIR(st.st_mode):
                raise NotInSharedFolder(f"there is no file {relpath!r} in the shared folder")
            # ELOOP / ENOTDIR below: swapped for a symlink or a file since it was looked at.
            stack.append(os.open(part, _DIR_FLAGS, dir_fd=stack[-1]))
        raise OutsideSharedFolder(f"relpath {relpath!r} is a folder; give the path of a file")
    # Every failing system call of the walk lands here, with the tree changing under it or not.
    except FileNotFoundError as e:
        # A part vanished between two steps of the walk (the tree changes under it).
        raise NotInSharedFolder(f"there is no file {relpath!r} in the shared folder") from e
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OutsideSharedFolder(
                f"{relpath!r} became a symbolic link while it was opened; try again"
            ) from e
        raise OutsideSharedFolder(
            f"cannot open {relpath!r}: {e.strerror} (did the shared folder change?)"
        ) from e
    finally:
        for fd in stack:
            os.close(fd)


def _open_file(dir_fd: int, name: str, st: os.stat_result, relpath: str) -> int:
    if stat.S_ISDIR(st.st_mode):
        raise OutsideSharedFolder(f"relpath {relpath!r} is a folder; give the path of a file")
    if not stat.S_ISREG(st.st_mode):
        raise OutsideSharedFolder(_not_regular(relpath, st.st_mode))
    fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)  # its OSError: see open_beneath
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # swapped between the lstat and the open
        os.close(fd)
        raise OutsideSharedFolder(_not_regular(relpath, mode))
    return fd


def _not_regular(relpath: str, mode: int) -> str:
    kind = (
        "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "not a regular file"
    )
    return f"relpath {relpath!r} is {kind}; only regular files can be cloned"


def read_beneath(basedir: str, relpath: str) -> bytes:
    """The bytes of regular file ``relpath`` inside ``basedir`` (see :func:`open_beneath`)."""
    fd = open_beneath(basedir, relpath)
    with os.fdopen(fd, "rb") as f:
        return f.read()
