"""The archiver: a durable spool of saves and the background uploader that empties it.

A save is *staged* (its bytes written and fsynced to ``<spool>/<id>.tmp``) while the
contents manager writes the file, and *committed* (renamed to ``<id>.entry``, directory
fsynced) once that write succeeded, before the save returns. From then on the save is
safe: the uploader sends it to S3 with capped exponential backoff, one version after
another per key (save order) and several keys at a time, and deletes the entry only
once S3 has acknowledged it. Whatever is left at start-up is uploaded first; a clean
stop flushes for up to ``flush_timeout`` seconds and leaves the rest for next time.

Entry file format: one line of JSON (the :class:`SpoolEntry` fields), ``\\n``, the bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from .s3 import (
    META_PATH,
    META_SAVE_ID,
    META_SAVED_AT,
    META_SHA256,
    META_USER,
    S3Error,
    S3NotFound,
)

if TYPE_CHECKING:
    from logging import Logger

    from .s3 import S3Store
    from .settings import BookstoreSettings

ENTRY_SUFFIX = ".entry"
TMP_SUFFIX = ".tmp"
CORRUPT_DIR = "corrupt"
#: How many keys' last uploaded save the archiver remembers (for skip_identical_saves).
LAST_UPLOADED_CACHE_SIZE = 10_000

_id_lock = threading.Lock()
_last_ns = 0

_T = TypeVar("_T")


async def run_sync(func: Callable[..., _T], *args: Any) -> _T:
    """Run a blocking call in the event loop's default thread pool.

    Not anyio's ``to_thread.run_sync``: its worker threads are not daemons and are released
    only when the task that first used them ends. The uploader's tasks live as long as the
    server; when Ctrl-C (without a terminal) stops the loop without a clean shutdown, those
    tasks never end and the process hangs at exit waiting for the threads.
    """
    return await asyncio.get_running_loop().run_in_executor(None, partial(func, *args))


def new_save_id() -> str:
    """A unique id whose lexical order is the order saves were made in (this process)."""
    global _last_ns
    with _id_lock:
        ns = max(time.time_ns(), _last_ns + 1)
        _last_ns = ns
    return f"{ns:020d}-{secrets.token_hex(3)}"


def utcnow_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    content_type: str = "application/x-ipynb+json"
    extra: dict[str, str] = field(default_factory=dict)
    # Set for entries found at start-up or after a failed attempt: their upload may
    # already have reached S3, so the uploader checks the newest version's save id first.
    recovered: bool = False

    def metadata(self) -> dict[str, str]:
        meta = {
            META_SHA256: self.sha256,
            META_SAVED_AT: self.saved_at,
            META_USER: self.user,
            META_PATH: self.path,
            META_SAVE_ID: self.save_id,
        }
        meta.update(self.extra)
        return meta

    def header(self) -> bytes:
        d = asdict(self)
        d.pop("recovered")
        return json.dumps(d, separators=(",", ":")).encode("utf-8") + b"\n"


@dataclass
class StagedSave:
    """A save whose bytes are in the spool but not yet committed."""

    entry: SpoolEntry
    tmp_path: str


class Spool:
    """A directory of fsynced save entries; file names sort in save order."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _path(self, save_id: str, suffix: str) -> str:
        return os.path.join(self.directory, save_id + suffix)

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def open(self) -> tuple[list[SpoolEntry], list[str]]:
        """Create the directory; drop uncommitted stages; return (entries, problems)."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        entries: list[SpoolEntry] = []
        problems: list[str] = []
        for name in sorted(os.listdir(self.directory)):
            full = os.path.join(self.directory, name)
            if name.endswith(TMP_SUFFIX):
                # A save that never returned: its write did not complete.
                with contextlib.suppress(OSError):
                    os.unlink(full)
            elif name.endswith(ENTRY_SUFFIX):
                try:
                    entry = self.read_header(full)
                except (OSError, ValueError, TypeError) as e:
                    problems.append(f"{name}: {e}")
                    self._quarantine(full)
                    continue
                entry.recovered = True
                entries.append(entry)
        return entries, problems

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

    def commit(self, staged: StagedSave) -> None:
        """Make a staged entry part of the queue, durably (blocking)."""
        os.replace(staged.tmp_path, self._path(staged.entry.save_id, ENTRY_SUFFIX))
        self._fsync_dir()

    def discard(self, staged: StagedSave) -> None:
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

    def remove(self, entry: SpoolEntry) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(entry.save_id, ENTRY_SUFFIX))

    def quarantine(self, entry: SpoolEntry) -> None:
        self._quarantine(self._path(entry.save_id, ENTRY_SUFFIX))


class Archiver:
    """Queues saves durably and uploads them to S3 in the background.

    Versions of one key are uploaded strictly in save order; different keys upload
    concurrently, at most ``max_concurrent_uploads`` at a time. Every task is tracked and
    stopped by :meth:`stop`.
    """

    def __init__(self, settings: BookstoreSettings, store: S3Store, log: Logger) -> None:
        self.settings = settings
        self.store = store
        self.log = log
        self.spool = Spool(settings.spool_dir)
        self._queues: dict[tuple[str, str], deque[SpoolEntry]] = {}
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._semaphore: asyncio.Semaphore | None = None
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self._stopping = False
        self._idle: asyncio.Event | None = None
        self.uploaded = 0
        self.failed_attempts = 0
        self.last_error: dict[str, Any] | None = None
        self.last_upload: dict[str, Any] | None = None
        self._outage_logged = False
        self.spool_problems: list[str] = []
        self.skipped_identical = 0
        # The last save uploaded per key, to skip identical saves without asking S3.
        self._last_uploaded: OrderedDict[tuple[str, str], SpoolEntry] = OrderedDict()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool and queue what a previous run left there (idempotent)."""
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            self._semaphore = asyncio.Semaphore(self.settings.max_concurrent_uploads)
            self._idle = asyncio.Event()
            self._idle.set()
            entries, problems = await run_sync(self.spool.open)
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
                # Only the oldest leftover of a key can have reached S3 before the crash.
                entry.recovered = (entry.bucket, entry.key) not in seen
                seen.add((entry.bucket, entry.key))
                self._enqueue(entry)

    async def stop(self, flush_timeout: float | None = None) -> None:
        """Flush the queue for up to ``flush_timeout`` seconds, then cancel what is left."""
        if not self._started:
            return
        timeout = self.settings.flush_timeout if flush_timeout is None else flush_timeout
        self._stopping = True
        workers = list(self._workers.values())
        if workers:
            self.log.info(
                "bookstore: flushing %d queued upload(s) (up to %.0fs)", self.pending, timeout
            )
            _done, not_done = await asyncio.wait(workers, timeout=timeout)
            for task in not_done:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        if self.pending:
            self.log.warning(
                "bookstore: %d save(s) not uploaded yet; they stay in %s and are uploaded at "
                "the next start",
                self.pending,
                self.spool.directory,
            )
        self._started = False

    async def wait_idle(self, seconds: float | None = None) -> bool:
        """Wait until nothing is queued; False if still busy after ``seconds`` (for tests)."""
        if not self._started or self._idle is None:
            return self.pending == 0
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    # --- the save path ---------------------------------------------------------------

    def make_entry(
        self,
        path: str,
        data: bytes,
        *,
        content_type: str = "application/x-ipynb+json",
        extra: dict[str, str] | None = None,
    ) -> SpoolEntry:
        return SpoolEntry(
            save_id=new_save_id(),
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
        content_type: str = "application/x-ipynb+json",
        extra: dict[str, str] | None = None,
    ) -> StagedSave:
        """Write a save's bytes durably, uncommitted (call :meth:`commit` once saved)."""
        await self.start()

        def stage_sync() -> StagedSave:
            # Hashing 1 MB takes about a millisecond: keep it off the event loop too.
            entry = self.make_entry(path, data, content_type=content_type, extra=extra)
            return self.spool.stage(entry, data)

        return await run_sync(stage_sync)

    async def commit(self, staged: StagedSave) -> SpoolEntry:
        """Queue a staged save durably; return its entry.

        With ``skip_identical_saves``, a save identical to the newest queued or uploaded
        save of its key is dropped instead, and that earlier entry is returned.
        """
        duplicate = self.identical_to(staged.entry)
        if duplicate is not None:
            await run_sync(self.spool.discard, staged)
            self.skipped_identical += 1
            self.log.debug(
                "bookstore: %s unchanged since save %s", staged.entry.path, duplicate.save_id
            )
            return duplicate
        await run_sync(self.spool.commit, staged)
        self._enqueue(staged.entry)
        return staged.entry

    def identical_to(self, entry: SpoolEntry) -> SpoolEntry | None:
        """The newest queued or uploaded save of ``entry``'s key, if it has the same bytes.

        Only what this process knows: no S3 request on the save path. Saves that carry
        extra metadata (a rename, a restore) record an event and are never skipped.
        """
        if not self.settings.skip_identical_saves or entry.extra:
            return None
        k = (entry.bucket, entry.key)
        queue = self._queues.get(k)
        newest = queue[-1] if queue else self._last_uploaded.get(k)
        if newest is None or newest.sha256 != entry.sha256 or newest.size != entry.size:
            return None
        return newest

    async def discard(self, staged: StagedSave) -> None:
        await run_sync(self.spool.discard, staged)

    async def archive(self, path: str, data: bytes, **kwargs: Any) -> SpoolEntry:
        """Stage and commit in one step (for saves that already happened)."""
        return await self.commit(await self.stage(path, data, **kwargs))

    # --- queue -----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def pending_entries(self, bucket: str, key: str) -> list[SpoolEntry]:
        """Queued saves of one key, oldest first."""
        return list(self._queues.get((bucket, key), ()))

    def _enqueue(self, entry: SpoolEntry) -> None:
        k = (entry.bucket, entry.key)
        self._queues.setdefault(k, deque()).append(entry)
        if self._idle is not None:
            self._idle.clear()
        if self._stopping or not self._started:
            return  # stays in the spool for the next start
        if k not in self._workers:
            self._workers[k] = asyncio.create_task(self._run_key(k), name=f"bookstore:{k[1]}")

    async def _run_key(self, k: tuple[str, str]) -> None:
        queue = self._queues[k]
        try:
            while queue:
                entry = queue[0]
                if await self._upload_with_retry(entry):
                    await run_sync(self.spool.remove, entry)
                    self._last_uploaded[k] = entry
                    self._last_uploaded.move_to_end(k)
                    if len(self._last_uploaded) > LAST_UPLOADED_CACHE_SIZE:
                        self._last_uploaded.popitem(last=False)
                queue.popleft()
        finally:
            # No await between the loop's last check and here: no enqueue can slip by.
            self._workers.pop(k, None)
            if not queue:
                self._queues.pop(k, None)
            if not self._queues and self._idle is not None:
                self._idle.set()

    async def _upload_with_retry(self, entry: SpoolEntry) -> bool:
        """Upload one entry, retrying until it succeeds; False if it was unreadable."""
        assert self._semaphore is not None
        delay = self.settings.upload_retry_initial_delay
        while True:
            try:
                async with self._semaphore:
                    await self._upload(entry)
            except S3Error as e:
                self._record_failure(entry, e)
                # S3 may have stored it and only the answer was lost: check before re-sending.
                entry.recovered = True
            except (OSError, ValueError) as e:
                # The entry itself is unreadable: keep it aside, never delete it.
                self.log.error(
                    "bookstore: cannot read spool entry %s for %s, moved aside: %s",
                    entry.save_id,
                    entry.path,
                    e,
                )
                self.last_error = {"message": str(e), "path": entry.path, "at": utcnow_iso()}
                await run_sync(self.spool.quarantine, entry)
                return False
            else:
                if self._outage_logged:
                    self.log.info("bookstore: S3 uploads work again")
                    self._outage_logged = False
                return True
            # Full jitter keeps many keys from retrying in lockstep.
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self.settings.upload_retry_max_delay)

    def _record_failure(self, entry: SpoolEntry, e: S3Error) -> None:
        self.failed_attempts += 1
        self.last_error = {
            "message": str(e),
            "code": e.code,
            "path": entry.path,
            "at": utcnow_iso(),
        }
        if not self._outage_logged:
            self._outage_logged = True
            self.log.warning(
                "bookstore: archiving %s failed, will retry with backoff (%d queued): %s",
                entry.path,
                self.pending,
                e,
            )
        else:
            self.log.debug("bookstore: retrying upload of %s: %s", entry.path, e)

    async def _upload(self, entry: SpoolEntry) -> None:
        data = await run_sync(self.spool.read_data, entry)
        if entry.recovered and await self._already_uploaded(entry):
            self.log.info("bookstore: save %s of %s was already in S3", entry.save_id, entry.path)
            return
        result = await self.store.put_object(
            entry.key,
            data,
            entry.metadata(),
            bucket=entry.bucket,
            content_type=entry.content_type,
            resend=False,  # a retry goes through _upload_with_retry, which checks first
        )
        self.uploaded += 1
        self.last_upload = {
            "path": entry.path,
            "key": entry.key,
            "version_id": result.version_id,
            "at": utcnow_iso(),
        }
        self.log.debug("bookstore: archived %s as version %s", entry.key, result.version_id)

    async def _already_uploaded(self, entry: SpoolEntry) -> bool:
        """After a crash, the newest version may be this very entry (uploaded, not deleted)."""
        try:
            head = await self.store.head_object(entry.key, bucket=entry.bucket)
        except S3NotFound:
            return False
        return bool(head["Metadata"].get(META_SAVE_ID) == entry.save_id)

    # --- status ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "uploaded": self.uploaded,
            "failed_attempts": self.failed_attempts,
            "skipped_identical": self.skipped_identical,
            "last_error": self.last_error,
            "last_upload": self.last_upload,
            "spool_dir": self.spool.directory,
            "running": self._started and not self._stopping,
        }
