"""What the version history's API handlers and pages share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anyio.to_thread import run_sync
from jupyter_server.utils import ensure_async
from nbformat.v4.rwbase import strip_transient

from ..checkpoints import restore_model
from ..errors import BadRequest, NotANotebook, NotFound, TooLarge
from ..history import (
    META_RESTORED_FROM,
    NotebookDiff,
    VersionHistory,
    is_notebook_path,
    save_model,
    validate_prefix,
    validate_version_id,
)
from ..s3 import S3BadRequest, S3NotFound
from ..settings import clean_api_path
from .base import require_contents_permission
from .streaming import discard, download_into_folder, local_os_path, move_into_place


@dataclass
class DiffRequest:
    """What ``?from=ID[&to=ID][&prefix=...]`` asked for, and the diff it gives."""

    prefix: str
    from_id: str
    to_id: str | None
    diff: NotebookDiff


class HistoryMixin:
    """What the API and page handlers share: the history object, paths, error mapping."""

    settings: dict[str, Any]
    contents_manager: Any
    log: Any

    @property
    def history(self) -> VersionHistory:
        """The server's version history, built once by the extension."""
        history: VersionHistory = self.settings["bookstore_history"]
        return history

    @staticmethod
    def api_path(path: str, route: str) -> str:
        """The Jupyter path from the URL; 400 saying what is wrong with it."""
        try:
            return clean_api_path(path[1:] if path.startswith("/") else path)
        except ValueError as e:
            raise BadRequest(f"give the file's Jupyter path after {route}: {e}") from e

    async def current_notebook(self, path: str) -> dict[str, Any]:
        """The notebook as it is now (through the contents manager), without trust marks."""
        if not is_notebook_path(path):
            raise NotANotebook(f"{path!r} is not a notebook (.ipynb): only notebooks are diffed")
        cm = self.contents_manager
        limit = self.settings["bookstore_settings"].max_read_bytes
        size = (await ensure_async(cm.get(path, content=False, type="notebook"))).get("size")
        if size is not None and size > limit:
            raise TooLarge(
                f"{path!r} is {size} bytes, over the read limit of {limit} bytes; raise "
                f"c.BookstoreSettings.max_read_bytes to compare it"
            )
        model = await ensure_async(cm.get(path, content=True, type="notebook"))
        nb: dict[str, Any] = strip_transient(model["content"])
        return nb

    async def requested_diff(
        self, path: str, query: Callable[[str, None], str | None]
    ) -> DiffRequest:
        """The diff named by the query (``query`` is ``self.get_query_argument``).

        Without ``to``, the version is compared with the file as it is now. A diff shows
        the file's content, so it needs ``("read", "contents")``.
        Raises :class:`bookstore.errors.BookstoreError`.
        """
        await require_contents_permission(self, "read")
        prefix = validate_prefix(query("prefix", None))
        from_id = validate_version_id(query("from", None), "from")
        to_id = query("to", None)
        if to_id is not None:
            to_id = validate_version_id(to_id, "to")
        current = await self.current_notebook(path) if to_id is None else None
        diff = await self.history.diff(path, from_id, to_id, prefix=prefix, current=current)
        return DiffRequest(prefix, from_id, to_id, diff)

    async def restore(self, path: str, version_id: str, prefix: str) -> dict[str, Any]:
        """Write a version back into ``path`` as a normal save; the saved model, no content.

        Writes into the Jupyter root, so it needs ``("write", "contents")``. Files other than
        notebooks stream from S3 to disk (see :mod:`.streaming`).
        """
        await require_contents_permission(self, "write")
        cm = self.contents_manager
        os_path = None if is_notebook_path(path) else local_os_path(cm, path)
        if os_path is not None and hasattr(cm, "archive_file"):
            saved = await self._restore_streamed(path, os_path, version_id, prefix)
        else:
            data = await self.history.read_bytes(path, version_id, prefix)
            model = await run_sync(save_model, path, data)
            saved = await restore_model(cm, path, model, restored_from=version_id)
        self.log.info(
            "bookstore: restored %s from %s version %s (save %s)",
            path,
            prefix,
            version_id,
            saved.get("bookstore_save_id"),
        )
        return saved

    async def _restore_streamed(
        self, path: str, os_path: str, version_id: str, prefix: str
    ) -> dict[str, Any]:
        cm = self.contents_manager
        directory = path.rpartition("/")[0]
        if directory and not await ensure_async(cm.dir_exists(directory)):
            raise NotFound(f"cannot restore {path}: directory {directory!r} does not exist")
        history = self.history
        validate_version_id(version_id)
        try:
            tmp, _info = await download_into_folder(
                history.store, history.key(path, prefix), os_path, version_id
            )
        except (S3NotFound, S3BadRequest) as e:
            raise NotFound(
                f"version {version_id!r} of {path!r} does not exist under the {prefix} prefix"
            ) from e
        try:
            await move_into_place(tmp, os_path)
        except BaseException:
            await discard(tmp)
            raise
        entry = await cm.archive_file(path, extra={META_RESTORED_FROM: version_id})
        saved = dict(await ensure_async(cm.get(path, content=False)))
        if entry is not None:
            saved["bookstore_save_id"] = entry.save_id
        return saved
