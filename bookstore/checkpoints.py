"""``BookstoreCheckpoints``: Jupyter's checkpoints are the archived S3 versions.

With :class:`bookstore.BookstoreContentsArchiver` as contents manager, every archived file
has one checkpoint per S3 version (plus one per save still in the spool), so "Revert to
Checkpoint" in the classic notebook, Notebook 7 and JupyterLab offers the archived
versions, and "Save and Checkpoint" answers the version its save produced.

The list holds the newest ``BookstoreSettings.max_checkpoints`` versions, oldest first and
newest last, as Jupyter's frontends expect; each save appears once, even while its upload
finishes. The history page and the versions API page through everything.

Checkpoint ids must match Jupyter's ``[\\w-]+``: ``v-<S3 version id>`` (characters other
than letters, digits and ``-`` written ``_xx``) and ``p-<save id>`` for a save not uploaded
yet, which keeps working once it is (the S3 object's ``save-id`` metadata links them).

Restoring a checkpoint is a normal save, so it is archived as a new version. History is
never deleted: deleting a checkpoint of an archived file is refused (403) and deleting or
renaming the file leaves its S3 versions alone. Files that are not archived (no bucket,
``archive_patterns`` not matching, extension not loaded) keep Jupyter's usual local
checkpoints.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from anyio.to_thread import run_sync
from jupyter_server.services.contents.filecheckpoints import AsyncFileCheckpoints
from tornado.web import HTTPError
from traitlets import Bool

from .errors import BookstoreError
from .history import (
    HistoryError,
    VersionHistory,
    checkpoint_id_for_save,
    checkpoint_id_for_version,
    parse_checkpoint_id,
    parse_time,
    save_model,
)
from .s3 import META_SAVE_ID, S3BadRequest, S3Error, S3NotFound
from .save_context import content_type, current_stages
from .services import restore_model

if TYPE_CHECKING:
    from .spool import Archiver, SpoolEntry

#: Id of Jupyter's own (local file) checkpoint.
LOCAL_CHECKPOINT_ID = "checkpoint"


def _model(checkpoint_id: str, when: datetime | None) -> dict[str, Any]:
    return {"id": checkpoint_id, "last_modified": when or datetime.now(timezone.utc)}


@lru_cache(maxsize=4096)
def _pending_checkpoint(save_id: str, saved_at: str) -> tuple[str, datetime | None]:
    """A queued save's checkpoint id and time: during an outage each save lists up to
    ``max_checkpoints`` of them, so each is worked out once."""
    return checkpoint_id_for_save(save_id), parse_time(saved_at)


def _entry_model(entry: SpoolEntry) -> dict[str, Any]:
    return _model(*_pending_checkpoint(entry.save_id, entry.saved_at))


class BookstoreCheckpoints(AsyncFileCheckpoints):
    """Checkpoints backed by S3 object versions for archived files, local files otherwise."""

    newest_first = Bool(
        False,
        help=(
            "List checkpoints newest first. The default, False, lists them oldest first, "
            "newest last, which is what Jupyter's frontends expect: the classic notebook, "
            "Notebook 7 and JupyterLab take the LAST checkpoint of the list as the latest "
            "(the 'Last Checkpoint' time, the preselected 'Revert to checkpoint' target)."
        ),
    ).tag(config=True)

    _own_history: VersionHistory | None = None

    # --- which paths are ours --------------------------------------------------------------

    def _archiver(self, path: str) -> Archiver | None:
        archiver: Archiver | None = getattr(self.parent, "bookstore_archiver", None)
        if archiver is None or not archiver.settings.s3_bucket:
            return None
        if not archiver.settings.should_archive(path):
            return None
        return archiver

    def _history(self, archiver: Archiver) -> VersionHistory:
        """The version history the extension built at start (``history_class``), which the
        contents manager holds; without the extension (a contents manager given its
        archiver directly), one built here once, for that archiver."""
        history: VersionHistory | None = getattr(self.parent, "bookstore_history", None)
        if history is not None and history.archiver is archiver:
            return history
        own = self._own_history
        if own is None or own.archiver is not archiver:
            own = self._own_history = VersionHistory(archiver.settings, archiver.store, archiver)
        return own

    @staticmethod
    def _http_error(e: Exception, doing: str) -> HTTPError:
        status = getattr(e, "status", 500)
        return HTTPError(status, f"{doing}: {e}")

    def _order(self, models: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return models if self.newest_first else list(reversed(models))

    # --- listing -----------------------------------------------------------------------

    async def list_checkpoints(self, path: str) -> list[dict[str, Any]]:
        """The newest ``max_checkpoints`` archived versions of ``path``, each save once.

        Oldest first unless ``newest_first``; saves still in the spool are the newest.
        """
        path = path.strip("/")
        archiver = self._archiver(path)
        if archiver is None:
            return await super().list_checkpoints(path)
        staged = current_stages()
        history = self._history(archiver)
        if staged is not None:
            # jupyter_server asks during a save whether a notebook has a checkpoint: the
            # save being made is one. Answer without S3, so an outage never fails a save,
            # and from the newest saves only: during a long outage thousands may wait.
            limit = archiver.settings.max_checkpoints
            entries = [s.entry for s in reversed(staged)][:limit]
            if len(entries) < limit:
                entries += await history.newest_pending(path, limit - len(entries))
            return self._order([_entry_model(e) for e in entries])
        try:
            models = await self._archived_models(archiver, history, path)
        except S3Error as e:
            raise self._http_error(e, f"listing the archived versions of {path}") from e
        return self._order(models)

    async def _archived_models(
        self, archiver: Archiver, history: VersionHistory, path: str
    ) -> list[dict[str, Any]]:
        """Pending saves then S3 versions, newest first, at most ``max_checkpoints``.

        A save is listed once even while its upload finishes: S3 may already list its
        version while the spool still holds it. The pending saves are read before and
        after the S3 listing (a save uploaded in between is in one or the other), and a
        pending save whose version S3 listed (its ``save-id`` metadata) is left out.
        """
        limit = archiver.settings.max_checkpoints
        key = history.key(path)
        before = await history.pending(path)
        page = await archiver.store.list_versions_cached(key, limit=limit)
        after = await history.pending(path)
        known = {e.save_id for e in after}
        pending = after + [e for e in before if e.save_id not in known]
        pending.sort(key=lambda e: e.save_id, reverse=True)
        if pending and page.versions:
            # Uploads of a path go one at a time, in save order: only the newest versions
            # can be pending saves. Their metadata is cached when this server uploaded them.
            newest = [v.version_id for v in page.versions[: len(pending)]]
            metas = await archiver.store.version_metadata(key, newest)
            uploaded = {m.get(META_SAVE_ID) for m in metas.values()}
            pending = [e for e in pending if e.save_id not in uploaded]
        # The newest are enough: thousands may wait during an outage.
        models = [_entry_model(e) for e in pending[:limit]]
        models += [
            _model(checkpoint_id_for_version(v.version_id), v.last_modified) for v in page.versions
        ]
        return models[:limit]

    # --- create ------------------------------------------------------------------------

    async def create_checkpoint(self, contents_mgr: Any, path: str) -> dict[str, Any]:
        """The version holding the file as it is now; archive it if there is none yet.

        Right after a save that is the save's own spool entry (its upload may still be
        running; the id keeps working after it). Otherwise the latest S3 version if it
        has the same sha256, else the file is archived now.
        """
        path = path.strip("/")
        archiver = self._archiver(path)
        if archiver is None:
            return await super().create_checkpoint(contents_mgr, path)
        try:
            return await self._create(archiver, contents_mgr, path)
        except Exception as e:
            if current_stages() is None:
                if isinstance(e, HTTPError):
                    raise
                raise self._http_error(e, f"creating a checkpoint of {path}") from e
            # Inside a save whose archiving already failed (and was logged): a checkpoint
            # must never fail the save itself. The caller ignores this model.
            self.log.warning("bookstore: no checkpoint for %s: %s", path, e)
            return _model(LOCAL_CHECKPOINT_ID, None)

    async def _create(self, archiver: Archiver, contents_mgr: Any, path: str) -> dict[str, Any]:
        history = self._history(archiver)
        os_path = contents_mgr._get_os_path(path)
        try:
            data = await run_sync(_read_bytes, os_path)
        except FileNotFoundError as e:
            raise HTTPError(404, f"no such file: {path}") from e
        except IsADirectoryError as e:
            raise HTTPError(400, f"{path} is a directory: only files have checkpoints") from e
        sha256 = hashlib.sha256(data).hexdigest()
        pending = await history.pending(path)
        if pending:
            if pending[0].sha256 == sha256:
                return _entry_model(pending[0])
        else:
            try:
                listing = await history.listing(path, limit=1, include_pending=False)
                latest = listing.versions[0]
                if latest.sha256 == sha256 and latest.version_id:
                    return _model(
                        checkpoint_id_for_version(latest.version_id), latest.last_modified
                    )
            except (HistoryError, S3Error) as e:
                # Nothing in S3 yet, or S3 is away: archiving now is right in both cases.
                self.log.debug("bookstore: no latest version of %s to compare with: %s", path, e)
        model_type = "notebook" if path.endswith(".ipynb") else "file"
        entry = await archiver.archive(
            path, data, content_type=content_type({"type": model_type, "path": path})
        )
        self.log.info("bookstore: archived %s for a checkpoint (save %s)", path, entry.save_id)
        return _entry_model(entry)

    # --- restore -----------------------------------------------------------------------

    async def restore_checkpoint(self, contents_mgr: Any, checkpoint_id: str, path: str) -> None:
        """Write the checkpoint's version back into the file, as a normal (archived) save."""
        path = path.strip("/")
        archiver = self._archiver(path)
        if archiver is None or checkpoint_id == LOCAL_CHECKPOINT_ID:
            await super().restore_checkpoint(contents_mgr, checkpoint_id, path)
            return
        try:
            data = await self._checkpoint_bytes(archiver, checkpoint_id, path)
            model = await run_sync(save_model, path, data)
        except (HistoryError, S3Error) as e:
            raise self._http_error(e, f"restoring checkpoint {checkpoint_id} of {path}") from e
        kind, value = parse_checkpoint_id(checkpoint_id)
        restored_from = value if kind == "version" else checkpoint_id
        try:
            await restore_model(contents_mgr, path, model, restored_from=restored_from)
        except BookstoreError as e:
            raise HTTPError(e.status, str(e)) from e
        self.log.info("bookstore: restored %s from checkpoint %s", path, checkpoint_id)

    async def _checkpoint_bytes(self, archiver: Archiver, checkpoint_id: str, path: str) -> bytes:
        """The bytes of one checkpoint, found with as few S3 requests as possible.

        ``v-<version id>``: one GET of that version. ``p-<save id>``: the spool, else the
        newest ``max_checkpoints`` versions (the ones listed as checkpoints), newest first,
        stopping at the first stored before the save was made.
        """
        history = self._history(archiver)
        kind, ident = parse_checkpoint_id(checkpoint_id)
        if kind == "save":
            for entry in await history.pending(path):
                if entry.save_id == ident:
                    try:
                        return await run_sync(archiver.spool.read_data, entry)
                    except (FileNotFoundError, ValueError):
                        break  # uploaded meanwhile (or unreadable): look for it in S3
            version_id = await history.find_save(
                path, ident, within=archiver.settings.max_checkpoints
            )
            if version_id is None:
                raise HTTPError(
                    404,
                    f"checkpoint {checkpoint_id} of {path} does not exist: no such save among "
                    f"its pending saves and newest {archiver.settings.max_checkpoints} versions "
                    f"(older versions can be restored from the history page)",
                )
            ident = version_id
        try:
            got = await archiver.store.get_object(history.key(path), ident)
        except (S3NotFound, S3BadRequest) as e:
            raise HTTPError(404, f"checkpoint {checkpoint_id} of {path} does not exist") from e
        return got.body

    # --- delete and rename: S3 history stays -------------------------------------------------

    async def delete_checkpoint(self, checkpoint_id: str, path: str) -> None:
        path = path.strip("/")
        if self._archiver(path) is None or checkpoint_id == LOCAL_CHECKPOINT_ID:
            await super().delete_checkpoint(checkpoint_id, path)
            return
        raise HTTPError(
            403,
            f"checkpoints of {path} are its archived S3 versions, which bookstore never "
            f"deletes; remove versions with your S3 tools if you really must",
        )

    async def rename_checkpoint(self, checkpoint_id: str, old_path: str, new_path: str) -> None:
        if checkpoint_id == LOCAL_CHECKPOINT_ID:
            await super().rename_checkpoint(checkpoint_id, old_path, new_path)
        # S3 versions stay at the old key: the history of the old path is kept as it was.

    async def rename_all_checkpoints(self, old_path: str, new_path: str) -> None:
        """Move local checkpoints only; the archive at the old path is never touched."""
        for cp in await AsyncFileCheckpoints.list_checkpoints(self, old_path):
            await AsyncFileCheckpoints.rename_checkpoint(self, cp["id"], old_path, new_path)

    async def delete_all_checkpoints(self, path: str) -> None:
        """Delete local checkpoints only; S3 history is never deleted."""
        for cp in await AsyncFileCheckpoints.list_checkpoints(self, path):
            await AsyncFileCheckpoints.delete_checkpoint(self, cp["id"], path)


def _read_bytes(os_path: str) -> bytes:
    with open(os_path, "rb") as f:
        return f.read()


__all__ = ["BookstoreCheckpoints", "restore_model"]
