"""Version history of a Jupyter path: list, read, compare and restore archived versions.

One :class:`VersionHistory` serves the REST handlers, the history page, Jupyter's
checkpoints and the command line; nothing here knows about HTTP. Failures are raised as

* :class:`HistoryError` (``.status`` says which HTTP status fits)

  * :class:`BadRequest` (400): malformed version id, prefix, limit or page token
  * :class:`Forbidden` (403): outside ``BookstoreSettings.readable_prefixes``
  * :class:`NotFound` (404): no such path, version or save
  * :class:`NotANotebook` (415): a notebook operation on another kind of file
  * :class:`InvalidNotebook` (422): stored bytes that do not parse as a notebook
  * :class:`TooLarge` (413): a file over ``max_read_bytes``

* and :class:`bookstore.s3.S3Error` for S3 failures, unchanged (among them
  :class:`bookstore.s3.ObjectTooLarge`, 413, for a version over ``max_read_bytes``).

Versions are immutable, so everything known about one (its metadata, found with a HEAD
request) is cached by :class:`bookstore.s3.S3Store`. Saves still waiting in the spool are
listed before the S3 versions, marked ``pending``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

import nbformat
from anyio.to_thread import run_sync

from .s3 import (
    META_DROPPED_SAVES,
    META_RENAMED_FROM,
    META_SAVE_ID,
    META_SAVED_AT,
    META_SHA256,
    META_USER,
    GetResult,
    ObjectVersion,
    S3BadRequest,
    S3NotFound,
)
from .spool import SpoolEntry, scan_entries, spool_candidates

if TYPE_CHECKING:
    from .s3 import S3Store
    from .settings import BookstoreSettings
    from .spool import Archiver

#: Metadata recorded on a version written by a restore (the version it came from).
META_RESTORED_FROM = "restored-from"

PREFIXES = ("workspace", "published", "runs")
#: Prefixes whose versions can be restored into the workspace file.
RESTORABLE_PREFIXES = ("workspace", "published")

#: S3 version ids are opaque, URL-ready strings of at most 1,024 bytes. AWS uses letters,
#: digits and ``._`` (its documentation also shows ``+`` and ``/``); moto uses UUIDs and
#: SeaweedFS 32 hex digits. ``null`` is the id of objects written before versioning.
VERSION_ID_RE = re.compile(r"^[A-Za-z0-9._+/=-]{1,1024}$")

#: Ids of the spool's save entries (:func:`bookstore.spool.new_save_id`).
SAVE_ID_RE = re.compile(r"^[0-9]{20}-[0-9a-f]{6}$")

#: Jupyter's checkpoint ids must match ``[\w-]+``; ours are ``v-<escaped S3 version id>``
#: for uploaded versions and ``p-<save id>`` for saves still in the spool.
CHECKPOINT_VERSION = "v-"
CHECKPOINT_PENDING = "p-"
_CHECKPOINT_SAFE = re.compile(r"[A-Za-z0-9-]")
_CHECKPOINT_ENCODED = re.compile(r"^(?:[A-Za-z0-9-]|_[0-9a-f]{2})+$")
_CHECKPOINT_TOKEN = re.compile(r"_([0-9a-f]{2})|[A-Za-z0-9-]")

MAX_LIMIT = 1000

#: S3 refuses signed requests from a clock more than 15 minutes off, so a version uploaded
#: after a save is never dated more than this before the save (by the saving server's clock).
MAX_CLOCK_SKEW = timedelta(minutes=15)


class HistoryError(Exception):
    """A request about history that cannot be served; ``status`` is the HTTP status."""

    status = 400


class BadRequest(HistoryError, ValueError):
    status = 400


class Forbidden(HistoryError, PermissionError):
    status = 403


class NotFound(HistoryError):
    status = 404


class NotANotebook(HistoryError):
    status = 415


class InvalidNotebook(HistoryError):
    status = 422


class TooLarge(HistoryError):
    status = 413


# --- argument checks ----------------------------------------------------------------------


def validate_version_id(value: Any, name: str = "version_id") -> str:
    """Return ``value`` if it can be an S3 version id, else raise :class:`BadRequest`."""
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} is missing: give an S3 version id from the versions listing")
    if not VERSION_ID_RE.match(value):
        hint = " (percent-encode '+' as %2B in URLs)" if " " in value else ""
        raise BadRequest(
            f"{name} {value[:80]!r} is not a valid S3 version id: expected up to 1024 "
            f"letters, digits or ._+/=- characters{hint}"
        )
    return value


def validate_prefix(value: Any, allowed: tuple[str, ...] = PREFIXES) -> str:
    """``workspace`` (the default), ``published`` or ``runs`` (or one of ``allowed``)."""
    if value in (None, ""):
        return "workspace"
    if value not in allowed:
        names = ", ".join(repr(p) for p in allowed[:-1]) + f" or {allowed[-1]!r}"
        raise BadRequest(f"prefix must be {names} (got {value!r})")
    return str(value)


def validate_limit(value: Any, default: int = MAX_LIMIT) -> int:
    """A page size between 1 and 1000."""
    if value in (None, ""):
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise BadRequest(
            f"limit must be an integer from 1 to {MAX_LIMIT} (got {value!r})"
        ) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be from 1 to {MAX_LIMIT} (got {limit})")
    return limit


def encode_page_token(raw: str | None) -> str | None:
    """The store's page token as an opaque, URL-safe string."""
    if raw is None:
        return None
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode_page_token(token: str | None, key: str) -> str | None:
    """Undo :func:`encode_page_token`; the token must come from a listing of ``key``."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if raw.partition("\n")[0] != key:
        raise BadRequest(
            "page_token is not a next_token of this listing: pass back the next_token of "
            "the previous page unchanged"
        )
    return raw


# --- checkpoint ids -----------------------------------------------------------------------


def checkpoint_id_for_version(version_id: str) -> str:
    """A Jupyter checkpoint id (``[\\w-]+``) for an S3 version id, reversibly.

    Letters, digits and ``-`` are kept (moto's and SeaweedFS's ids stay readable); every
    other byte becomes ``_xx`` (hex).
    """
    out = []
    for ch in version_id:
        if _CHECKPOINT_SAFE.match(ch):
            out.append(ch)
        else:
            out.extend(f"_{b:02x}" for b in ch.encode("utf-8"))
    return CHECKPOINT_VERSION + "".join(out)


def checkpoint_id_for_save(save_id: str) -> str:
    """The checkpoint id of a save still in the spool."""
    return CHECKPOINT_PENDING + save_id


def save_time(save_id: str) -> datetime | None:
    """When a save was made, from its id (:func:`bookstore.spool.new_save_id`), or None."""
    if not SAVE_ID_RE.match(save_id):
        return None
    try:
        return datetime.fromtimestamp(int(save_id[:20]) / 1e9, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def parse_checkpoint_id(checkpoint_id: str) -> tuple[str, str]:
    """``("version", s3_version_id)`` or ``("save", save_id)``; BadRequest otherwise."""
    kind, _, rest = checkpoint_id.partition("-")
    if kind + "-" == CHECKPOINT_PENDING and SAVE_ID_RE.match(rest):
        return "save", rest
    if kind + "-" == CHECKPOINT_VERSION and _CHECKPOINT_ENCODED.match(rest):
        raw = bytearray()
        for m in _CHECKPOINT_TOKEN.finditer(rest):
            raw.extend(bytes.fromhex(m.group(1)) if m.group(1) else m.group(0).encode("ascii"))
        try:
            version_id = raw.decode("utf-8")
            return "version", validate_version_id(version_id)
        except (UnicodeDecodeError, BadRequest):
            pass
    raise BadRequest(
        f"{checkpoint_id!r} is not a bookstore checkpoint id: list the checkpoints "
        f"(GET /api/contents/<path>/checkpoints) and use one of their ids"
    )


# --- records --------------------------------------------------------------------------------


def isoformat(value: datetime | str | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, milliseconds precision."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    text = value.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_time(value: str | datetime | None) -> datetime | None:
    """A datetime from an ISO 8601 string (``Z`` allowed), or None."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def dropped_count(value: str | None) -> int:
    """The ``dropped-saves`` metadata as a count (0 when absent or not a count)."""
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


