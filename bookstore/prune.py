"""Retention in S3: prune versions under a policy, pin versions, measure usage.

The service behind ``bookstore prune``, ``pin``, ``unpin`` and ``usage`` (and the
retention check of ``bookstore doctor``); nothing here prints. The policy itself is pure
logic in :mod:`bookstore.retention`.

:func:`prune` streams the listing of a prefix (one page of 1,000 versions at a time),
decides about each path's versions as they arrive, and deletes the removed ones in
``DeleteObjects`` batches of up to 1,000, so memory does not grow with the number of
versions. Never deleted: the newest version of a path, pinned versions (S3 tag
``bookstore-pinned``: never the pin index that listings read, which could be stale;
with ``--yes`` the index is repaired from the tags read), and the published and runs
prefixes unless they are the prefix asked for. A removed version never changes the
verdict on the others, so after a failure partway the same command finishes the job.

Pins and a running prune: the tags are read twice. Once when a path's versions are
decided (the plan, which the report shows), and again for each ``DeleteObjects`` batch
right before it is sent: a version pinned at any time before that second read is kept
(counted in ``pinned_late``), however long ago its plan was made. An unpin during a
prune takes effect at the next run. What no S3 request can close is a pin that lands
in the moment between a batch's second read and its ``DeleteObjects``; ``bookstore pin``
of a version already deleted fails (the version does not exist).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .render import human_size
from .retention import Decision, Item, PolicyRun, RetentionPolicy, as_utc
from .s3 import DELETE_BATCH_SIZE, S3Error, S3NotFound, gather_or_cancel
from .times import isoformat

if TYPE_CHECKING:
    from .s3 import ObjectVersion, S3Store
    from .settings import BookstoreSettings

#: Prefixes ``bookstore prune`` and ``usage`` can work on.
PRUNE_PREFIXES = ("workspace", "published", "runs")
#: Default of the runs prefix when the settings have none (``runs_prefix``, issue 9).
DEFAULT_RUNS_PREFIX = "runs"
#: Reasons added to the policy's own.
REASON_NEWEST = "newest"
REASON_PINNED = "pinned"
#: Concurrent tag reads when checking removal candidates for a pin.
PIN_CHECK_CONCURRENCY = 16
#: ``bookstore doctor`` warns when there is no policy and the workspace grew faster
#: than this (bytes per day, averaged over the last week).
FAST_GROWTH_BYTES_PER_DAY = 100 * 1024 * 1024
#: How many per-version errors a result keeps (their total is always counted).
MAX_REPORTED_ERRORS = 20


def expanded_prefix(settings: BookstoreSettings, which: str) -> str:
    """The S3 key prefix (``{username}`` filled in) of ``workspace``, ``published`` or ``runs``."""
    if which in {"workspace", "published"}:
        return settings.prefix_for(which)
    if which == "runs":
        runs = getattr(settings, "runs", None)
        if isinstance(runs, str) and runs:
            return runs
        raw = getattr(settings, "runs_prefix", None) or DEFAULT_RUNS_PREFIX
        return settings._expand(str(raw).strip("/"))
    raise ValueError(f"unknown prefix {which!r}: use one of {', '.join(PRUNE_PREFIXES)}")


def _under(key: str, prefix: str) -> bool:
    return key.startswith(prefix.rstrip("/") + "/")


@dataclass
class VersionVerdict:
    """One version's fate in a prune: kept (and why) or removed."""

    key: str
    version_id: str
    last_modified: datetime
    size: int
    keep: bool
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "last_modified": isoformat(self.last_modified),
            "size": self.size,
            "action": "keep" if self.keep else "remove",
            "reasons": self.reasons,
        }


@dataclass
class PathSummary:
    """What a prune decided for one path."""

    key: str
    path: str
    versions: int = 0
    kept: int = 0
    removed: int = 0
    bytes_kept: int = 0
    bytes_removed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "key": self.key,
            "versions": self.versions,
            "kept": self.kept,
            "removed": self.removed,
            "bytes_kept": self.bytes_kept,
            "bytes_removed": self.bytes_removed,
        }


