"""Shared base for bookstore's handlers: auth, settings access, errors mapped to HTTP once.

Bookstore's code raises :class:`bookstore.errors.BookstoreError` (never tornado's
``HTTPError``); :class:`ClientErrorLogMixin`, a base of every API handler and page, turns
it into the HTTP answer with the status it carries, in one place.
"""

from __future__ import annotations

import json
import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any, Optional

from anyio.to_thread import run_sync
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.prometheus.log_functions import prometheus_log_method
from jupyter_server.utils import ensure_async
from tornado import httputil, web

from ..errors import BadRequest, BookstoreError, Forbidden, S3Error, TooLarge
from .common import parse_json

if TYPE_CHECKING:
    from ..s3 import S3Store
    from ..settings import BookstoreSettings
    from ..spool import Archiver

#: The authorization resource of every bookstore endpoint.
AUTH_RESOURCE = "bookstore"

#: Request bodies up to this size are parsed on the event loop (a thread costs more).
INLINE_JSON_BYTES = 64 * 1024


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
        raise Forbidden(
            f"this needs permission to {verb} the Jupyter root ({action!r} on 'contents'), "
            f"which this user does not have",
        )


def s3_log_level(e: S3Error) -> int:
    """A missing object is the user's input (DEBUG); S3 refusing or unreachable is ours."""
    return logging.WARNING if e.status >= 500 else logging.DEBUG


def to_http_error(e: BookstoreError) -> web.HTTPError:
    """The HTTP error for a bookstore error: its own status, its message as the reason."""
    return web.HTTPError(e.status, str(e))


class ClientErrorLogMixin(web.RequestHandler):
    """Bookstore errors mapped to HTTP; one log line per client error (4xx), at INFO.

    A :class:`~bookstore.errors.BookstoreError` raised anywhere below a handler method
    becomes the HTTP error with its ``status`` and message (an S3 failure is logged first:
    S3's own status never passes through).

    Left alone, tornado and jupyter_server log one rejected request up to three times at
    WARNING (the exception, the written error, the access line): noise for what is usually
    a mistyped key or path. 5xx responses keep jupyter_server's logging.
    """

    _client_error: str = ""

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, BookstoreError):
            if isinstance(e, S3Error):
                self.log.log(s3_log_level(e), "bookstore: %s", e)  # type: ignore[attr-defined]
            try:
                raise to_http_error(e) from e
            except web.HTTPError as mapped:
                super()._handle_request_exception(mapped)
            return
        super()._handle_request_exception(e)

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

    async def get_json_object(self) -> dict[str, Any]:
        """The request body as a JSON object, or 400 saying what is wrong with it.

        A body over :data:`INLINE_JSON_BYTES` is parsed in a thread: a notebook of up to
        ``max_request_body_size`` takes long enough to stall every other request.
        """
        limit = self.bookstore_settings.max_request_body_size
        raw = self.request.body or b"null"
        if len(raw) > limit:
            raise TooLarge(f"request body is larger than {limit} bytes")
        if len(raw) > INLINE_JSON_BYTES:
            body = await run_sync(parse_json, raw)
        else:
            body = parse_json(raw)
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        return body
