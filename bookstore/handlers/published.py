"""The gallery of published notebooks.

* ``GET /api/bookstore/published[?owner=][&q=][&limit=][&page_token=]``: one page of the
  notebooks published in the bucket (owner, path, newest version id and time, size, number
  of versions), in key order; ``next_token`` continues it.
* ``GET /bookstore/published`` (same query): the page, with links to clone each notebook
  (the clone landing page) and to the history of the user's own published notebooks.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from tornado import web

from ..gallery import Gallery, GalleryPage, validate_filter, validate_gallery_limit
from ..history import HistoryError
from ..render import human_size
from ..s3 import S3Error
from .base import BookstoreAPIHandler
from .history import BookstorePageHandler


class _GalleryMixin:
    settings: dict[str, Any]
    get_query_argument: Any

    @property
    def gallery(self) -> Gallery:
        gallery: Gallery = self.settings["bookstore_gallery"]
        return gallery

    async def requested_page(self) -> tuple[GalleryPage, dict[str, Any]]:
        owner = validate_filter(self.get_query_argument("owner", None), "owner")
        q = validate_filter(self.get_query_argument("q", None), "q")
        limit = validate_gallery_limit(self.get_query_argument("limit", None))
        token = self.get_query_argument("page_token", None) or None
        page = await self.gallery.page(owner=owner, q=q, limit=limit, page_token=token)
        return page, {"owner": owner, "q": q, "limit": limit}


class PublishedAPIHandler(_GalleryMixin, BookstoreAPIHandler):
    """``GET /api/bookstore/published``."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        try:
            page, _ = await self.requested_page()
        except HistoryError as e:
            raise web.HTTPError(e.status, str(e)) from e
        except S3Error as e:
            raise self.s3_http_error(e) from e
        self.set_header("Cache-Control", "no-store")
        self.finish(page.to_json())


class PublishedPageHandler(_GalleryMixin, BookstorePageHandler):
    """``GET /bookstore/published``."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        try:
            page, query = await self.requested_page()
        except (HistoryError, S3Error) as e:
            raise self.page_error(e) from e
        settings = self.settings["bookstore_settings"]
        own_published = settings.published + "/"
        here = url_path_join(self.base_url, "bookstore/published")
        entries = []
        for nb in page.notebooks:
            clone = urlencode(
                {"s3_bucket": page.bucket, "s3_key": nb.key, "s3_version_id": nb.version_id}
            )
            history_url = None
            if nb.key.startswith(own_published):
                rel = nb.key[len(own_published) :]
                history_url = self.page_url("versions", rel, prefix="published")
            entries.append(
                {
                    "nb": nb,
                    "iso": nb.last_modified.isoformat(),
                    "time": nb.last_modified.strftime("%Y-%m-%d %H:%M UTC"),
                    "size": human_size(nb.size),
                    "clone_url": url_path_join(self.base_url, "bookstore/clone") + "?" + clone,
                    "history_url": history_url,
                }
            )
        filters = {k: v for k, v in query.items() if k in ("owner", "q") and v}
        next_url = None
        if page.next_token:
            args = {**filters, "page_token": page.next_token}
            if query["limit"] != 50:
                args["limit"] = query["limit"]
            next_url = f"{here}?{urlencode(args)}"
        self.render_page(
            "published.html",
            path="Published notebooks",
            history_url=here,
            bucket=page.bucket,
            entries=entries,
            owner=query["owner"] or "",
            q=query["q"] or "",
            filtered=bool(filters),
            paged=bool(self.get_query_argument("page_token", None)),
            first_url=f"{here}?{urlencode(filters)}" if filters else here,
            next_url=next_url,
        )


default_handlers: list[tuple[str, Any]] = [
    (r"/api/bookstore/published/?", PublishedAPIHandler),
    (r"/bookstore/published/?", PublishedPageHandler),
]
