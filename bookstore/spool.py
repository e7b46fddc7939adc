"""The spool: bookstore's durable on-disk queue of saves waiting for their upload to S3.

A save is *staged* (its bytes written and fsynced to ``<spool>/<id>.tmp``) while the
contents manager writes the file, and *committed* (renamed to ``<id>.entry``, directory
fsynced) once that write succeeded, before the save returns. From then on the save is
safe: :mod:`bookstore.uploader` sends it to S3 and deletes the entry only once S3 has
acknowledged it. Whatever is left at start-up is settled (:meth:`Spool.open`) and uploaded
first; a clean stop flushes for up to ``flush_timeout`` seconds and leaves the rest for
next time.

This module has two layers:

- :class:`Spool`, the directory itself: blocking file operations (write, scan, recover,
  quarantine, set aside), run in a thread. :func:`scan_entries` is the one reader of a
  spool directory, for the server and for the command line.
- :class:`Archiver`, the spool's asynchronous front used by the contents manager: it
  admits saves within the spool's limits, commits them and hands them to its
  :class:`~bookstore.uploader.Uploader`.

Entry file format: one line of JSON (the :class:`SpoolEntry` fields), ``\\n``, the bytes.

Limits (see docs/limits.md):

- One server per spool: the directory is locked (``fcntl.flock`` on ``<spool>/.lock``). A
  second server on the same machine takes the first free sibling, ``<spool>-2`` ...
  ``<spool>-16``; a server that starts adopts what unlocked siblings hold (their server is
  gone: the kernel released its lock when it died).
- The spool is bounded by ``max_spool_bytes`` and ``min_free_disk_bytes``: once either is
  reached, only the oldest and the newest waiting save of each path are kept; those in
  between are dropped (counted, persisted in ``stats.json``, and reported in the next
  version's ``dropped-saves`` metadata). A save's disk write never depends on the spool.
- A save S3 can never accept (key over 1,024 bytes, metadata over 2 KB, body over 5 GB,
  a 4xx that is not throttling or a timeout) is moved to ``<spool>/set-aside/`` with a
  ``.json`` saying why, instead of being retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from anyio.to_thread import run_sync as run_in_worker

from .metadata import NOTEBOOK_CONTENT_TYPE
from .s3 import (
    META_DROPPED_SAVES,
    META_PATH,
    META_SAVE_ID,
    META_SAVED_AT,
    META_SHA256,
    META_USER,
    S3BadRequest,
    S3Error,
    check_upload,
)
from .times import utcnow_iso
from .uploader import Uploader, run_sync

if TYPE_CHECKING:
    from logging import Logger

    from .s3 import S3Store
    from .settings import BookstoreSettings

ENTRY_SUFFIX = ".entry"
TMP_SUFFIX = ".tmp"
#: ``<save id>.dropped`` holds how many saves before this entry were dropped (see limits).
DROPPED_SUFFIX = ".dropped"
CORRUPT_DIR = "corrupt"
SET_ASIDE_DIR = "set-aside"
LOCK_FILE = ".lock"
STATS_FILE = "stats.json"
#: How many spools (``<spool>``, ``<spool>-2`` ...) servers sharing a spool_dir may use.
MAX_SPOOLS = 16
#: Threads that write spool stages beside the saves' own disk writes (one per concurrent save).
HELPER_THREADS = 8
#: How many set-aside saves the status lists (all are counted).
SET_ASIDE_LISTED = 20

_id_lock = threading.Lock()
_last_ns = 0


def new_save_id() -> str:
    """A unique id whose lexical order is the order saves were made in (this process)."""
    global _last_ns
    with _id_lock:
        ns = max(time.time_ns(), _last_ns + 1)
        _last_ns = ns
    return f"{ns:020d}-{secrets.token_hex(3)}"


@dataclass
class SpoolEntry:
    """One save waiting for upload."""

    save_id: str
    bucket: str
    key: str
    path: str
    user: str
    saved_at: str
    sha256: str
    size: int
    content_type: str = NOTEBOOK_CONTENT_TYPE
    extra: dict[str, str] = field(default_factory=dict)
    # Set for entries found at start-up or after a failed attempt: their upload may
    # already have reached S3, so the uploader checks the newest version's save id first.
    recovered: bool = False
    # Saves of this path made before this one and dropped from the spool (limits).
    dropped: int = 0

    def metadata(self) -> dict[str, str]:
        meta = {
            META_SHA256: self.sha256,
            META_SAVED_AT: self.saved_at,
            META_USER: self.user,
            META_PATH: self.path,
            META_SAVE_ID: self.save_id,
        }
        meta.update(self.extra)
        if self.dropped:
            meta[META_DROPPED_SAVES] = str(self.dropped)
        return meta

    def header(self) -> bytes:
        """The entry file's first line: every field but ``recovered``, as JSON.

        Built by hand: ``dataclasses.asdict`` copies recursively and took 47 µs of the
        save path, twice per save.
        """
        d = {
            "save_id": self.save_id,
            "bucket": self.bucket,
            "key": self.key,
            "path": self.path,
            "user": self.user,
            "saved_at": self.saved_at,
            "sha256": self.sha256,
            "size": self.size,
            "content_type": self.content_type,
            "extra": dict(self.extra),
            "dropped": self.dropped,
        }
        return json.dumps(d, separators=(",", ":")).encode("utf-8") + b"\n"


@dataclass
class StagedSave:
    """A save whose bytes are in the spool but not yet committed.

    ``tmp_path`` is None when no copy was kept: the save was dropped (spool limits) or is
    set aside without its bytes. ``rejection`` says why S3 could never accept it.
    """

    entry: SpoolEntry
    tmp_path: str | None
    dropped: bool = False
    rejection: S3BadRequest | None = None
    #: Already part of the queue (:meth:`Archiver.write_and_commit`): nothing left to do.
    committed: bool = False
    #: Identical to ``entry``, queued or uploaded before: this save was not staged.
    duplicate: bool = False


def spool_candidates(base: str) -> list[str]:
    """The spool directories servers configured with ``base`` may use, in order."""
    base = base.rstrip(os.sep) or base
    return [base] + [f"{base}-{i}" for i in range(2, MAX_SPOOLS + 1)]


def read_lock_owner(directory: str) -> dict[str, Any] | None:
    """Who holds (or last held) a spool's lock: pid, host, since; None if nobody wrote it."""
    try:
        with open(os.path.join(directory, LOCK_FILE), encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    try:
        owner = json.loads(text) if text.strip() else None
    except ValueError:
        return None
    return owner if isinstance(owner, dict) else None


def read_stats(directory: str) -> dict[str, Any]:
    try:
        with open(os.path.join(directory, STATS_FILE), encoding="utf-8") as f:
            stats = json.load(f)
    except (OSError, ValueError):
        return {}
    return stats if isinstance(stats, dict) else {}


def list_set_aside(directory: str) -> list[dict[str, Any]]:
    """The set-aside saves of a spool (what each ``.json`` says), oldest first."""
    aside = os.path.join(directory, SET_ASIDE_DIR)
    try:
        names = sorted(n for n in os.listdir(aside) if n.endswith(".json"))
    except OSError:
        return []
    found = []
    for name in names:
        try:
            with open(os.path.join(aside, name), encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(info, dict):
            found.append(info)
    return found


def scan_entries(directory: str) -> Iterator[tuple[str, SpoolEntry | Exception]]:
    """The committed entries of a spool directory in save order: ``(file, header or error)``.

    The one reader of a spool's entries: the server at start-up (which quarantines the
    unreadable ones), ``bookstore doctor`` and the history of pending saves. Blocking; a
    missing directory has no entries.
    """
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        if not name.endswith(ENTRY_SUFFIX):
            continue
        full = os.path.join(directory, name)
        try:
            yield full, Spool.read_header(full)
        except (OSError, ValueError, TypeError) as e:
            yield full, e


class Spool:
    """A directory of fsynced save entries; file names sort in save order."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._lock_fd: int | None = None
        # Group commit of the directory fsync: one fsync covers every rename made before
        # it started (tickets: requested, done).
        self._sync_cond = threading.Condition()
        self._sync_requested = 0
        self._sync_done = 0
        self._syncing = False

    def _path(self, save_id: str, suffix: str) -> str:
        return os.path.join(self.directory, save_id + suffix)

    def _fsync_dir(self, directory: str | None = None) -> None:
        fd = os.open(directory or self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- the lock ------------------------------------------------------------------------

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    def lock(self) -> bool:
        """Take the spool's lock, without waiting; False if another process holds it.

        ``flock`` locks belong to the open file: the kernel releases this one when the
        process exits in any way, SIGKILL included, so leftovers can be adopted.
        """
        if self._lock_fd is not None:
            return True
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": utcnow_iso()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode("utf-8") + b"\n", 0)
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # nobody holds it now
            os.close(fd)

    # --- opening -------------------------------------------------------------------------

    def open(self, root_dir: str | None = None) -> tuple[list[SpoolEntry], list[str]]:
        """Create the directory, settle stages, return (entries, problems).

        A stage (``.tmp``) is a save that never returned. Its bytes are kept when they are
        complete and are also what the file under ``root_dir`` holds now: the disk write
        happened, so the save did; otherwise the write did not complete and it is dropped.
        """
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        entries: list[SpoolEntry] = []
        problems: list[str] = []
        names = sorted(os.listdir(self.directory))
        settled = False
        for name in names:
            if name.endswith(TMP_SUFFIX):
                full = os.path.join(self.directory, name)
                if self._settle_stage(full, root_dir):
                    settled = True
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(full)
        if settled:
            self._fsync_dir()
            names = sorted(os.listdir(self.directory))
        for full, found in scan_entries(self.directory):
            if isinstance(found, Exception):
                problems.append(f"{os.path.basename(full)}: {found}")
                self._quarantine(full)
                continue
            found.recovered = True
            found.dropped = max(found.dropped, self._read_dropped(found.save_id))
            entries.append(found)
        present = set(names)
        for name in names:  # a dropped count whose entry is gone is of no use
            if (
                name.endswith(DROPPED_SUFFIX)
                and name[: -len(DROPPED_SUFFIX)] + ENTRY_SUFFIX not in present
            ):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.directory, name))
        return entries, problems

    def _settle_stage(self, full: str, root_dir: str | None) -> bool:
        """Commit a leftover stage whose bytes reached the disk file; False to drop it."""
        if not root_dir:
            return False
        try:
            with open(full, "rb") as f:
                entry = SpoolEntry(**json.loads(f.readline()))
                data = f.read()
            if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
                return False  # the stage itself was cut short
            on_disk = os.path.join(root_dir, *entry.path.split("/"))
            if os.path.getsize(on_disk) != entry.size:
                return False
            with open(on_disk, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() != entry.sha256:
                    return False
            os.replace(full, self._path(entry.save_id, ENTRY_SUFFIX))
        except (OSError, ValueError, TypeError):
            return False
        return True

    def _read_dropped(self, save_id: str) -> int:
        try:
            with open(self._path(save_id, DROPPED_SUFFIX), encoding="ascii") as f:
                return max(0, int(f.read().strip() or 0))
        except (OSError, ValueError):
            return 0

    def write_dropped(self, entry: SpoolEntry) -> None:
        """Persist an entry's dropped count next to it (blocking)."""
        final = self._path(entry.save_id, DROPPED_SUFFIX)
        tmp = final + ".new"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(str(entry.dropped))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)

    def adopt(self, other: Spool, root_dir: str | None) -> list[SpoolEntry]:
        """Move what an abandoned spool (``other``, locked by us) holds into this one."""
        entries, _problems = other.open(root_dir)
        moved = []
        for entry in entries:
            for suffix in (DROPPED_SUFFIX, ENTRY_SUFFIX):  # the entry last: it counts
                src = other._path(entry.save_id, suffix)
                if os.path.exists(src):
                    shutil.move(src, self._path(entry.save_id, suffix))
            moved.append(entry)
        for sub in (SET_ASIDE_DIR, CORRUPT_DIR):
            src_dir = os.path.join(other.directory, sub)
            if os.path.isdir(src_dir):
                os.makedirs(os.path.join(self.directory, sub), exist_ok=True)
                for name in os.listdir(src_dir):
                    shutil.move(os.path.join(src_dir, name), os.path.join(self.directory, sub))
        for info in list_set_aside(self.directory):  # say where the moved bytes are now
            kept_at = info.get("kept_at")
            if kept_at and os.path.dirname(kept_at) == os.path.join(other.directory, SET_ASIDE_DIR):
                info["kept_at"] = os.path.join(
                    self.directory, SET_ASIDE_DIR, os.path.basename(kept_at)
                )
                final = os.path.join(self.directory, SET_ASIDE_DIR, f"{info['save_id']}.json")
                with open(final + ".new", "w", encoding="utf-8") as f:
                    json.dump(info, f)
                os.replace(final + ".new", final)
        if moved:
            self._fsync_dir()
        stats = read_stats(other.directory)
        if stats.get("dropped_saves"):
            mine = read_stats(self.directory)
            mine["dropped_saves"] = int(mine.get("dropped_saves", 0)) + int(stats["dropped_saves"])
            mine.setdefault("last_dropped", stats.get("last_dropped"))
            self.write_stats(mine)
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(other.directory, STATS_FILE))
        return moved

    def write_stats(self, stats: dict[str, Any]) -> None:
        final = os.path.join(self.directory, STATS_FILE)
        tmp = final + ".new"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(stats, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)

    def _quarantine(self, full: str) -> None:
        corrupt = os.path.join(self.directory, CORRUPT_DIR)
        os.makedirs(corrupt, exist_ok=True)
        with contextlib.suppress(OSError):
            os.replace(full, os.path.join(corrupt, os.path.basename(full)))

    @staticmethod
    def read_header(full: str) -> SpoolEntry:
        with open(full, "rb") as f:
            line = f.readline()
        d = json.loads(line)
        if not isinstance(d, dict):
            raise ValueError("header is not a JSON object")
        return SpoolEntry(**d)

    def free_bytes(self) -> int:
        """Bytes available to us on the spool's file system."""
        st = os.statvfs(self.directory)
        return st.f_bavail * st.f_frsize

    def stage(self, entry: SpoolEntry, data: bytes) -> StagedSave:
        """Write and fsync an uncommitted entry (blocking: run it in a thread)."""
        tmp = self._path(entry.save_id, TMP_SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(entry.header())
                f.write(data)
                f.flush()
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        return StagedSave(entry, tmp)

    def rename_written(self, staged: StagedSave) -> tuple[StagedSave | None, Exception | None]:
        """Make a stage whose file write succeeded an entry; answers it, or None and the error.

        The directory fsync that makes the rename durable is left to the caller
        (:meth:`sync_dir`, grouped with other saves').
        """
        try:
            self.rename_staged(staged)
        except OSError as e:
            self.discard(staged)
            return None, e
        staged.committed = True
        return staged, None

    def commit(self, staged: StagedSave) -> None:
        """Make a staged entry part of the queue, durably (blocking)."""
        self.rename_staged(staged)
        self.sync_dir()

    def rename_staged(self, staged: StagedSave) -> None:
        """Make a staged entry part of the queue; durable once :meth:`sync_dir` returns.

        Until then a crash may leave it a stage, which :meth:`open` commits when the file
        on disk holds its bytes: the contents manager keeps the file unchanged until then.
        """
        assert staged.tmp_path is not None
        os.replace(staged.tmp_path, self._path(staged.entry.save_id, ENTRY_SUFFIX))
        staged.tmp_path = self._path(staged.entry.save_id, ENTRY_SUFFIX)

    def sync_dir(self) -> None:
        """Fsync the spool directory: the renames made before this call are durable.

        Group commit: concurrent callers share one fsync. A caller that arrives while an
        fsync runs waits for it and, if its own rename came too late for it, for the next
        one, which one of the waiting callers makes for all of them.
        """
        with self._sync_cond:
            self._sync_requested += 1
            ticket = self._sync_requested
            while self._sync_done < ticket:
                if not self._syncing:
                    self._syncing = True
                    target = self._sync_requested
                    break
                self._sync_cond.wait()
            else:
                return
        synced = False
        try:
            self._fsync_dir()
            synced = True
        finally:
            with self._sync_cond:
                self._syncing = False
                if synced:
                    self._sync_done = max(self._sync_done, target)
                self._sync_cond.notify_all()

    def discard(self, staged: StagedSave) -> None:
        if staged.tmp_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(staged.tmp_path)

    def read_data(self, entry: SpoolEntry) -> bytes:
        with open(self._path(entry.save_id, ENTRY_SUFFIX), "rb") as f:
            f.readline()
            data = f.read()
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ValueError(
                f"spool entry {entry.save_id} is damaged (size or sha256 do not match its header)"
            )
        return data

    def open_data(self, entry: SpoolEntry) -> BinaryIO:
        """The entry's file, open at its first byte of data (blocking; the caller closes it)."""
        f = open(self._path(entry.save_id, ENTRY_SUFFIX), "rb")  # noqa: SIM115
        try:
            f.readline()
        except BaseException:
            f.close()
            raise
        return f

    def entry_path(self, entry: SpoolEntry) -> str:
        return self._path(entry.save_id, ENTRY_SUFFIX)

    def remove(self, entry: SpoolEntry) -> None:
        for suffix in (ENTRY_SUFFIX, DROPPED_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(entry.save_id, suffix))

    def quarantine(self, entry: SpoolEntry) -> None:
        self._quarantine(self._path(entry.save_id, ENTRY_SUFFIX))

    def set_aside(
        self, entry: SpoolEntry, source: str | None, reason: str, code: str | None
    ) -> dict[str, Any]:
        """Move a save S3 will never accept to ``set-aside/``, with a ``.json`` saying why.

        ``source`` is the file holding its bytes (an entry or a stage), or None when no
        copy was kept. Only the newest set-aside save of each path is kept: the older
        ones' bytes are replaced (the file on disk is newer than any of them anyway).
        """
        aside = os.path.join(self.directory, SET_ASIDE_DIR)
        os.makedirs(aside, mode=0o700, exist_ok=True)
        for old in list_set_aside(self.directory):
            if old.get("key") == entry.key and old.get("bucket") == entry.bucket:
                for suffix in (ENTRY_SUFFIX, ".json"):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(aside, str(old.get("save_id")) + suffix))
        kept_at = None
        if source is not None:
            kept_at = os.path.join(aside, entry.save_id + ENTRY_SUFFIX)
            os.replace(source, kept_at)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(entry.save_id, DROPPED_SUFFIX))
        info = {
            "save_id": entry.save_id,
            "path": entry.path,
            "bucket": entry.bucket,
            "key": entry.key,
            "saved_at": entry.saved_at,
            "size": entry.size,
            "reason": reason,
            "code": code,
            "kept_at": kept_at,
            "set_aside_at": utcnow_iso(),
        }
        final = os.path.join(aside, entry.save_id + ".json")
        with open(final + ".new", "w", encoding="utf-8") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(final + ".new", final)
        self._fsync_dir(aside)
        return info

    def entry_bytes(self) -> dict[str, int]:
        """Size on disk of each queued entry and stage, by save id (blocking)."""
        sizes: dict[str, int] = {}
        for name in os.listdir(self.directory):
            for suffix in (ENTRY_SUFFIX, TMP_SUFFIX):
                if name.endswith(suffix):
                    with contextlib.suppress(OSError):
                        size = os.path.getsize(os.path.join(self.directory, name))
                        sizes[name[: -len(suffix)]] = size
        return sizes