@dataclass
class VersionRecord:
    """One version of a path: an S3 object version, or a save still in the spool."""

    version_id: str | None
    last_modified: datetime | None
    size: int
    is_latest: bool
    sha256: str | None = None
    user: str | None = None
    saved_at: str | None = None
    save_id: str | None = None
    renamed_from: str | None = None
    restored_from: str | None = None
    pending: bool = False
    prefix: str = "workspace"
    #: Pinned with ``bookstore pin`` (never pruned).
    pinned: bool = False
    #: Saves of this path made just before this one and dropped from a full spool.
    dropped_saves: int = 0

    @property
    def checkpoint_id(self) -> str:
        if self.pending or self.version_id is None:
            return checkpoint_id_for_save(self.save_id or "")
        return checkpoint_id_for_version(self.version_id)

    def to_json(self) -> dict[str, Any]:
        """The REST representation (``last_modified`` in ISO 8601)."""
        out: dict[str, Any] = {
            "version_id": self.version_id,
            "last_modified": isoformat(self.last_modified),
            "size": self.size,
            "is_latest": self.is_latest,
            "sha256": self.sha256,
            "user": self.user,
            "saved_at": self.saved_at,
            "save_id": self.save_id,
            "pending": self.pending,
            "pinned": self.pinned,
        }
        if self.renamed_from:
            out["renamed_from"] = self.renamed_from
        if self.restored_from:
            out["restored_from"] = self.restored_from
        if self.dropped_saves:
            out["dropped_saves"] = self.dropped_saves
        return out

    @classmethod
    def from_s3(
        cls, version: ObjectVersion, metadata: dict[str, str] | None, prefix: str
    ) -> VersionRecord:
        meta = metadata or {}
        return cls(
            version_id=version.version_id,
            last_modified=version.last_modified,
            size=version.size,
            is_latest=version.is_latest,
            sha256=meta.get(META_SHA256),
            user=meta.get(META_USER),
            saved_at=meta.get(META_SAVED_AT),
            save_id=meta.get(META_SAVE_ID),
            renamed_from=meta.get(META_RENAMED_FROM),
            restored_from=meta.get(META_RESTORED_FROM),
            prefix=prefix,
            dropped_saves=dropped_count(meta.get(META_DROPPED_SAVES)),
        )

    @classmethod
    def from_entry(cls, entry: SpoolEntry) -> VersionRecord:
        return cls(
            version_id=None,
            last_modified=parse_time(entry.saved_at),
            size=entry.size,
            is_latest=False,
            sha256=entry.sha256,
            user=entry.user,
            saved_at=entry.saved_at,
            save_id=entry.save_id,
            renamed_from=entry.extra.get(META_RENAMED_FROM),
            restored_from=entry.extra.get(META_RESTORED_FROM),
            pending=True,
            dropped_saves=entry.dropped,
        )


