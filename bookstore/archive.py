"""``BookstoreContentsArchiver``: Jupyter's file contents manager, archiving every save to S3.

Set ``c.ServerApp.contents_manager_class = "bookstore.BookstoreContentsArchiver"`` (or
the original's ``c.NotebookApp.contents_manager_class``). Each successful save of a
matching file (``BookstoreSettings.archive_patterns``) is serialised once; the very same
bytes are written to disk and, concurrently, to bookstore's spool, which is committed
before the save returns. The upload to S3 happens in the background (the spool,
:mod:`bookstore.spool`, drained by :mod:`bookstore.uploader`), so S3 never slows a save
and an S3 outage never fails one. What a save carries along on its way through
jupyter_server's save (its stages, extra metadata) lives in :mod:`bookstore.save_context`.
"""

from __future__ import annotations

import asyncio
import os
from base64 import decodebytes
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import nbformat
from anyio.to_thread import run_sync
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupyter_server.utils import to_api_path
from tornado import web
from traitlets import default

from .checkpoints import BookstoreCheckpoints
from .s3 import META_RENAMED_FROM
from .save_context import (
    NOTEBOOK_CONTENT_TYPE,
    archive_metadata,
    content_type,
    current_stages,
    extra_metadata,
    guess_type,
    saving,
)
from .settings import unarchivable_reason
from .spool import utcnow_iso

if TYPE_CHECKING:
    from .history import VersionHistory
    from .spool import Archiver, SpoolEntry

__all__ = ["MAX_NOT_ARCHIVABLE", "BookstoreContentsArchiver", "archive_metadata"]

#: How many paths ``not_archivable`` remembers (the newest ones).
MAX_NOT_ARCHIVABLE = 100


