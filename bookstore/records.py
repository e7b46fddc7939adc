"""Records of versions: one version, one page of a listing, one version as a contents model."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .codecs import checkpoint_id_for_save, checkpoint_id_for_version
from .metadata import (
    META_DROPPED_SAVES,
    META_RENAMED_FROM,
    META_RESTORED_FROM,
    META_SAVE_ID,
    META_SAVED_AT,
    META_SHA256,
    META_USER,
)
from .notebooks import file_content, is_notebook_path, parse_notebook
from .times import isoformat, parse_time

if TYPE_CHECKING:
    from .s3 import ObjectVersion
    from .spool import SpoolEntry


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