@dataclass
class VersionListing:
    """One page of a path's versions, newest first; pending saves first of all."""

    path: str
    prefix: str
    bucket: str
    key: str
    versions: list[VersionRecord] = field(default_factory=list)
    next_token: str | None = None

    @property
    def s3_path(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "prefix": self.prefix,
            "s3_path": self.s3_path,
            "versions": [v.to_json() for v in self.versions],
            "next_token": self.next_token,
        }


def read_pending_entries(spool_dir: str, bucket: str, key: str) -> list[SpoolEntry]:
    """Saves of one key waiting in a spool directory, oldest first, read-only.

    For processes other than the server (the command line): it never changes the spool.
    Reads the siblings (``<spool_dir>-2`` ...) that other servers sharing it use, too.
    Blocking: run it in a thread from async code.
    """
    entries = []
    for directory in spool_candidates(spool_dir):
        for _file, entry in scan_entries(directory):
            if isinstance(entry, SpoolEntry) and entry.bucket == bucket and entry.key == key:
                entries.append(entry)
    entries.sort(key=lambda e: e.save_id)
    return entries


# --- contents models ------------------------------------------------------------------------


def is_notebook_path(path: str) -> bool:
    return path.endswith(".ipynb")


def parse_notebook(data: bytes, what: str, *, validate: bool = True) -> nbformat.NotebookNode:
    """Parse stored notebook bytes (blocking); :class:`InvalidNotebook` if they are not one.

    Schema validation only logs (as Jupyter does when it opens a notebook) and takes most
    of the time on big notebooks: diffs skip it (``validate=False``).
    """
    try:
        if validate:
            return nbformat.reads(data.decode("utf-8"), as_version=4, capture_validation_error={})
        raw = json.loads(data.decode("utf-8"))
        if isinstance(raw, dict) and raw.get("nbformat") == 4:  # what nbformat's reader does
            from nbformat.v4.rwbase import rejoin_lines, strip_transient

            return strip_transient(rejoin_lines(nbformat.from_dict(raw)))
        return nbformat.convert(nbformat.from_dict(raw), 4)
    except Exception as e:  # decoding, JSON and nbformat's own reader errors
        raise InvalidNotebook(f"{what} is not a valid notebook: {e}") from e


