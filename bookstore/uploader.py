"""The uploader: the background tasks that drain the spool to S3.

Versions of one key are uploaded strictly in save order, one after another; different
keys upload concurrently, at most ``max_concurrent_uploads`` at a time. An upload first
lets saves in progress finish (``upload_quiet_period``, bounded). A failed attempt
is retried with capped exponential backoff and full jitter; after a failed attempt the
next one first asks S3 whether the save already arrived (only its answer may have been
lost). An entry is removed from the spool only once S3 has acknowledged it.

The body is streamed from the spool file, never read whole into memory: a single PUT up
to ``multipart_threshold`` bytes, a multipart upload above it (see
:meth:`bookstore.s3.S3Store.upload_file`).

The uploader knows the spool only through :class:`SpoolFiles` and its entries through
:class:`QueuedSave`, and takes its clock, sleep and jitter as arguments, so that tests can
drive the backoff without waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Iterator
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar

from .s3 import META_SAVE_ID, S3Error, S3NotFound

if TYPE_CHECKING:
    from logging import Logger
    from typing import BinaryIO

    from .s3 import S3Store
    from .settings import BookstoreSettings

#: How many keys' last uploaded save the uploader remembers (for skip_identical_saves).
LAST_UPLOADED_CACHE_SIZE = 10_000

_T = TypeVar("_T")


async def run_sync(func: Callable[..., _T], *args: Any) -> _T:
    """Run a blocking call in the event loop's default thread pool.

    Not anyio's ``to_thread.run_sync``: its worker threads are not daemons and are released
    only when the task that first used them ends. The uploader's tasks live as long as the
    server; when Ctrl-C (without a terminal) stops the loop without a clean shutdown, those
    tasks never end and the process hangs at exit waiting for the threads.
    """
    return await asyncio.get_running_loop().run_in_executor(None, partial(func, *args))


class QueuedSave(Protocol):
    """What the uploader needs of a spool entry."""

    save_id: str
    bucket: str
    key: str
    path: str
    size: int
    sha256: str
    content_type: str
    recovered: bool

    def metadata(self) -> dict[str, str]: ...


class SpoolFiles(Protocol):
    """What the uploader needs of the spool: open an entry's bytes, remove it, keep it aside."""

    def open_data(self, entry: Any) -> BinaryIO: ...

    def entry_path(self, entry: Any) -> str: ...

    def remove(self, entry: Any) -> None: ...

    def quarantine(self, entry: Any) -> None: ...