@dataclass
class PruneResult:
    """The totals of a prune, and what went wrong."""

    dry_run: bool
    paths: int = 0
    versions: int = 0
    kept: int = 0
    removed: int = 0
    bytes_removed: int = 0
    deleted: int = 0
    bytes_deleted: int = 0
    delete_requests: int = 0
    #: Versions S3 refused to delete (Object Lock, bucket policy...): the first few.
    refused: list[dict[str, str]] = field(default_factory=list)
    refused_count: int = 0
    #: Set when the prune stopped early (S3 unreachable...): what happened.
    failure: str | None = None
    #: Pin index markers added for versions pinned by tag alone, and removed for versions
    #: whose pin tag was removed by another tool (see :meth:`S3Store.pinned_versions`).
    pins_indexed: int = 0
    pins_unindexed: int = 0
    #: Versions the plan removed but that were pinned before their batch was deleted
    #: (kept; counted in ``kept``, not ``removed``).
    pinned_late: int = 0

    @property
    def complete(self) -> bool:
        return self.failure is None and self.refused_count == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "complete": self.complete,
            "paths": self.paths,
            "versions": self.versions,
            "kept": self.kept,
            "removed": self.removed,
            "bytes_removed": self.bytes_removed,
            "deleted": self.deleted,
            "bytes_deleted": self.bytes_deleted,
            "delete_requests": self.delete_requests,
            "refused": self.refused,
            "refused_count": self.refused_count,
            "failure": self.failure,
            "pins_indexed": self.pins_indexed,
            "pins_unindexed": self.pins_unindexed,
            "pinned_late": self.pinned_late,
        }


class PruneListener:
    """Callbacks of :func:`prune` (the command line prints from them). All optional."""

    def path_started(self, key: str, path: str) -> None:
        """A new path's versions begin."""

    def version(self, verdict: VersionVerdict) -> None:
        """One version's verdict, in listing order (newest first within a path)."""

    def path_done(self, summary: PathSummary) -> None:
        """Every version of a path was decided (its deletes may still be queued)."""

    def deleted(self, count: int, total: int) -> None:
        """A DeleteObjects request deleted ``count`` versions (``total`` so far)."""

    async def before_delete(self, batch: list[tuple[str, str]]) -> None:
        """Awaited before a batch's pins are read again and it is deleted: ``(key,
        version id)`` pairs. A pin set by then is honoured."""

    def pinned_late(self, key: str, version_id: str) -> None:
        """A version the plan removed was pinned before its batch was deleted: kept."""