def file_content(data: bytes) -> tuple[str, str]:
    """``(content, format)`` of a file as Jupyter's contents API gives it: text or base64."""
    try:
        return data.decode("utf-8"), "text"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def contents_model(
    path: str, data: bytes, record: VersionRecord, content_type: str | None = None
) -> dict[str, Any]:
    """A Jupyter contents model of one stored version, plus its version fields (blocking)."""
    name = posixpath.basename(path)
    when = isoformat(record.last_modified)
    model: dict[str, Any] = {
        "name": name,
        "path": path,
        "last_modified": when,
        "created": when,
        "writable": False,
        "size": len(data),
    }
    what = f"version {record.version_id or record.save_id} of {path}"
    if is_notebook_path(path):
        model.update(
            type="notebook",
            format="json",
            mimetype=None,
            content=parse_notebook(data, what),
        )
    else:
        content, fmt = file_content(data)
        mimetype = content_type or None
        if mimetype in (None, "binary/octet-stream"):
            mimetype = "text/plain" if fmt == "text" else "application/octet-stream"
        model.update(type="file", format=fmt, mimetype=mimetype, content=content)
    model.update(record.to_json())
    model["last_modified"] = when
    return model


def save_model(path: str, data: bytes) -> dict[str, Any]:
    """The model to hand to ``contents_manager.save()`` to write ``data`` at ``path`` (blocking)."""
    if is_notebook_path(path):
        return {"type": "notebook", "content": parse_notebook(data, path)}
    content, fmt = file_content(data)
    return {"type": "file", "format": fmt, "content": content}


