"""Shared base for bookstore's API handlers: auth, settings access, JSON errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import ensure_async
from tornado import web

from ..s3 import S3Error
from .common import parse_json

if TYPE_CHECKING:
    from ..archiver import Archiver
    from ..s3 import S3Store
    from ..settings import BookstoreSettings

#: The authorization resource of every bookstore endpoint.
AUTH_RESOURCE = "bookstore"


async def require_contents_permission(handler: Any, action: str) -> None:
    """403 unless the user may also ``action`` (``read``/``write``) Jupyter's contents.

    Bookstore's endpoints are authorized on the ``bookstore`` resource. Those that write
    a file into the Jupyter root (clone, fs-clone, restore) or show a file's content
    (a version, a diff) are doors into the contents too, so they also need what the
    contents API would need.
    """
    allowed = await ensure_async(
        handler.authorizer.is_authorized(handler, handler.current_user, action, "contents")
    )
    if not allowed:
        verb = "write files into" if action == "write" else "read files of"
        raise web.HTTPError(
            403,
            f"this needs permission to {verb} the Jupyter root ({action!r} on 'contents'), "
            f"which this user does not have",
        )


class BookstoreAPIHandler(ExtensionHandlerMixin, APIHandler):
    """Base class: reads the shared settings, store and archiver from the extension."""

    auth_resource = AUTH_RESOURCE

    @property
    def bookstore_settings(self) -> BookstoreSettings:
        return self.settings["bookstore_settings"]

    @property
    def store(self) -> S3Store:
        return self.settings["bookstore_store"]

    @property
    def archiver(self) -> Archiver:
        return self.settings["bookstore_archiver"]

    def get_json_object(self) -> dict[str, Any]:
        """The request body as a JSON object, or 400 saying what is wrong with it."""
        limit = self.bookstore_settings.max_request_body_size
        if len(self.request.body or b"") > limit:
            raise web.HTTPError(413, f"request body is larger than {limit} bytes")
        body = parse_json(self.request.body or b"null")
        if not isinstance(body, dict):
            raise web.HTTPError(400, "request body must be a JSON object")
        return body

    def s3_http_error(self, e: S3Error) -> web.HTTPError:
        """Our own status for an S3 failure; S3's status is never passed through."""
        self.log.warning("bookstore: %s", e)
        return web.HTTPError(e.status, str(e))