class _Pruner:
    def __init__(
        self,
        store: S3Store,
        policy: RetentionPolicy,
        now: datetime,
        *,
        dry_run: bool,
        listener: PruneListener,
        protect: list[str],
        strip: str,
        batch_size: int,
    ) -> None:
        self.store = store
        self.policy = policy
        self.now = as_utc(now)
        self.dry_run = dry_run
        self.listener = listener
        self.protect = protect
        self.strip = strip
        self.batch_size = batch_size
        self.result = PruneResult(dry_run=dry_run)
        self._to_delete: list[tuple[str, str, int]] = []

    # --- one path ----------------------------------------------------------------------

    async def run_key(self, key: str, versions: Any) -> None:
        """Decide about one key's versions (an async iterator, newest first)."""
        path = key[len(self.strip) :].lstrip("/") if self.strip else key
        summary = PathSummary(key=key, path=path)
        self.listener.path_started(key, path)
        run = PolicyRun(self.policy, self.now)
        chunk: list[tuple[Decision, bool]] = []
        previous: ObjectVersion | None = None
        first = True
        async for v in versions:
            if previous is not None:
                chunk.append((run.decide(_item(previous), oldest=False), first))
                first = False
                if len(chunk) >= self.batch_size:
                    await self._settle(key, chunk, summary)
                    chunk = []
            previous = v
        if previous is not None:
            chunk.append((run.decide(_item(previous), oldest=True), first))
        await self._settle(key, chunk, summary)
        self.result.paths += 1
        self.listener.path_done(summary)

    async def _settle(
        self, key: str, chunk: list[tuple[Decision, bool]], summary: PathSummary
    ) -> None:
        """Protect the newest and pinned versions of a chunk, report, queue the deletes."""
        for decision, newest in chunk:
            if newest:
                decision.keep = True
                decision.reasons.insert(0, REASON_NEWEST)
        candidates = [d.item.version_id for d, _ in chunk if not d.keep]
        pinned = {vid for _, vid in await self._pinned([(key, vid) for vid in candidates])}
        if candidates and not self.dry_run:
            await self._sync_pin_index(key, candidates, pinned)
        for decision, _ in chunk:
            item = decision.item
            if item.version_id in pinned:
                decision.keep = True
                decision.reasons.append(REASON_PINNED)
            verdict = VersionVerdict(
                key, item.version_id, item.time, item.size, decision.keep, decision.reasons
            )
            summary.versions += 1
            self.result.versions += 1
            if decision.keep:
                summary.kept += 1
                summary.bytes_kept += item.size
                self.result.kept += 1
            else:
                summary.removed += 1
                summary.bytes_removed += item.size
                self.result.removed += 1
                self.result.bytes_removed += item.size
                if not self.dry_run:
                    self._to_delete.append((key, item.version_id, item.size))
            self.listener.version(verdict)
        while len(self._to_delete) >= self.batch_size:
            await self._delete_batch()

    async def _pinned(self, versions: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these ``(key, version id)`` carry the pin tag (read from S3 now)."""
        semaphore = asyncio.Semaphore(PIN_CHECK_CONCURRENCY)
        pinned: set[tuple[str, str]] = set()

        async def check(key: str, vid: str) -> None:
            async with semaphore:
                try:
                    if await self.store.is_pinned(key, vid):
                        pinned.add((key, vid))
                except S3NotFound:
                    pass  # already gone: deleting it again is harmless

        await gather_or_cancel(check(key, vid) for key, vid in versions)
        return pinned

    async def _sync_pin_index(self, key: str, candidates: list[str], pinned: set[str]) -> None:
        """Bring the pin index (what listings show) in line with the tags just read: a pin
        tagged by another tool gets its marker, a marker whose tag is gone is removed."""
        indexed = await self.store.pinned_versions(key, candidates)
        for vid in sorted(pinned - indexed):
            await self.store.index_pin(key, vid)
            self.result.pins_indexed += 1
        for vid in sorted(indexed - pinned):
            await self.store.unindex_pin(key, vid)
            self.result.pins_unindexed += 1

    # --- deleting ------------------------------------------------------------------------

    async def _delete_batch(self) -> None:
        batch = self._to_delete[: self.batch_size]
        sizes = {(k, vid): size for k, vid, size in batch}
        pairs = [(k, vid) for k, vid, _ in batch]
        await self.listener.before_delete(pairs)
        # The plan read these tags a while ago (a batch gathers versions from many
        # listing pages): read them again, right before deleting.
        late = await self._pinned(pairs)
        for k, vid in sorted(late):
            await self.store.index_pin(k, vid)
            size = sizes[(k, vid)]
            self.result.pinned_late += 1
            self.result.kept += 1
            self.result.removed -= 1
            self.result.bytes_removed -= size
            self.listener.pinned_late(k, vid)
        doomed = [p for p in pairs if p not in late]
        answer = await self.store.delete_versions(doomed)
        del self._to_delete[: len(batch)]
        self.result.delete_requests += 1 if doomed else 0
        for k, vid in answer.deleted:
            self.result.deleted += 1
            self.result.bytes_deleted += sizes.get((k, vid), 0)
        for k, vid, code, message in answer.errors:
            self.result.refused_count += 1
            if len(self.result.refused) < MAX_REPORTED_ERRORS:
                self.result.refused.append(
                    {"key": k, "version_id": vid, "code": code, "message": message}
                )
        self.listener.deleted(len(answer.deleted), self.result.deleted)

    async def flush(self) -> None:
        while self._to_delete:
            await self._delete_batch()


def _item(v: ObjectVersion) -> Item:
    return Item(v.version_id, as_utc(v.last_modified), v.size)


async def prune(
    store: S3Store,
    settings: BookstoreSettings,
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
    prefix: str = "workspace",
    path: str | None = None,
    dry_run: bool = True,
    listener: PruneListener | None = None,
    batch_size: int = DELETE_BATCH_SIZE,
) -> PruneResult:
    """Apply ``policy`` to the versions of ``path`` (or of every path) under ``prefix``.

    With ``dry_run`` (the default) nothing is deleted. S3 failures do not raise: the
    result's ``failure`` says what happened and what was done before it.
    """
    if not 1 <= batch_size <= DELETE_BATCH_SIZE:
        raise ValueError(f"batch_size must be from 1 to {DELETE_BATCH_SIZE}")
    base = expanded_prefix(settings, prefix)
    protect = [expanded_prefix(settings, p) for p in PRUNE_PREFIXES if p != prefix]
    # Only protected prefixes that are nested inside the one being pruned matter.
    protect = [p for p in protect if _under(p, base)]
    pruner = _Pruner(
        store,
        policy,
        now or datetime.now(timezone.utc),
        dry_run=dry_run,
        listener=listener or PruneListener(),
        protect=protect,
        strip=base,
        batch_size=batch_size,
    )
    exact = f"{base}/{path}" if path else None
    list_prefix = exact if exact else base + "/"
    try:
        await _walk(store, list_prefix, exact, protect, pruner.run_key)
        await pruner.flush()
    except S3Error as e:
        pruner.result.failure = str(e)
    return pruner.result


async def _walk(
    store: S3Store,
    list_prefix: str,
    exact: str | None,
    protect: list[str],
    on_key: Callable[[str, Any], Any],
) -> None:
    """Stream the listing and hand each key's versions to ``on_key`` as an iterator."""
    stream = store.iter_prefix_versions(list_prefix).__aiter__()
    pending: ObjectVersion | None = None
    exhausted = False

    async def next_version() -> ObjectVersion | None:
        nonlocal pending, exhausted
        if pending is not None:
            v, pending = pending, None
            return v
        if exhausted:
            return None
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            exhausted = True
            return None

    while True:
        head = await next_version()
        if head is None:
            return
        key = head.key
        skip = (exact is not None and key != exact) or any(_under(key, p) for p in protect)

        async def versions_of(first: ObjectVersion = head, key: str = key) -> Any:
            nonlocal pending
            yield first
            while True:
                v = await next_version()
                if v is None:
                    return
                if v.key != key:
                    pending = v
                    return
                yield v

        if skip:
            async for _ in versions_of():
                pass
            continue
        await on_key(key, versions_of())


# --- usage ---------------------------------------------------------------------------------


@dataclass
class PathUsage:
    path: str
    key: str
    versions: int = 0
    bytes: int = 0
    newest: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "key": self.key,
            "versions": self.versions,
            "bytes": self.bytes,
            "newest": isoformat(self.newest),
        }


