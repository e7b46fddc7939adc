"""``GET /api/bookstore``: release, feature validity and archiver health."""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from .._version import __version__
from .base import BookstoreAPIHandler


class BookstoreStatusHandler(BookstoreAPIHandler):
    """Reports what this server's bookstore can do and how archiving is going."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        ext = self.settings["bookstore_extension"]
        self.finish(await ext.status())


def status_payload(features: dict[str, bool], archive: dict[str, Any]) -> dict[str, Any]:
    return {"release": __version__, "features": features, "archive": archive}