# --- the history ----------------------------------------------------------------------------


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
        key = self.key(path)
        if self.archiver is not None:
            entries = self.archiver.pending_entries(self.bucket, key)
        else:
            entries = await run_sync(
                read_pending_entries, self.settings.spool_dir, self.bucket, key
            )
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
            metas, pins = await asyncio.gather(
                self.store.version_metadata(key, ids, on_fetched=on_fetched),
                self.store.pinned_versions(key, ids),
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

    async def record(
        self, path: str, version_id: str, prefix: str = "workspace"
    ) -> tuple[VersionRecord, GetResult]:
        """Read one version: its record (with ``is_latest``) and its bytes."""
        validate_version_id(version_id)
        key = self.read_key(path, prefix)
        got, head, pins = await asyncio.gather(
            self.store.get_object(key, version_id),
            self.store.head_object(key),
            self.store.pinned_versions(key, [version_id]),
            return_exceptions=True,
        )
        # Our own check passed the id's format, so S3 refusing it means it does not know it.
        if isinstance(got, (S3NotFound, S3BadRequest)):
            raise NotFound(
                f"version {version_id!r} of {path!r} does not exist under the {prefix} prefix"
            ) from got
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
        """The stored bytes of one version."""
        _record, result = await self.record(path, version_id, prefix)
        return result.body

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
            remote = nbformat.from_dict(current)
        caps = DiffCaps.from_settings(self.settings)
        summary = await run_sync(summarize_cells, base, remote, caps)
        if summary.too_large:
            return NotebookDiff(path, prefix, from_id, to_id, base, remote, None, summary)
        diff = await run_sync(diff_notebooks, base, remote, summary)
        return NotebookDiff(path, prefix, from_id, to_id, base, remote, diff, summary)


@dataclass
class DiffCaps:
    """How much of two notebooks is diffed cell by cell (``BookstoreSettings.max_diff_*``)."""

    cells: int
    lines: int
    bytes: int

    @classmethod
    def from_settings(cls, settings: BookstoreSettings) -> DiffCaps:
        return cls(settings.max_diff_cells, settings.max_diff_lines, settings.max_diff_bytes)


@dataclass
class DiffSummary:
    """Two notebooks compared cell by cell by hash: cheap (linear) whatever their size.

    ``too_large`` says which cap the notebooks are over (then only this summary is
    given, not nbdime's diff); it is None when they are diffed in full.
    """

    cells_before: int
    cells_after: int
    unchanged: int
    removed: int
    added: int
    metadata_changed: bool
    changed_lines: int
    changed_bytes: int
    too_large: str | None = None
    #: Leading and trailing cells exactly equal in both (left out of nbdime's diff).
    head: int = 0
    tail: int = 0

    @property
    def changed(self) -> int:
        """Cells changed: a modified cell is one removed and one added, and counts once."""
        return max(self.removed, self.added)

    @property
    def message(self) -> str:
        n = self.changed
        text = f"{n} cell{'' if n == 1 else 's'} changed"
        if self.too_large:
            text = f"too large to diff: {text} ({self.too_large})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "cells_before": self.cells_before,
            "cells_after": self.cells_after,
            "cells_unchanged": self.unchanged,
            "cells_removed": self.removed,
            "cells_added": self.added,
            "cells_changed": self.changed,
            "metadata_changed": self.metadata_changed,
            "changed_lines": self.changed_lines,
            "changed_bytes": self.changed_bytes,
            "too_large": self.too_large,
            "message": self.message,
        }


def _cell_fingerprint(cell: dict[str, Any]) -> tuple[str, str, int, int]:
    """``(loose hash, exact hash, lines, bytes)`` of a cell.

    The loose hash ignores the cell id and execution counts (what a reader calls "the
    same cell"); the exact one covers everything (cells nbdime would find equal).
    """
    import hashlib

    outputs = []
    counts = []
    for out in cell.get("outputs") or []:
        if isinstance(out, dict):
            counts.append(out.get("execution_count"))
            out = {k: v for k, v in out.items() if k != "execution_count"}
        outputs.append(out)
    kept = {
        "cell_type": cell.get("cell_type"),
        "source": cell.get("source"),
        "metadata": cell.get("metadata"),
        "outputs": outputs,
        "attachments": cell.get("attachments"),
    }
    text = json.dumps(kept, sort_keys=True, default=str)
    loose = hashlib.sha256(text.encode("utf-8")).hexdigest()
    rest = {k: v for k, v in cell.items() if k not in kept}
    rest["output counts"] = counts
    exact = loose + json.dumps(rest, sort_keys=True, default=str)
    lines = _count_lines(cell.get("source"))
    for out in outputs:
        if isinstance(out, dict):
            lines += _count_lines(out.get("text"))
            data = out.get("data")
            if isinstance(data, dict):
                lines += sum(_count_lines(v) for v in data.values())
    return loose, exact, lines, len(text)


def _count_lines(value: Any) -> int:
    if isinstance(value, list):
        return sum(_count_lines(v) for v in value)
    if isinstance(value, str):
        return value.count("\n") + 1 if value else 0
    return 0


