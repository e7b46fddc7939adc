"""Shared base for bookstore's API handlers: auth, settings access, JSON errors."""

from __future__ import annotations

import json
import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any, Optional

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.prometheus.log_functions import prometheus_log_method
from jupyter_server.utils import ensure_async
from tornado import httputil, web

from ..s3 import S3Error
from .common import parse_json

if TYPE_CHECKING:
    from ..s3 import S3Store
    from ..settings import BookstoreSettings
    from ..spool import Archiver

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


def s3_log_level(e: S3Error) -> int:
    """A missing object is the user's input (DEBUG); S3 refusing or unreachable is ours."""
    return logging.WARNING if e.status >= 500 else logging.DEBUG


class ClientErrorLogMixin(web.RequestHandler):
    """One log line per client error (4xx), at INFO, saying why; server errors as usual.

    Left alone, tornado and jupyter_server log one rejected request up to three times at
    WARNING (the exception, the written error, the access line): noise for what is usually
    a mistyped key or path. 5xx responses keep jupyter_server's logging.
    """

    _client_error: str = ""

    def log_exception(
        self,
        typ: Optional[type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if isinstance(value, web.HTTPError) and value.status_code < 500:
            self._client_error = value.log_message or value.reason or ""
            return  # logged once, by _log, when the response is finished
        super().log_exception(typ, value, tb)

    def _log(self) -> None:
        status = self.get_status()
        if not 400 <= status < 500:
            super()._log()
            return
        user = getattr(self.current_user, "username", "") or "-"
        self.log.info(  # type: ignore[attr-defined]
            "%d %s %s (%s@%s): %s",
            status,
            self.request.method,
            self.request.path,
            user,
            self.request.remote_ip,
            self._client_error or httputil.responses.get(status, ""),
        )
        prometheus_log_method(self)


class BookstoreAPIHandler(ClientErrorLogMixin, ExtensionHandlerMixin, APIHandler):
    """Base class: reads the shared settings, store and archiver from the extension."""

    auth_resource = AUTH_RESOURCE

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The JSON error of APIHandler; a client error is not logged again here."""
        exc_info = kwargs.get("exc_info")
        e = exc_info[1] if exc_info else None
        if status_code >= 500 or not isinstance(e, web.HTTPError):
            super().write_error(status_code, **kwargs)
            return
        self.set_header("Content-Type", "application/json")
        message = httputil.responses.get(status_code, "Unknown HTTP Error")
        self.finish(json.dumps({"message": e.log_message or message, "reason": e.reason}))

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
        self.log.log(s3_log_level(e), "bookstore: %s", e)
        return web.HTTPError(e.status, str(e))