class SizeLedger:
    """Bytes queued in the spool, by save id, with their running total.

    The total is read twice on every save; during a long outage thousands of saves wait,
    so it is kept up to date rather than summed each time.
    """

    def __init__(self, sizes: dict[str, int] | None = None) -> None:
        self._sizes: dict[str, int] = dict(sizes or {})
        self.total = sum(self._sizes.values())

    def __setitem__(self, save_id: str, size: int) -> None:
        self.total += size - self._sizes.get(save_id, 0)
        self._sizes[save_id] = size

    def get(self, save_id: str, default: int = 0) -> int:
        return self._sizes.get(save_id, default)

    def pop(self, save_id: str, default: int | None = None) -> int | None:
        size = self._sizes.pop(save_id, None)
        if size is None:
            return default
        self.total -= size
        return size

    def __len__(self) -> int:
        return len(self._sizes)


class Archiver:
    """The spool's front: admits saves within its limits, commits them, runs the uploader.

    The contents manager stages each save while it writes the file (:meth:`stage`) and
    commits it once the write succeeded (:meth:`commit`); committed saves go to
    :attr:`uploader`. Every task is tracked and stopped by :meth:`stop`.
    """

    def __init__(self, settings: BookstoreSettings, store: S3Store, log: Logger) -> None:
        self.settings = settings
        self.store = store
        self.log = log
        self.spool = Spool(settings.spool_dir)
        #: Drains the spool to S3 (its ``sleep`` and ``jitter`` are the tests' seams).
        self.uploader = Uploader(settings, store, log, now=utcnow_iso)
        self.uploader.on_rejected = self._set_aside
        self.uploader.on_done = self._uploaded_one
        self.uploader.on_idle = self._drained
        self._started = False
        # Background directory fsyncs of committed saves, by path (see commit()).
        self._syncs: dict[str, asyncio.Future[None]] = {}
        self._sync_tasks: set[asyncio.Future[None]] = set()
        self._helper: ThreadPoolExecutor | None = None
        self._start_lock: asyncio.Lock | None = None
        self._stopping = False
        self.spool_problems: list[str] = []
        self.skipped_identical = 0
        #: The contents root, to tell at start-up whether a leftover stage reached disk.
        self.root_dir: str | None = None
        # Spool limits: bytes queued (entries and stages, by save id), dropped saves.
        self._sizes = SizeLedger()
        self._carry: dict[tuple[str, str], int] = {}
        self._limit_logged = False
        self.stats: dict[str, Any] = {}
        self.set_aside: list[dict[str, Any]] = []
        self.corrupt_entries = 0

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Lock a spool, adopt what gone servers left, queue the leftovers (idempotent)."""
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            if not self.spool.locked:
                self.spool = await run_sync(self._claim_spool)
            try:
                adopted = await run_sync(self._adopt_abandoned)
                entries, problems = await run_sync(self.spool.open, self.root_dir)
                self._sizes = SizeLedger(await run_sync(self.spool.entry_bytes))
                self.stats = await run_sync(read_stats, self.spool.directory)
                self.set_aside = await run_sync(list_set_aside, self.spool.directory)
                self.corrupt_entries = await run_sync(self._count_corrupt)
            except BaseException:
                self.spool.unlock()
                raise
            self.spool_problems = problems
            for problem in problems:
                self.log.error(
                    "bookstore: unreadable spool entry moved to %s: %s",
                    os.path.join(self.spool.directory, CORRUPT_DIR),
                    problem,
                )
            if entries:
                self.log.info(
                    "bookstore: uploading %d save(s) left in the spool %s",
                    len(entries),
                    self.spool.directory,
                )
            self._started = True
            self._stopping = False
            seen: set[tuple[str, str]] = set()
            for entry in entries:
                # Only the oldest leftover of a key can have reached S3 before the crash;
                # saves adopted from another spool may interleave with ours: check them all.
                entry.recovered = (entry.bucket, entry.key) not in seen or (
                    entry.save_id in adopted
                )
                seen.add((entry.bucket, entry.key))
            self.uploader.start(self.spool, entries)

    def _claim_spool(self) -> Spool:
        """Lock the configured spool, or the first free sibling if a server holds it."""
        candidates = spool_candidates(self.settings.spool_dir)
        for directory in candidates:
            spool = Spool(directory)
            if spool.lock():
                if directory != candidates[0]:
                    owner = read_lock_owner(candidates[0]) or {}
                    self.log.warning(
                        "bookstore: the spool %s is in use by another server (pid %s on %s); "
                        "this server uses %s",
                        candidates[0],
                        owner.get("pid", "?"),
                        owner.get("host", "?"),
                        directory,
                    )
                return spool
        raise OSError(
            f"all {len(candidates)} spools {candidates[0]}, {candidates[1]} ... "
            f"{candidates[-1]} are locked by running servers: give this server its own "
            f"c.BookstoreSettings.spool_dir"
        )

    def _adopt_abandoned(self) -> set[str]:
        """Move the saves of sibling spools whose server is gone into ours (blocking)."""
        adopted: set[str] = set()
        for directory in spool_candidates(self.settings.spool_dir):
            if directory == self.spool.directory or not os.path.isdir(directory):
                continue
            other = Spool(directory)
            try:
                if not other.lock():
                    continue  # its server is alive
            except OSError:
                continue
            try:
                moved = self.spool.adopt(other, self.root_dir)
            finally:
                other.unlock()
            if moved:
                self.log.info(
                    "bookstore: adopted %d save(s) left in %s by a server that is gone",
                    len(moved),
                    directory,
                )
            adopted.update(e.save_id for e in moved)
        return adopted

    def _count_corrupt(self) -> int:
        corrupt = os.path.join(self.spool.directory, CORRUPT_DIR)
        return len(os.listdir(corrupt)) if os.path.isdir(corrupt) else 0

    async def stop(self, flush_timeout: float | None = None) -> None:
        """Flush the queue for up to ``flush_timeout`` seconds, then cancel what is left."""
        if not self._started:
            return
        timeout = self.settings.flush_timeout if flush_timeout is None else flush_timeout
        self._stopping = True
        if self._sync_tasks:
            await asyncio.gather(*self._sync_tasks, return_exceptions=True)
        await self.uploader.stop(timeout)
        if self._helper is not None:
            self._helper.shutdown(wait=False)
            self._helper = None
        if self.pending:
            self.log.warning(
                "bookstore: %d save(s) not uploaded yet; they stay in %s and are uploaded at "
                "the next start",
                self.pending,
                self.spool.directory,
            )
        self._started = False
        self.spool.unlock()

    async def wait_idle(self, seconds: float | None = None) -> bool:
        """Wait until nothing is queued; False if still busy after ``seconds`` (for tests)."""
        if not self._started:
            return self.pending == 0
        return await self.uploader.wait_idle(seconds)

    # --- the save path ---------------------------------------------------------------

    def make_entry(
        self,
        path: str,
        data: bytes,
        *,
        content_type: str = NOTEBOOK_CONTENT_TYPE,
        extra: dict[str, str] | None = None,
        save_id: str | None = None,
    ) -> SpoolEntry:
        return SpoolEntry(
            save_id=save_id or new_save_id(),
            bucket=self.settings.s3_bucket,
            key=self.settings.s3_key("workspace", path),
            path=path,
            user=self.settings.username,
            saved_at=utcnow_iso(),
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            content_type=content_type,
            extra=dict(extra or {}),
        )

    async def stage(
        self,
        path: str,
        data: bytes,
        *,
        content_type: str = NOTEBOOK_CONTENT_TYPE,
        extra: dict[str, str] | None = None,
    ) -> StagedSave:
        """Write a save's bytes durably, uncommitted (call :meth:`commit` once saved).

        Within the spool's limits; beyond them the save is dropped from the archive (see
        :meth:`_make_room`). A save S3 could never accept is staged to be set aside.
        """
        await self.start()
        check_disk = self.settings.min_free_disk_bytes > 0
        limit = self.settings.max_spool_bytes
        used = self.spool_bytes
        key = self.settings.s3_key("workspace", path)
        carried = self._carry.get((self.settings.s3_bucket, key), 0)

        def prepare() -> tuple[StagedSave, int, int]:
            # One trip to a thread in the common case: hash (about 1 ms per MB), measure
            # the free space and, if the save fits, write it.
            entry = self.make_entry(path, data, content_type=content_type, extra=extra)
            free = self.spool.free_bytes() if check_disk else 0
            try:
                check_upload(entry.key, entry.size, entry.metadata())
            except S3BadRequest as e:
                need = entry.size + len(entry.header())
                if check_disk and free - need < self.settings.min_free_disk_bytes:
                    return StagedSave(entry, None, rejection=e), free, need
                staged = self.spool.stage(entry, data)
                staged.rejection = e
                return staged, free, need
            entry.dropped = carried
            need = entry.size + len(entry.header()) + 16
            within = not (limit and used + need > limit) and not (
                check_disk and free - need < self.settings.min_free_disk_bytes
            )
            if within:
                return self.spool.stage(entry, data), free, need
            return StagedSave(entry, None), free, need

        staged, free, need = await run_sync(prepare)
        entry = staged.entry
        if staged.rejection is not None:
            return staged  # set aside at commit, not counted in max_spool_bytes
        k = (entry.bucket, entry.key)
        self._carry.pop(k, None)
        if staged.tmp_path is not None:
            # Written; concurrent saves may have filled the spool meanwhile: check again.
            free -= need
            if await self._make_room(entry, 0, free, extra_used=need):
                self._sizes[entry.save_id] = need
                return staged
            await run_sync(self.spool.discard, staged)
        elif await self._make_room(entry, need, free):
            self._sizes[entry.save_id] = need
            try:
                return await run_sync(self.spool.stage, entry, data)
            except BaseException:
                self._sizes.pop(entry.save_id, None)
                raise
        self._carry[k] = entry.dropped + 1
        self._count_dropped(entry, 1)
        await run_sync(self.spool.write_stats, self.stats)
        return StagedSave(entry, None, dropped=True)

    async def write_and_commit(
        self,
        path: str,
        produce: Callable[[], bytes],
        write: Callable[[bytes], None],
        *,
        content_type: str = NOTEBOOK_CONTENT_TYPE,
        extra: dict[str, str] | None = None,
    ) -> tuple[StagedSave | None, BaseException | None]:
        """A save's whole trip off the event loop, in one worker call; raises ``write``'s error.

        The worker makes the bytes (``produce()``: serialising the notebook) and writes the
        file (``write(data)``); beside it, on a helper thread, the bytes are hashed, checked
        against the spool's limits and written to the spool's stage. Once both are written
        and fsynced the worker renames the stage to an entry. Back on
        the loop the entry is queued for upload and the directory fsync that makes the
        rename durable runs in the background, grouped with other saves' (as
        :meth:`commit` with ``file_unchanged_until_synced``): the caller keeps the file
        unchanged until :meth:`durable` says so. An identical save (:meth:`identical_to`)
        writes no stage. The rare cases take more trips: a save over the spool's limits
        (room is made, then it is staged) and one S3 could never accept (staged, to be
        set aside by :meth:`commit`).

        Answers the save's stage (``committed`` in the common case; None when no archive
        copy was made) and the error that kept it out of the spool, if any.
        """
        try:
            await self.start()
        except Exception as e:  # no spool: the save itself goes on
            await run_in_worker(lambda: write(produce()))
            return None, e
        check_disk = self.settings.min_free_disk_bytes > 0
        limit = self.settings.max_spool_bytes
        min_free = self.settings.min_free_disk_bytes
        used = self.spool_bytes
        key = self.settings.s3_key("workspace", path)
        carried = self._carry.get((self.settings.s3_bucket, key), 0)
        helper = self._helper_pool()

        def prepare(data: bytes, save_id: str) -> tuple[StagedSave, int, int]:
            # On a helper thread, beside the file's write: hash, measure, check and, in the
            # common case, stage. Answers what is left to do once the file is written.
            entry = self.make_entry(
                path, data, content_type=content_type, extra=extra, save_id=save_id
            )
            free = self.spool.free_bytes() if check_disk else 0
            try:
                check_upload(entry.key, entry.size, entry.metadata())
            except S3BadRequest as e:  # kept aside with its bytes, once the file is written
                return StagedSave(entry, None, rejection=e), free, 0
            try:  # reads the uploader's queues, which the loop may change meanwhile
                duplicate = self.identical_to(entry)
            except (IndexError, KeyError, RuntimeError):
                duplicate = None  # a save archived twice at worst
            if duplicate is not None:
                return StagedSave(duplicate, None, committed=True, duplicate=True), 0, 0
            entry.dropped = carried
            need = entry.size + len(entry.header()) + 16
            if (limit and used + need > limit) or (check_disk and free - need < min_free):
                return StagedSave(entry, None), free, need  # room is made on the loop first
            return self.spool.stage(entry, data), free, need

        def work() -> tuple[StagedSave | None, BaseException | None, bytes | None, int, int]:
            data = produce()
            save_id = new_save_id()  # before the write: ids follow the order of writes
            try:
                pending = helper.submit(prepare, data, save_id)
            except RuntimeError:  # the helper is shut down (the server is stopping): in turn
                pending = None
            try:
                write(data)
            except BaseException:
                if pending is not None:
                    with contextlib.suppress(BaseException):
                        self.spool.discard(pending.result()[0])
                raise
            try:
                staged, free, need = (
                    pending.result() if pending is not None else prepare(data, save_id)
                )
            except Exception as e:  # the file is written; only its archive copy is not
                return None, e, None, 0, 0
            if staged.rejection is not None:
                entry = staged.entry
                if check_disk and free - entry.size - len(entry.header()) < min_free:
                    return staged, None, None, 0, 0
                try:
                    kept = self.spool.stage(entry, data)
                except Exception as error:
                    return None, error, None, 0, 0
                kept.rejection = staged.rejection
                return kept, None, None, 0, 0
            if staged.duplicate:
                return staged, None, None, 0, 0
            if staged.tmp_path is None:
                return staged, None, data, free, need  # over the limits
            done, failed = self.spool.rename_written(staged)
            return done, failed, None, free, need

        # In anyio's worker threads, as jupyter_server's own saves: the event loop's default
        # executor (a few threads) is the uploads' (reading the spool), not the saves'.
        staged, error, data, free, need = await run_in_worker(work)
        if staged is None or staged.rejection is not None or staged.duplicate:
            if staged is not None and staged.duplicate:
                self.skipped_identical += 1
                self.log.debug("bookstore: %s unchanged since save %s", path, staged.entry.save_id)
            return staged, error
        entry = staged.entry
        k = (entry.bucket, entry.key)
        self._carry.pop(k, None)
        if staged.committed:
            # Concurrent saves may have filled the spool meanwhile: check again.
            if await self._make_room(entry, 0, free - need, extra_used=need):
                self._sizes[entry.save_id] = need
                self.uploader.enqueue(entry)
                self._sync_in_background(entry.path)
                return staged, None
            await run_sync(self.spool.remove, entry)
        elif error is None and data is not None and await self._make_room(entry, need, free):
            self._sizes[entry.save_id] = need
            try:
                return await run_sync(self.spool.stage, entry, data), None
            except Exception as e:
                self._sizes.pop(entry.save_id, None)
                return None, e
        if error is not None:
            return None, error
        self._carry[k] = entry.dropped + 1
        self._count_dropped(entry, 1)
        await run_sync(self.spool.write_stats, self.stats)
        return StagedSave(entry, None, dropped=True), None

    def _helper_pool(self) -> Executor:
        """The threads that write spool stages beside the saves' disk writes."""
        if self._helper is None:
            self._helper = ThreadPoolExecutor(
                max_workers=HELPER_THREADS, thread_name_prefix="bookstore-stage"
            )
        return self._helper

    async def commit(
        self, staged: StagedSave, *, file_unchanged_until_synced: bool = False
    ) -> SpoolEntry:
        """Queue a staged save durably; return its entry.

        ``file_unchanged_until_synced``: the caller (the contents manager) does not change
        the file before :meth:`durable` says so. Then the entry's rename is made durable
        in the background (the directory fsync, grouped with other saves'), not before
        this returns: until it is, a crash leaves a stage whose bytes are the file's,
        which :meth:`Spool.open` commits. The save does not wait for the fsync.

        With ``skip_identical_saves``, a save identical to the newest queued or uploaded
        save of its key is dropped instead, and that earlier entry is returned.
        """
        if staged.committed:
            return staged.entry  # by write_and_commit, queued already
        if staged.rejection is not None:
            await self._set_aside(staged.entry, staged.tmp_path, staged.rejection)
        elif staged.tmp_path is not None:
            duplicate = self.identical_to(staged.entry)
            if duplicate is not None:
                self._sizes.pop(staged.entry.save_id, None)
                await run_sync(self.spool.discard, staged)
                self.skipped_identical += 1
                self.log.debug(
                    "bookstore: %s unchanged since save %s", staged.entry.path, duplicate.save_id
                )
                return duplicate
            if file_unchanged_until_synced:
                await run_sync(self.spool.rename_staged, staged)
                self._sync_in_background(staged.entry.path)
            else:
                await run_sync(self.spool.commit, staged)
            self.uploader.enqueue(staged.entry)
        return staged.entry

    def _sync_in_background(self, path: str) -> None:
        task = asyncio.ensure_future(run_sync(self.spool.sync_dir))
        self._syncs[path] = task
        self._sync_tasks.add(task)

        def done(t: asyncio.Future[None]) -> None:
            self._sync_tasks.discard(t)
            if self._syncs.get(path) is t:
                del self._syncs[path]
            if not t.cancelled() and t.exception() is not None:
                self.log.error(
                    "bookstore: could not fsync the spool %s: %s",
                    self.spool.directory,
                    t.exception(),
                )

        task.add_done_callback(done)

    async def durable(self, path: str) -> None:
        """Wait until the saves of ``path`` committed so far are durable in the spool.

        The contents manager calls it before it changes the file again (a save, a rename,
        a delete): the file is what recovers a save whose commit is not durable yet.
        """
        task = self._syncs.get(path)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    def identical_to(self, entry: SpoolEntry) -> SpoolEntry | None:
        """The newest queued or uploaded save of ``entry``'s key, if it has the same bytes.

        Only what this process knows: no S3 request on the save path. Saves that carry
        extra metadata (a rename, a restore) record an event and are never skipped.
        """
        if not self.settings.skip_identical_saves or entry.extra:
            return None
        newest = self.uploader.newest(entry.bucket, entry.key)
        if newest is None or newest.sha256 != entry.sha256 or newest.size != entry.size:
            return None
        return newest

    def save_in_flight(self) -> contextlib.AbstractContextManager[None]:
        """Around a save of an archived file: uploads wait for it (``upload_quiet_period``)."""
        return self.uploader.save_in_flight()

    async def discard(self, staged: StagedSave) -> None:
        if staged.committed:
            return  # its file was written: it stays queued
        self._sizes.pop(staged.entry.save_id, None)
        await run_sync(self.spool.discard, staged)
        if staged.dropped:  # it was never saved: nothing was dropped
            k = (staged.entry.bucket, staged.entry.key)
            self._carry[k] = max(0, self._carry.get(k, 0) - 1)

    # --- limits ----------------------------------------------------------------------

    @property
    def spool_bytes(self) -> int:
        return self._sizes.total

    async def _make_room(
        self, entry: SpoolEntry, need: int, free: int, extra_used: int = 0
    ) -> bool:
        """Whether ``need`` more bytes fit in the spool, dropping saves to make them fit.

        Once ``max_spool_bytes`` or ``min_free_disk_bytes`` is reached, every path keeps
        its oldest waiting save (it may be uploading) and its newest, the one being made
        now taking that place for its own path; the saves in between are dropped and
        counted on the next save kept. If even that is not enough, this save's archive
        copy is dropped instead: the save itself goes on.
        """
        limit = self.settings.max_spool_bytes
        min_free = self.settings.min_free_disk_bytes
        # ``free`` was measured just before: stages reserved since are not in it yet.
        used = self.spool_bytes + extra_used

        def fits(freed: int) -> bool:
            if limit and used - freed + need > limit:
                return False
            return not (min_free and free + freed - need < min_free)

        if fits(0):
            return True
        k = (entry.bucket, entry.key)
        queues = self.uploader.queues()
        own = list(queues.get(k, ()))
        victims = own[1:-1]
        for other_key, queue in queues.items():
            if other_key != k:
                victims.extend(list(queue)[1:-1])
        freed = sum(self._sizes.get(v.save_id, 0) for v in victims)
        superseded = own[-1:] if len(own) >= 2 else []
        admitted = fits(freed + sum(self._sizes.get(v.save_id, 0) for v in superseded))
        if admitted:
            victims.extend(superseded)
        self._log_limit(need, free)
        if victims:
            await self._drop(victims, entry if admitted else None)
        return admitted

    async def _drop(self, victims: list[SpoolEntry], newest: SpoolEntry | None) -> None:
        """Drop queued saves; each path's count moves to the next save kept of that path."""
        touched: dict[str, SpoolEntry] = {}
        removed: list[SpoolEntry] = []
        queues = self.uploader.queues()
        for victim in victims:
            k = (victim.bucket, victim.key)
            queue = queues.get(k)
            if queue is None or victim not in queue or queue[0] is victim:
                continue  # uploaded meanwhile, or uploading now: keep it
            index = queue.index(victim)
            queue.remove(victim)
            removed.append(victim)
            if newest is not None and (newest.bucket, newest.key) == k and index >= len(queue):
                heir = newest  # not written yet: its header carries the count
            else:
                heir = queue[min(index, len(queue) - 1)]
                touched[heir.save_id] = heir
            heir.dropped += victim.dropped + 1
            self._sizes.pop(victim.save_id, None)
            self._count_dropped(victim, 1)

        for save_id, heir in list(touched.items()):
            if heir not in queues.get((heir.bucket, heir.key), ()):
                del touched[save_id]  # dropped itself: its count moved on

        def persist() -> None:
            for victim in removed:
                self.spool.remove(victim)
            for heir in touched.values():
                self.spool.write_dropped(heir)
            self.spool.write_stats(self.stats)

        await run_sync(persist)

    def _count_dropped(self, entry: SpoolEntry, n: int) -> None:
        self.stats["dropped_saves"] = int(self.stats.get("dropped_saves", 0)) + n
        self.stats["last_dropped"] = {"path": entry.path, "save_id": entry.save_id}
        self.stats["last_dropped_at"] = utcnow_iso()

    def _log_limit(self, need: int, free: int) -> None:
        if self._limit_logged:
            return
        self._limit_logged = True
        s = self.settings
        self.log.error(
            "bookstore: the spool %s reached its limit (%d bytes queued, max_spool_bytes=%d; "
            "%s free on its disk, min_free_disk_bytes=%d). Until uploads catch up, only the "
            "oldest and the newest waiting save of each path are kept for the archive; the "
            "saves in between are dropped from the archive (not from disk) and counted in "
            "GET /api/bookstore. Is S3 reachable? (logged once)",
            self.spool.directory,
            self.spool_bytes,
            s.max_spool_bytes,
            free if s.min_free_disk_bytes else "not checked",
            s.min_free_disk_bytes,
        )

    # --- set aside -------------------------------------------------------------------

    async def _set_aside(self, entry: SpoolEntry, source: str | None, e: S3Error) -> None:
        """Keep a save S3 can never accept out of the queue, with why (never retried)."""
        self._sizes.pop(entry.save_id, None)
        reason = str(e)
        info = await run_sync(self.spool.set_aside, entry, source, reason, e.code)
        same = (entry.bucket, entry.key)
        self.set_aside = [i for i in self.set_aside if (i.get("bucket"), i.get("key")) != same]
        self.set_aside.append(info)
        self.last_error = {
            "message": reason,
            "code": e.code,
            "path": entry.path,
            "at": utcnow_iso(),
        }
        self.log.error(
            "bookstore: S3 can never accept the save of %s; it is set aside, not retried "
            "(bytes kept at %s): %s",
            entry.path,
            info["kept_at"] or "nowhere: the disk was full; the file itself is intact",
            reason,
        )

    async def archive(self, path: str, data: bytes, **kwargs: Any) -> SpoolEntry:
        """Stage and commit in one step (for saves that already happened)."""
        return await self.commit(await self.stage(path, data, **kwargs))

    # --- the uploader ---------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self.uploader.pending

    def pending_entries(self, bucket: str, key: str, newest: int | None = None) -> list[SpoolEntry]:
        """Queued saves of one key, oldest first; only the ``newest`` ones if given."""
        return self.uploader.pending_entries(bucket, key, newest)

    @property
    def uploaded(self) -> int:
        return self.uploader.uploaded

    @property
    def failed_attempts(self) -> int:
        return self.uploader.failed_attempts

    @property
    def last_upload(self) -> dict[str, Any] | None:
        return self.uploader.last_upload

    @property
    def last_error(self) -> dict[str, Any] | None:
        return self.uploader.last_error

    @last_error.setter
    def last_error(self, value: dict[str, Any] | None) -> None:
        self.uploader.last_error = value

    def _uploaded_one(self, entry: SpoolEntry) -> None:
        self._sizes.pop(entry.save_id, None)

    def _drained(self) -> None:
        if self._limit_logged:
            self._limit_logged = False
            self.log.warning(
                "bookstore: the spool is empty again; %s save(s) were dropped from "
                "the archive in all (see GET /api/bookstore)",
                self.stats.get("dropped_saves", 0),
            )

    # --- status ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        s = self.settings
        return {
            "pending": self.pending,
            "uploaded": self.uploader.uploaded,
            "failed_attempts": self.uploader.failed_attempts,
            "skipped_identical": self.skipped_identical,
            "last_error": self.last_error,
            "last_upload": self.uploader.last_upload,
            "spool_dir": self.spool.directory,
            "spool_locked": self.spool.locked,
            "spool_shared": self.spool.directory != spool_candidates(s.spool_dir)[0],
            "spool_bytes": self.spool_bytes,
            "max_spool_bytes": s.max_spool_bytes,
            "min_free_disk_bytes": s.min_free_disk_bytes,
            "spool_limit_reached": self._limit_logged,
            "dropped_saves": int(self.stats.get("dropped_saves", 0)),
            "last_dropped_at": self.stats.get("last_dropped_at"),
            "set_aside_count": len(self.set_aside),
            "set_aside": [
                {
                    k: info.get(k)
                    for k in ("path", "key", "save_id", "reason", "code", "kept_at", "set_aside_at")
                }
                for info in self.set_aside[-SET_ASIDE_LISTED:][::-1]
            ],
            "corrupt_entries": self.corrupt_entries,
            "running": self._started and not self._stopping,
        }