def summarize_cells(base: Any, remote: Any, caps: DiffCaps) -> DiffSummary:
    """Compare two notebooks' cells by hash, and say whether a full diff is within ``caps``.

    Leading and trailing cells that are exactly equal are not diffed (see
    :func:`diff_notebooks`); the cells between them are what a diff costs, so their
    number, lines and bytes are what is capped. Linear in the notebooks' size.
    Blocking: run it in a thread.
    """
    from collections import Counter

    before = [_cell_fingerprint(c) for c in base.get("cells") or []]
    after = [_cell_fingerprint(c) for c in remote.get("cells") or []]
    old, new = Counter(f[0] for f in before), Counter(f[0] for f in after)
    common = old & new
    only_old, only_new = old - common, new - common
    head, tail = _common_ends([f[1] for f in before], [f[1] for f in after])
    middle = before[head : len(before) - tail] + after[head : len(after) - tail]
    cells = max(len(before), len(after)) - head - tail
    lines = sum(f[2] for f in middle)
    nbytes = sum(f[3] for f in middle)
    too_large = None
    if cells > caps.cells:
        too_large = (
            f"{cells} cells to compare, over the limit of {caps.cells} "
            f"(c.BookstoreSettings.max_diff_cells)"
        )
    elif lines > caps.lines:
        too_large = (
            f"{lines} lines to compare, over the limit of {caps.lines} "
            f"(c.BookstoreSettings.max_diff_lines)"
        )
    elif nbytes > caps.bytes:
        too_large = (
            f"{nbytes} bytes to compare, over the limit of {caps.bytes} "
            f"(c.BookstoreSettings.max_diff_bytes)"
        )
    return DiffSummary(
        cells_before=len(before),
        cells_after=len(after),
        unchanged=sum(common.values()),
        removed=sum(only_old.values()),
        added=sum(only_new.values()),
        metadata_changed=(base.get("metadata") or {}) != (remote.get("metadata") or {}),
        changed_lines=lines,
        changed_bytes=nbytes,
        too_large=too_large,
        head=head,
        tail=tail,
    )


def _common_ends(a: list[str], b: list[str]) -> tuple[int, int]:
    """How many leading and trailing items ``a`` and ``b`` share (not overlapping)."""
    n = min(len(a), len(b))
    head = 0
    while head < n and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < n - head and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
        tail += 1
    return head, tail


@dataclass
class NotebookDiff:
    """Two notebooks and nbdime's diff between them, or only a summary when too large."""

    path: str
    prefix: str
    from_id: str
    to_id: str | None
    base: Any
    remote: Any
    #: nbdime's diff; None when the notebooks are over a cap (see ``summary.too_large``).
    diff: list[dict[str, Any]] | None
    summary: DiffSummary

    @property
    def too_large(self) -> bool:
        return self.diff is None

    def to_json(self) -> dict[str, Any]:
        """``{"base", "diff"}`` as nbdime's own server answers, plus what was compared.

        Over a cap, ``base`` and ``diff`` are null and ``summary`` says what changed.
        """
        return {
            "path": self.path,
            "prefix": self.prefix,
            "from": self.from_id,
            "to": self.to_id,
            "base": None if self.too_large else self.base,
            "diff": self.diff,
            "summary": self.summary.to_json(),
        }


def diff_notebooks(
    base: Any, remote: Any, summary: DiffSummary | None = None
) -> list[dict[str, Any]]:
    """nbdime's diff of two notebooks, as plain JSON-ready data (blocking).

    nbdime's cell matching costs time quadratic in the number of cells, so the leading
    and trailing cells that are exactly equal (``summary.head`` and ``.tail``, from
    :func:`summarize_cells`) are left out of what it compares, and the cell indices of its
    answer are shifted back: the diff is the same, on the whole ``base``.
    """
    import nbdime

    if summary is None:
        summary = summarize_cells(base, remote, DiffCaps(0, 0, 0))
    head, tail = summary.head, summary.tail
    if head or tail:
        b_cells, r_cells = list(base.get("cells") or []), list(remote.get("cells") or [])
        base = nbformat.from_dict({**base, "cells": b_cells[head : len(b_cells) - tail]})
        remote = nbformat.from_dict({**remote, "cells": r_cells[head : len(r_cells) - tail]})
    diff: list[dict[str, Any]] = json.loads(json.dumps(nbdime.diff_notebooks(base, remote)))
    if head:
        for entry in diff:
            if entry.get("key") == "cells" and entry.get("op") == "patch":
                for op in entry.get("diff") or []:
                    op["key"] = int(op["key"]) + head
    return diff
