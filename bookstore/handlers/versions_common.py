"""What the version history's API handlers and pages share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyter_server.utils import ensure_async
from nbformat.v4.rwbase import strip_transient

from ..errors import BadRequest, NotANotebook, TooLarge
from ..history import (
    NotebookDiff,
    VersionHistory,
    is_notebook_path,
    validate_prefix,
    validate_version_id,
)
from ..services import ContentsRestore, restore_version
from ..settings import clean_api_path
from .base import require_contents_permission


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
        """Write a version back into ``path`` as a normal save
        (:func:`bookstore.services.restore_version`); the saved model, no content.

        Writes into the Jupyter root, so it needs ``("write", "contents")``. Files other than
        notebooks stream from S3 to disk (see :mod:`.streaming`).
        """
        await require_contents_permission(self, "write")
        target = ContentsRestore(self.contents_manager)
        saved = await restore_version(self.history, path, version_id, prefix, target)
        self.log.info(
            "bookstore: restored %s from %s version %s (save %s)",
            path,
            prefix,
            version_id,
            saved.get("bookstore_save_id"),
        )
        return saved