@dataclass
class Usage:
    """Bytes and versions per path and in total, and what the last week added per day."""

    prefix: str
    s3_prefix: str
    paths: list[PathUsage] = field(default_factory=list)
    versions: int = 0
    bytes: int = 0
    #: ``(day, versions, bytes)`` for the last 7 UTC days, oldest first (today last).
    days: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def week_bytes(self) -> int:
        return sum(b for _, _, b in self.days)

    @property
    def bytes_per_day(self) -> float:
        return self.week_bytes / max(1, len(self.days))

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "s3_prefix": self.s3_prefix,
            "paths": [p.to_json() for p in self.paths],
            "total": {"paths": len(self.paths), "versions": self.versions, "bytes": self.bytes},
            "growth": [{"day": d, "versions": n, "bytes": b} for d, n, b in self.days],
            "growth_bytes_per_day": round(self.bytes_per_day),
        }


async def usage(
    store: S3Store,
    settings: BookstoreSettings,
    *,
    prefix: str = "workspace",
    now: datetime | None = None,
    per_path: bool = True,
) -> Usage:
    """Measure ``prefix``: one streamed listing, so memory grows with paths, not versions."""
    base = expanded_prefix(settings, prefix)
    when = as_utc(now or datetime.now(timezone.utc))
    today = when.date()
    day_names = [(today - timedelta(days=i)).isoformat() for i in range(6, -1, -1)]
    per_day = {d: [0, 0] for d in day_names}
    protect = [
        expanded_prefix(settings, p)
        for p in PRUNE_PREFIXES
        if p != prefix and _under(expanded_prefix(settings, p), base)
    ]
    result = Usage(prefix=prefix, s3_prefix=base + "/")
    current: PathUsage | None = None
    async for v in store.iter_prefix_versions(base + "/"):
        if any(_under(v.key, p) for p in protect):
            continue
        if current is None or current.key != v.key:
            current = PathUsage(path=v.key[len(base) + 1 :], key=v.key)
            if per_path:
                result.paths.append(current)
        current.versions += 1
        current.bytes += v.size
        modified = as_utc(v.last_modified)
        if current.newest is None or modified > current.newest:
            current.newest = modified
        result.versions += 1
        result.bytes += v.size
        day = modified.date().isoformat()
        if day in per_day and modified <= when:
            per_day[day][0] += 1
            per_day[day][1] += v.size
    result.days = [(d, per_day[d][0], per_day[d][1]) for d in day_names]
    return result


