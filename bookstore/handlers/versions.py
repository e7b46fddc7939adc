"""Version history REST API: list, read, restore and diff archived versions.

* ``GET /api/bookstore/versions/<path>[?prefix=][&limit=][&page_token=]``: one page of
  versions, newest first, pending saves first (``"pending": true``).
  The first workspace page also lists, under ``dropped``, the saves of the path that the
  archiver set aside (S3 refused them for good); a version's ``dropped_saves`` counts the
  saves dropped from a full spool just before it.
* ``GET /api/bookstore/versions/<path>?version_id=ID[&prefix=]``: that version as a
  Jupyter contents model plus its version fields.
* ``POST /api/bookstore/versions/<path>`` ``{"version_id", "prefix"?}``: write that version
  back into the workspace file, as a normal (archived) save; answers the new model.
* ``GET /api/bookstore/diff/<path>?from=ID[&to=ID][&prefix=]``: nbdime diff between two
  versions, or from one version to the current file.

The history page and its forms live in :mod:`bookstore.handlers.history`.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import path_regex
from tornado import web

from ..history import (
    RESTORABLE_PREFIXES,
    HistoryError,
    NotFound,
    VersionListing,
    validate_limit,
    validate_prefix,
    validate_version_id,
)
from ..s3 import S3Error
from .base import BookstoreAPIHandler, require_contents_permission
from .history import page_handlers
from .versions_common import HistoryMixin

#: What the versions listing tells of a set-aside save (the spool's own paths stay private).
DROPPED_FIELDS = ("save_id", "saved_at", "size", "reason", "code", "set_aside_at")


def dropped_saves(archiver: Any, listing: VersionListing) -> list[dict[str, Any]]:
    """The saves of the listed file that the archiver set aside, newest first."""
    if archiver is None or listing.prefix != "workspace":
        return []
    return [
        {k: info.get(k) for k in DROPPED_FIELDS}
        for info in reversed(archiver.set_aside)
        if (info.get("bucket"), info.get("key")) == (listing.bucket, listing.key)
    ]


class VersionsHandler(HistoryMixin, BookstoreAPIHandler):
    """List a path's versions, read one, or restore one."""

    @web.authenticated
    @authorized
    async def get(self, path: str = "") -> None:
        path = self.api_path(path, "/api/bookstore/versions/")
        try:
            prefix = validate_prefix(self.get_query_argument("prefix", None))
            version_id = self.get_query_argument("version_id", None)
            if version_id is not None:
                await require_contents_permission(self, "read")
                model = await self.history.read(path, validate_version_id(version_id), prefix)
                self.finish(json.dumps(model, default=json_default))
                return
            limit = validate_limit(self.get_query_argument("limit", None))
            listing = await self.history.listing(
                path,
                prefix=prefix,
                limit=limit,
                page_token=self.get_query_argument("page_token", None),
            )
        except NotFound as e:
            # No version at all, but saves set aside: the listing says so.
            listing = VersionListing(
                path, prefix, self.history.bucket, self.history.key(path, prefix)
            )
            if not dropped_saves(self.history.archiver, listing):
                raise self.history_error(e) from e
        except (HistoryError, S3Error) as e:
            raise self.history_error(e) from e
        answer = listing.to_json()
        first_page = self.get_query_argument("page_token", None) is None
        answer["dropped"] = dropped_saves(self.history.archiver, listing) if first_page else []
        self.finish(answer)

    @web.authenticated
    @authorized
    async def post(self, path: str = "") -> None:
        path = self.api_path(path, "/api/bookstore/versions/")
        body = self.get_json_object()
        try:
            version_id = validate_version_id(body.get("version_id"))
            prefix = validate_prefix(body.get("prefix"), RESTORABLE_PREFIXES)
            saved = await self.restore(path, version_id, prefix)
        except (HistoryError, S3Error) as e:
            raise self.history_error(e) from e
        self.finish(json.dumps(saved, default=json_default))


class DiffHandler(HistoryMixin, BookstoreAPIHandler):
    """nbdime diff between two versions of a notebook, or a version and the current file."""

    @web.authenticated
    @authorized
    async def get(self, path: str = "") -> None:
        path = self.api_path(path, "/api/bookstore/diff/")
        try:
            asked = await self.requested_diff(path, self.get_query_argument)
        except (HistoryError, S3Error) as e:
            raise self.history_error(e) from e
        self.finish(json.dumps(asked.diff.to_json(), default=json_default))


default_handlers: list[tuple[str, Any]] = [
    (rf"/api/bookstore/versions{path_regex}", VersionsHandler),
    (rf"/api/bookstore/diff{path_regex}", DiffHandler),
    *page_handlers,
]