class Uploader:
    """Per-key queues of committed saves and the tasks that upload them.

    ``now`` gives the wall-clock time (ISO 8601) recorded in the status; ``sleep`` waits
    between attempts and ``jitter`` gives the random fraction of each wait (tests replace
    both to check the backoff sequence without waiting for it). ``on_rejected`` is called
    with a save S3 can never accept, ``on_done`` with every save that left the queue,
    ``on_idle`` when the queue is empty.
    """

    def __init__(
        self,
        settings: BookstoreSettings,
        store: S3Store,
        log: Logger,
        *,
        now: Callable[[], str],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.store = store
        self.log = log
        self.now = now
        self.sleep = sleep
        self.jitter = jitter
        self.spool: SpoolFiles | None = None
        self.on_rejected: Callable[[Any, str | None, S3Error], Awaitable[None]] | None = None
        self.on_done: Callable[[Any], None] = lambda entry: None
        self.on_idle: Callable[[], None] = lambda: None
        self._queues: dict[tuple[str, str], deque[Any]] = {}
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._semaphore: asyncio.Semaphore | None = None
        self._idle: asyncio.Event | None = None
        self.running = False
        self.uploaded = 0
        self.failed_attempts = 0
        self.last_error: dict[str, Any] | None = None
        self.last_upload: dict[str, Any] | None = None
        self._outage_logged = False
        # Saves in progress, and when the last one ended (time.monotonic): uploads yield.
        self._saves_in_flight = 0
        self._last_save_end = 0.0
        # Uploads fell behind (more queued than max_concurrent_uploads): no waiting for
        # quiet until the queue is empty again.
        self._catching_up = False
        # Set (and replaced) when a save ends or one is queued: waiting uploads look again.
        self._save_activity = asyncio.Event()
        # The last save uploaded per key, to skip identical saves without asking S3.
        self._last_uploaded: OrderedDict[tuple[str, str], Any] = OrderedDict()

    # --- lifecycle -------------------------------------------------------------------

    def start(self, spool: SpoolFiles, entries: list[Any]) -> None:
        """Start uploading ``entries`` (left in the spool) and whatever is queued next."""
        self.spool = spool
        self._semaphore = asyncio.Semaphore(self.settings.max_concurrent_uploads)
        self._idle = asyncio.Event()
        self._idle.set()
        self._queues = {}  # the spool is the truth: what a stop left is read again
        self.running = True
        for entry in entries:
            self.enqueue(entry)

    async def stop(self, timeout: float) -> None:
        """Let the queued uploads run for up to ``timeout`` seconds, then cancel them."""
        self.running = False
        self._wake_waiting_uploads()  # uploads waiting for quiet go now
        workers = list(self._workers.values())
        if workers:
            self.log.info(
                "bookstore: flushing %d queued upload(s) (up to %.0fs)", self.pending, timeout
            )
            _done, not_done = await asyncio.wait(workers, timeout=timeout)
            for task in not_done:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def wait_idle(self, seconds: float | None = None) -> bool:
        """Wait until nothing is queued; False if still busy after ``seconds``."""
        if self._idle is None:
            return self.pending == 0
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    # --- queue -----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def queues(self) -> dict[tuple[str, str], deque[Any]]:
        """The queues by (bucket, key), oldest save first (the spool's limits drop from them)."""
        return self._queues

    def pending_entries(self, bucket: str, key: str, newest: int | None = None) -> list[Any]:
        """Queued saves of one key, oldest first; only the ``newest`` ones if given."""
        queue = self._queues.get((bucket, key), ())
        if newest is None or newest >= len(queue):
            return list(queue)
        # Without copying the rest: during a long outage thousands of saves may wait.
        return list(islice(reversed(queue), newest))[::-1]

    def newest(self, bucket: str, key: str) -> Any | None:
        """The newest queued, else the last uploaded, save of a key (this process only)."""
        k = (bucket, key)
        queue = self._queues.get(k)
        return queue[-1] if queue else self._last_uploaded.get(k)

    def enqueue(self, entry: QueuedSave) -> None:
        k = (entry.bucket, entry.key)
        self._queues.setdefault(k, deque()).append(entry)
        self._wake_waiting_uploads()
        if self._idle is not None:
            self._idle.clear()
        if not self.running:
            return  # stays in the spool for the next start
        if k not in self._workers:
            self._workers[k] = asyncio.create_task(self._run_key(k), name=f"bookstore:{k[1]}")

    async def _run_key(self, k: tuple[str, str]) -> None:
        queue = self._queues[k]
        try:
            while queue:
                entry = queue[0]
                if await self._upload_with_retry(entry):
                    assert self.spool is not None
                    await run_sync(self.spool.remove, entry)
                    self._last_uploaded[k] = entry
                    self._last_uploaded.move_to_end(k)
                    if len(self._last_uploaded) > LAST_UPLOADED_CACHE_SIZE:
                        self._last_uploaded.popitem(last=False)
                self.on_done(entry)
                queue.popleft()
        finally:
            # No await between the loop's last check and here: no enqueue can slip by.
            self._workers.pop(k, None)
            if not queue:
                self._queues.pop(k, None)
            if not self._queues and self._idle is not None:
                self._catching_up = False
                self._idle.set()
                self.on_idle()

    # --- yielding to saves ------------------------------------------------------------

    @contextlib.contextmanager
    def save_in_flight(self) -> Iterator[None]:
        """Mark a save in progress: uploads not started yet wait for it to end."""
        self._saves_in_flight += 1
        try:
            yield
        finally:
            self._saves_in_flight -= 1
            self._last_save_end = time.monotonic()
            self._wake_waiting_uploads()

    def _wake_waiting_uploads(self) -> None:
        event, self._save_activity = self._save_activity, asyncio.Event()
        event.set()

    async def _wait_for_quiet(self) -> None:
        """Wait until no save is in progress and none ended in ``upload_quiet_period``.

        An upload takes a few milliseconds of the event loop (botocore builds and signs
        the request, aiohttp sends it); a save that arrives meanwhile waits behind it.
        Letting a burst of saves finish first keeps them as fast as without bookstore
        (docs/performance.md). Bounded: at most ``upload_quiet_max_wait``; not at all
        once uploads are behind (more than ``max_concurrent_uploads`` queued), until the
        queue is empty again, nor when stopping. Real time, not ``self.sleep``: that one
        is the retries' backoff.
        """
        settings = self.settings
        period = settings.upload_quiet_period
        if period <= 0:
            return
        deadline = time.monotonic() + settings.upload_quiet_max_wait
        while self.running and not self._catching_up:
            if self.pending > settings.max_concurrent_uploads:
                self._catching_up = True
                return
            now = time.monotonic()
            if now >= deadline:
                return
            activity = self._save_activity
            if self._saves_in_flight:
                # Until a save ends or another one is queued (or the deadline).
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(activity.wait(), deadline - now)
                continue
            wait = self._last_save_end + period - now
            if wait <= 0:
                return
            await asyncio.sleep(min(wait, deadline - now))

    # --- one upload ------------------------------------------------------------------

    def backoff(self) -> Iterator[float]:
        """The waits between attempts: capped exponential, each with 0.5-1x full jitter."""
        delay = self.settings.upload_retry_initial_delay
        while True:
            # Full jitter keeps many keys from retrying in lockstep.
            yield delay * (0.5 + self.jitter() / 2)
            delay = min(delay * 2, self.settings.upload_retry_max_delay)

    async def _upload_with_retry(self, entry: QueuedSave) -> bool:
        """Upload one entry, retrying until it succeeds; False if it was set aside."""
        assert self._semaphore is not None
        assert self.spool is not None
        waits = self.backoff()
        await self._wait_for_quiet()
        while True:
            try:
                async with self._semaphore:
                    await self._upload(entry)
            except S3Error as e:
                if not e.retryable:
                    if self.on_rejected is not None:
                        await self.on_rejected(entry, self.spool.entry_path(entry), e)
                    return False
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
                self.last_error = {"message": str(e), "path": entry.path, "at": self.now()}
                await run_sync(self.spool.quarantine, entry)
                return False
            else:
                if self._outage_logged:
                    self.log.info("bookstore: S3 uploads work again")
                    self._outage_logged = False
                return True
            await self.sleep(next(waits))

    def _record_failure(self, entry: QueuedSave, e: S3Error) -> None:
        self.failed_attempts += 1
        self.last_error = {
            "message": str(e),
            "code": e.code,
            "path": entry.path,
            "at": self.now(),
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

    async def _upload(self, entry: QueuedSave) -> None:
        assert self.spool is not None
        if entry.recovered and await self._already_uploaded(entry):
            self.log.info("bookstore: save %s of %s was already in S3", entry.save_id, entry.path)
            return
        # Streamed from the spool file; never re-sent blindly: a retry goes through
        # _upload_with_retry, which asks S3 first.
        result = await self.store.upload_file(
            entry.key,
            partial(self.spool.open_data, entry),
            entry.size,
            entry.sha256,
            entry.metadata(),
            bucket=entry.bucket,
            content_type=entry.content_type,
            storage_class=self.settings.s3_storage_class,
        )
        self.uploaded += 1
        self.last_upload = {
            "path": entry.path,
            "key": entry.key,
            "version_id": result.version_id,
            "at": self.now(),
        }
        self.log.debug("bookstore: archived %s as version %s", entry.key, result.version_id)

    async def _already_uploaded(self, entry: QueuedSave) -> bool:
        """After a crash, the newest version may be this very entry (uploaded, not deleted)."""
        try:
            head = await self.store.head_object(entry.key, bucket=entry.bucket)
        except S3NotFound:
            return False
        return bool(head["Metadata"].get(META_SAVE_ID) == entry.save_id)