# --- pins ----------------------------------------------------------------------------------


async def set_pin(
    store: S3Store,
    settings: BookstoreSettings,
    path: str,
    version_id: str,
    pinned: bool,
    prefix: str = "workspace",
) -> dict[str, Any]:
    """Pin or unpin one version (S3 object tag); :class:`S3NotFound` if it does not exist."""
    key = (
        settings.s3_key(prefix, path)
        if prefix != "runs"
        else f"{expanded_prefix(settings, 'runs')}/{path}"
    )
    changed = await store.set_pinned(key, version_id, pinned)
    return {
        "path": path,
        "prefix": prefix,
        "s3_path": f"s3://{settings.s3_bucket}/{key}",
        "version_id": version_id,
        "pinned": pinned,
        "changed": changed,
    }


async def retention_check(
    store: S3Store,
    settings: BookstoreSettings,
    *,
    fast_growth: float = FAST_GROWTH_BYTES_PER_DAY,
    now: datetime | None = None,
) -> tuple[str, str, str]:
    """``(status, detail, fix)`` for ``bookstore doctor``: is storage growth bounded?

    WARN when no policy is set and the workspace grew more than ``fast_growth`` bytes a
    day over the last week (measuring it lists the workspace, so only then).
    """
    policy = settings.retention_policy
    if not policy.empty:
        return "OK", f"policy: {policy.describe()} (run `bookstore prune --yes` on a schedule)", ""
    report = await usage(store, settings, now=now, per_path=False)
    rate = report.bytes_per_day
    detail = (
        f"no policy set; the workspace holds {report.versions} version(s) and grew "
        f"{human_size(int(rate))}/day over the last 7 days"
    )
    if rate > fast_growth:
        return (
            "WARN",
            detail,
            "set c.BookstoreSettings.retention (e.g. {'keep_within': '7d', "
            "'keep_within_hourly': '1m', 'keep_within_daily': '1y'}) and run "
            "`bookstore prune --yes` daily; see docs/retention.md",
        )
    return "INFO", detail, ""