class BookstoreContentsArchiver(AsyncLargeFileManager):
    """A contents manager that archives every save as a new S3 object version."""

    #: Set by the bookstore server extension when it starts; None means "not archiving".
    bookstore_archiver: Archiver | None = None
    #: The extension's version history (its checkpoints use it); set with the archiver.
    bookstore_history: VersionHistory | None = None
    _warned_unarchived = False

    def _archiver_for(self, path: str, model: dict[str, Any]) -> Archiver | None:
        if model.get("type") not in {"notebook", "file"}:
            return None
        archiver = self.bookstore_archiver
        if archiver is None:
            if not self._warned_unarchived:
                self._warned_unarchived = True
                self.log.warning(
                    "bookstore: saves are not archived: the bookstore server extension is not "
                    "loaded (run `jupyter server extension enable bookstore`)"
                )
            return None
        if not archiver.settings.s3_bucket:
            return None
        if not archiver.settings.matches_archive_patterns(path):
            return None
        reason = unarchivable_reason(path)
        if reason is not None:
            self._not_archivable(path, reason)
            return None
        return archiver

    def _not_archivable(self, path: str, reason: str) -> None:
        """Log (once per path) and remember a save that the file name policy keeps out."""
        seen = self.__dict__.setdefault("_unarchivable", OrderedDict())
        if path not in seen:
            self.log.warning("bookstore: %s was saved but not archived: %s", path, reason)
        seen[path] = {"path": path, "reason": reason, "at": utcnow_iso()}
        seen.move_to_end(path)
        while len(seen) > MAX_NOT_ARCHIVABLE:
            seen.popitem(last=False)

    def not_archivable(self) -> list[dict[str, str]]:
        """The latest saves not archived because of their name, newest last (for status)."""
        return list(self.__dict__.get("_unarchivable", {}).values())

    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        path = path.strip("/")
        archiver = self._archiver_for(path, model)
        if archiver is None:
            return await super().save(model, path)
        # Uploads wait until this save (and any that follow at once) has ended.
        with archiver.save_in_flight():
            return await self._archived_save(archiver, model, path)

    async def _archived_save(
        self, archiver: Archiver, model: dict[str, Any], path: str
    ) -> dict[str, Any]:
        chunk = model.get("chunk")
        if chunk is not None:
            result = await super().save(model, path)
            if chunk == -1:  # the last chunk of a large upload: archive the whole file
                await self._archive_existing(archiver, path, result)
            return result

        with saving() as staged:
            try:
                result = await super().save(model, path)
            except BaseException:
                for s in staged:
                    await asyncio.shield(archiver.discard(s))
                raise
        for s in staged:
            try:
                if s.committed:  # queued by write_and_commit: no trip through the loop
                    entry = s.entry
                else:
                    entry = await asyncio.shield(
                        archiver.commit(s, file_unchanged_until_synced=True)
                    )
            except Exception as e:
                self._archive_failed(archiver, path, e)
            else:
                if s.dropped:
                    result["bookstore_archive"] = "dropped: the spool is full (docs/limits.md)"
                elif s.rejection is not None:
                    result["bookstore_archive"] = f"set aside: {s.rejection}"
                else:
                    result["bookstore_save_id"] = entry.save_id
        return result

    @default("checkpoints_class")
    def _bookstore_checkpoints_class_default(self) -> type:
        """Archived files' checkpoints are their S3 versions (:mod:`bookstore.checkpoints`)."""
        return BookstoreCheckpoints

    async def rename_file(self, old_path: str, new_path: str) -> None:
        """Rename, then archive what was renamed at its new path, recording the old path.

        The old path's history stays in S3 untouched; the new path's history starts with
        this version (metadata ``renamed-from``). A renamed directory archives each
        matching file inside it. Archiving never fails the rename.
        """
        if self.bookstore_archiver is not None:
            await self.bookstore_archiver.durable(old_path.strip("/"))
        await super().rename_file(old_path, new_path)
        old_path, new_path = old_path.strip("/"), new_path.strip("/")
        if old_path == new_path or self.bookstore_archiver is None:
            return
        if await run_sync(os.path.isdir, self._get_os_path(new_path)):
            paths = await run_sync(self._files_under, new_path)
        else:
            paths = [new_path]
        for path in paths:
            model = {"type": "notebook" if path.endswith(".ipynb") else "file", "path": path}
            archiver = self._archiver_for(path, model)
            if archiver is None:
                continue
            renamed_from = old_path + path[len(new_path) :]
            await self._archive_existing(
                archiver, path, model, extra={META_RENAMED_FROM: renamed_from}
            )

    async def delete_file(self, path: str) -> None:
        """Delete; first wait until the file's last save is durable in the spool."""
        if self.bookstore_archiver is not None:
            await self.bookstore_archiver.durable(path.strip("/"))
        await super().delete_file(path)

    def _files_under(self, api_dir: str) -> list[str]:
        """API paths of the files below a directory, skipping hidden ones unless allowed."""
        found: list[str] = []
        for root, dirs, files in os.walk(self._get_os_path(api_dir)):
            dirs[:] = sorted(
                d
                for d in dirs
                if d != ".ipynb_checkpoints" and (self.allow_hidden or not d.startswith("."))
            )
            if not self.allow_hidden:
                files = [f for f in files if not f.startswith(".")]
            found.extend(to_api_path(os.path.join(root, f), self.root_dir) for f in sorted(files))
        return found

    async def archive_file(self, path: str, **kwargs: Any) -> SpoolEntry | None:
        """Archive a file written to disk without :meth:`save` (streamed clones, restores).

        As for a save: only paths that are archived, and a failure is logged and shown in
        ``/api/bookstore``, never raised. ``kwargs`` go to :meth:`Archiver.archive`
        (``extra`` metadata). Answers the spool entry, or None when nothing was archived.
        """
        path = path.strip("/")
        model = {"type": "notebook" if path.endswith(".ipynb") else "file", "path": path}
        archiver = self._archiver_for(path, model)
        if archiver is None:
            return None
        return await self._archive_existing(archiver, path, model, **kwargs)

    async def _archive_existing(
        self, archiver: Archiver, path: str, model: dict[str, Any], **kwargs: Any
    ) -> SpoolEntry | None:
        """Archive the file as it is on disk now (large uploads, renames)."""
        try:
            with self.open(self._get_os_path(path), "rb") as f:
                data = await run_sync(f.read)
            return await archiver.archive(path, data, content_type=content_type(model), **kwargs)
        except Exception as e:
            self._archive_failed(archiver, path, e)
            return None

    def _archive_failed(self, archiver: Archiver, path: str, e: BaseException) -> None:
        archiver.last_error = {"message": f"spooling failed: {e}", "path": path, "at": utcnow_iso()}
        self.log.error("bookstore: could not queue %s for archiving: %s", path, e, exc_info=True)

    async def _write_and_stage(
        self, os_path: str, produce: Callable[[], bytes], content_type: str
    ) -> None:
        """Write the bytes ``produce()`` makes to ``os_path`` and, beside it, to the spool.

        One trip to a worker thread for the whole save (:meth:`Archiver.write_and_commit`):
        serialising, hashing, the disk write, the spool stage beside it and its commit.
        """
        staged = current_stages()
        archiver = self.bookstore_archiver
        path = to_api_path(os_path, self.root_dir)
        if archiver is not None:
            await archiver.durable(path)  # the file recovers the previous save until then
        if staged is None or archiver is None:
            await run_sync(lambda: self._write_bytes(os_path, produce()))
            return
        stage, error = await archiver.write_and_commit(
            path,
            produce,
            partial(self._write_bytes, os_path),
            content_type=content_type,
            extra=extra_metadata(),
        )
        if error is not None:
            self._archive_failed(archiver, path, error)
        if stage is not None:
            staged.append(stage)

    def _write_bytes(self, os_path: str, data: bytes) -> None:
        with self.atomic_writing(os_path, text=False) as f:
            f.write(data)

    async def _save_notebook(
        self, os_path: str, nb: Any, capture_validation_error: Any = None
    ) -> None:
        if current_stages() is None:
            return await super()._save_notebook(os_path, nb, capture_validation_error)

        def produce() -> bytes:
            # Exactly what nbformat.write() would put on disk; one copy of a big notebook
            # in memory, not two, while it is written.
            data = nbformat.writes(
                nb, version=nbformat.NO_CONVERT, capture_validation_error=capture_validation_error
            ).encode("utf-8")
            return data if data.endswith(b"\n") else data + b"\n"

        await self._write_and_stage(os_path, produce, NOTEBOOK_CONTENT_TYPE)

    async def _save_file(self, os_path: str, content: Any, format: Any) -> None:
        if current_stages() is None:
            return await super()._save_file(os_path, content, format)
        if format not in {"text", "base64"}:
            raise web.HTTPError(400, "Must specify format of file contents as 'text' or 'base64'")
        try:
            if format == "text":
                bcontent = content.encode("utf8")
            else:
                bcontent = decodebytes(content.encode("ascii"))
        except Exception as e:
            raise web.HTTPError(400, f"Encoding error saving {os_path}: {e}") from e
        await self._write_and_stage(os_path, lambda: bcontent, guess_type(os_path))
