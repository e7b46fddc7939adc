"""Version history of a Jupyter path: list, read, compare and restore archived versions.

One :class:`VersionHistory`, built once by the extension, serves the REST handlers, the
history page, Jupyter's checkpoints and the command line; nothing here knows about HTTP.
Failures are :class:`bookstore.errors.BookstoreError` (``.status`` says which HTTP status
fits): ``BadRequest`` for a malformed id, prefix, limit or page token, ``Forbidden``
outside ``readable_prefixes``, ``NotFound``, ``NotANotebook``, ``InvalidNotebook``,
``TooLarge``, and the ``S3Error`` family for S3 failures.

Versions are immutable, so everything known about one (its metadata, found with a HEAD
request) is cached by :class:`bookstore.s3.S3Store`. Saves still waiting in the spool are
listed before the S3 versions, marked ``pending``.

The pieces it is built from have their own modules: :mod:`bookstore.validators`,
:mod:`bookstore.codecs` (page tokens, checkpoint ids), :mod:`bookstore.records`,
:mod:`bookstore.notebooks`, :mod:`bookstore.pending` and :mod:`bookstore.diff`; their
names stay importable from here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

from anyio.to_thread import run_sync

from .codecs import (
    CHECKPOINT_PENDING,
    CHECKPOINT_VERSION,
    SAVE_ID_RE,
    checkpoint_id_for_save,
    checkpoint_id_for_version,
    decode_page_token,
    encode_page_token,
    parse_checkpoint_id,
    save_time,
)
from .diff import DiffCaps, DiffSummary, NotebookDiff, diff_notebooks, summarize_cells
from .errors import (
    BadRequest,
    Forbidden,
    HistoryError,
    InvalidNotebook,
    NotANotebook,
    NotFound,
    TooLarge,
)
from .metadata import META_RESTORED_FROM, META_SAVE_ID
from .notebooks import file_content, file_model, is_notebook_path, parse_notebook
from .pending import read_pending_entries
from .records import VersionListing, VersionRecord, contents_model, dropped_count
from .s3 import GetResult, ObjectVersion, S3BadRequest, S3NotFound, gather_or_cancel
from .times import isoformat, parse_time
from .validators import (
    MAX_LIMIT,
    PREFIXES,
    RESTORABLE_PREFIXES,
    VERSION_ID_RE,
    validate_limit,
    validate_prefix,
    validate_version_id,
)

if TYPE_CHECKING:
    import nbformat

    from .s3 import S3Store
    from .settings import BookstoreSettings
    from .spool import Archiver, SpoolEntry

#: What this module holds (:class:`VersionHistory`) and the names it is the former home
#: of, still importable from here.
__all__ = [
    "CHECKPOINT_PENDING",
    "CHECKPOINT_VERSION",
    "MAX_CLOCK_SKEW",
    "MAX_LIMIT",
    "META_RESTORED_FROM",
    "PREFIXES",
    "RESTORABLE_PREFIXES",
    "SAVE_ID_RE",
    "VERSION_ID_RE",
    "BadRequest",
    "DiffCaps",
    "DiffSummary",
    "Forbidden",
    "HistoryError",
    "InvalidNotebook",
    "NotANotebook",
    "NotFound",
    "NotebookDiff",
    "TooLarge",
    "VersionHistory",
    "VersionListing",
    "VersionRecord",
    "checkpoint_id_for_save",
    "checkpoint_id_for_version",
    "contents_model",
    "decode_page_token",
    "diff_notebooks",
    "dropped_count",
    "encode_page_token",
    "file_content",
    "is_notebook_path",
    "isoformat",
    "parse_checkpoint_id",
    "parse_notebook",
    "parse_time",
    "read_pending_entries",
    "save_model",
    "save_time",
    "summarize_cells",
    "validate_limit",
    "validate_prefix",
    "validate_version_id",
]

#: S3 refuses signed requests from a clock more than 15 minutes off, so a version uploaded
#: after a save is never dated more than this before the save (by the saving server's clock).
MAX_CLOCK_SKEW = timedelta(minutes=15)

#: The model that restores a version (:func:`bookstore.notebooks.file_model`).
save_model = file_model


class VersionHistory:
    """Lists and reads the versions of Jupyter paths, in S3 and in the spool."""

    def __init__(
        self,
        settings: BookstoreSettings,
        store: S3Store,
        archiver: Archiver | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        #: The running server's archiver; without one (command line), the spool directory
        #: is read directly.
        self.archiver = archiver

    @property
    def bucket(self) -> str:
        return self.settings.s3_bucket

    def key(self, path: str, prefix: str = "workspace") -> str:
        return self.settings.s3_key(prefix, path)

    def read_key(self, path: str, prefix: str = "workspace") -> str:
        """The key of ``path`` under ``prefix``, if ``readable_prefixes`` lets us read it."""
        key = self.key(path, prefix)
        reason = self.settings.unreadable_reason(key)
        if reason:
            raise Forbidden(reason)
        return key

    async def pending(self, path: str) -> list[SpoolEntry]:
        """Saves of ``path`` not uploaded yet, newest first."""
        return await self.newest_pending(path)

    async def newest_pending(self, path: str, limit: int | None = None) -> list[SpoolEntry]:
        """The newest ``limit`` (default: all) saves of ``path`` not uploaded yet, newest first.

        Without copying the others: during a long outage thousands of saves may wait, and
        jupyter_server lists a notebook's checkpoints during each save.
        """
        key = self.key(path)
        if self.archiver is not None:
            entries = self.archiver.pending_entries(self.bucket, key, limit)
        else:
            entries = await run_sync(
                read_pending_entries, self.settings.spool_dir, self.bucket, key
            )
            if limit is not None:
                entries = entries[max(len(entries) - limit, 0) :]
        return list(reversed(entries))

    async def listing(
        self,
        path: str,
        *,
        prefix: str = "workspace",
        limit: int = MAX_LIMIT,
        page_token: str | None = None,
        metadata: bool = True,
        include_pending: bool = True,
        on_fetched: Callable[[int], None] | None = None,
    ) -> VersionListing:
        """One page of versions of ``path`` under ``prefix``, newest first.

        ``page_token`` is a ``next_token`` of an earlier page. The first workspace page
        starts with the pending saves. With ``metadata`` (the default) every version gets
        its sha256, user and save id, from the cache or a HEAD request. A path with no
        version at all raises :class:`NotFound`.
        """
        key = self.read_key(path, prefix)
        raw_token = decode_page_token(page_token, key)
        if raw_token is None:
            page = await self.store.list_versions_cached(key, limit=limit)
        else:
            page = await self.store.list_versions(key, limit=limit, page_token=raw_token)
        metas: dict[str, dict[str, str]] = {}
        pins: set[str] = set()
        if metadata and page.versions:
            ids = [v.version_id for v in page.versions]
            metas, pins = await gather_or_cancel(
                [
                    self.store.version_metadata(key, ids, on_fetched=on_fetched),
                    self.store.pinned_versions(key, ids),
                ]
            )
        records = [VersionRecord.from_s3(v, metas.get(v.version_id), prefix) for v in page.versions]
        for r in records:
            r.pinned = r.version_id in pins
        pending: list[VersionRecord] = []
        if include_pending and prefix == "workspace" and raw_token is None:
            uploaded = {r.save_id for r in records if r.save_id}
            pending = [
                VersionRecord.from_entry(e)
                for e in await self.pending(path)
                if e.save_id not in uploaded
            ]
        if not records and not pending and raw_token is None:
            raise NotFound(
                f"no archived versions of {path!r} under the {prefix} prefix "
                f"(s3://{self.bucket}/{key})"
            )
        return VersionListing(
            path=path,
            prefix=prefix,
            bucket=self.bucket,
            key=key,
            versions=pending + records,
            next_token=encode_page_token(page.next_token),
        )

    async def count_versions(self, path: str, prefix: str = "workspace") -> int:
        """How many S3 versions ``path`` has: listings only, no HEAD requests."""
        key = self.read_key(path, prefix)
        count = 0
        token: str | None = None
        while True:
            page = await self.store.list_versions(key, limit=MAX_LIMIT, page_token=token)
            count += len(page.versions)
            if not page.next_token:
                return count
            token = page.next_token

    async def _get(self, path: str, version_id: str, prefix: str) -> GetResult:
        """One GET of a version's bytes and metadata; :class:`NotFound` if S3 has no such."""
        validate_version_id(version_id)
        key = self.read_key(path, prefix)
        try:
            return await self.store.get_object(key, version_id)
        except (S3NotFound, S3BadRequest) as e:
            # Our own check passed the id's format, so S3 refusing it means it does not
            # know it.
            raise NotFound(
                f"version {version_id!r} of {path!r} does not exist under the {prefix} prefix"
            ) from e

    async def record(
        self, path: str, version_id: str, prefix: str = "workspace"
    ) -> tuple[VersionRecord, GetResult]:
        """Read one version: its record (with ``is_latest`` and ``pinned``) and its bytes."""
        validate_version_id(version_id)
        key = self.read_key(path, prefix)
        got, head, pins = await asyncio.gather(
            self._get(path, version_id, prefix),
            self.store.head_object(key),
            self.store.pinned_versions(key, [version_id]),
            return_exceptions=True,
        )
        if isinstance(got, BaseException):
            raise got
        result = got
        # The newest version may be a delete marker: then no version is the latest.
        latest = isinstance(head, dict) and head.get("VersionId") == version_id
        self.store.remember_version_metadata(self.bucket, key, version_id, result.metadata)
        version = ObjectVersion(
            key=key,
            version_id=version_id,
            last_modified=result.last_modified or datetime.now(timezone.utc),
            size=len(result.body),
            is_latest=latest,
        )
        record = VersionRecord.from_s3(version, result.metadata, prefix)
        record.pinned = isinstance(pins, set) and version_id in pins
        return record, result

    async def read(self, path: str, version_id: str, prefix: str = "workspace") -> dict[str, Any]:
        """One version as a Jupyter contents model plus its version fields."""
        record, result = await self.record(path, version_id, prefix)
        return await run_sync(contents_model, path, result.body, record, result.content_type)

    async def read_bytes(self, path: str, version_id: str, prefix: str = "workspace") -> bytes:
        """The stored bytes of one version: one GET (no HEAD for ``is_latest``, no pins)."""
        return (await self._get(path, version_id, prefix)).body

    async def read_notebook(
        self, path: str, version_id: str, prefix: str = "workspace"
    ) -> nbformat.NotebookNode:
        if not is_notebook_path(path):
            raise NotANotebook(f"{path!r} is not a notebook (.ipynb): only notebooks are diffed")
        data = await self.read_bytes(path, version_id, prefix)
        what = f"version {version_id} of {path}"
        return await run_sync(partial(parse_notebook, data, what, validate=False))

    async def find_save(self, path: str, save_id: str, *, within: int | None = None) -> str | None:
        """The S3 version id of an uploaded save (metadata ``save-id``), or None.

        Versions are examined newest first and the search stops as soon as the answer is
        known: at the first version stored before the save was made (it cannot be that
        save's upload), or after the newest ``within`` versions. Metadata already known
        (every version this server uploaded) costs no request; the rest a HEAD each.
        """
        key = self.read_key(path)
        made = save_time(save_id)
        earliest = made - MAX_CLOCK_SKEW if made is not None else None
        budget = within  # versions left to examine; None: all of them
        token: str | None = None
        while True:
            size = MAX_LIMIT if budget is None else max(1, min(MAX_LIMIT, budget))
            if token is None:  # the checkpoint listing's own first page, usually cached
                page = await self.store.list_versions_cached(key, limit=size)
            else:
                page = await self.store.list_versions(key, limit=size, page_token=token)
            candidates: list[str] = []
            done = not page.next_token
            for v in page.versions:
                if budget == 0 or (earliest is not None and v.last_modified < earliest):
                    done = True
                    break
                if budget is not None:
                    budget -= 1
                candidates.append(v.version_id)
            for start in range(0, len(candidates), 32):
                batch = candidates[start : start + 32]
                metas = await self.store.version_metadata(key, batch)
                for vid in batch:
                    if metas.get(vid, {}).get(META_SAVE_ID) == save_id:
                        return vid
            if done or budget == 0:
                return None
            token = page.next_token

    async def diff(
        self,
        path: str,
        from_id: str,
        to_id: str | None = None,
        *,
        prefix: str = "workspace",
        current: dict[str, Any] | None = None,
    ) -> NotebookDiff:
        """The nbdime diff from version ``from_id`` to version ``to_id``, or to ``current``
        (the notebook as it is now) when ``to_id`` is None."""
        validate_version_id(from_id, "from")
        if to_id is not None:
            validate_version_id(to_id, "to")
        elif current is None:
            raise BadRequest("give 'to', or compare with the current file")
        base = await self.read_notebook(path, from_id, prefix)
        if to_id is not None:
            remote = await self.read_notebook(path, to_id, prefix)
        else:
            import nbformat  # loaded on use: see bookstore.notebooks

            remote = nbformat.from_dict(current)
        caps = DiffCaps.from_settings(self.settings)
        summary = await run_sync(summarize_cells, base, remote, caps)
        if summary.too_large:
            return NotebookDiff(path, prefix, from_id, to_id, base, remote, None, summary)
        diff = await run_sync(diff_notebooks, base, remote, summary)
        return NotebookDiff(path, prefix, from_id, to_id, base, remote, diff, summary)
