"""The gallery of published notebooks.

* ``GET /api/bookstore/published[?owner=][&q=][&limit=][&page_token=]``: one page of the
  notebooks published in the bucket (owner, path, newest version id and time, size, number
  of versions), in key order; ``next_token`` continues it.
* ``GET /bookstore/published`` (same query): the page. Each entry links to clone its newest
  version (the clone landing page) and to its history, and has a "Run this version" button.
  The user's own notebooks link to their history page (``/bookstore/versions/<path>``);
  other users' to the read-only one below.
* ``GET /bookstore/published/history?key=KEY[&page_token=]``: the versions of one published
  notebook of any user the reader may read (``readable_prefixes``), newest first, each with
  View, Clone and "Run this version"; and the reader's own runs of it.
* ``GET /bookstore/published/view?key=KEY&version_id=ID``: one version, read-only.
* ``POST /bookstore/published/run`` (form ``key``, ``version_id``, ``_xsrf``): run that
  published version with ``bookstore run`` (the runs API's subprocess), then back to the
  history page (303). A colleague's notebook runs as ``bookstore run --s3-key KEY`` would:
  its output is archived under the reader's own runs prefix, at the key's path.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlencode

from anyio.to_thread import run_sync
from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from tornado import web

from ..codecs import decode_page_token, encode_page_token
from ..errors import BadRequest, Forbidden, NotANotebook, NotFound, TooManyRequests
from ..gallery import Gallery, GalleryPage, validate_filter, validate_gallery_limit
from ..notebooks import parse_notebook
from ..render import human_size, render_notebook
from ..s3 import S3BadRequest, S3NotFound
from ..times import isoformat
from ..validators import validate_version_id
from .base import BookstoreAPIHandler, require_contents_permission
from .history import BookstorePageHandler

#: Versions shown on one page of a published notebook's history.
HISTORY_PAGE = 50
#: The reader's runs of it shown there.
RUNS_SHOWN = 20


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


class _PublishedPageMixin(_GalleryMixin):
    """URLs and checks shared by the gallery's pages."""

    base_url: str
    page_url: Any

    @property
    def can_run(self) -> bool:
        return "bookstore_runs" in self.settings

    def own_path(self, key: str) -> str | None:
        """The Jupyter path of ``key`` when it is under this user's published prefix."""
        own = self.settings["bookstore_settings"].published + "/"
        return key[len(own) :] if key.startswith(own) and len(key) > len(own) else None

    def history_url(self, key: str) -> str:
        """This user's history page for their own notebooks, the read-only one for others'."""
        own = self.own_path(key)
        if own is not None:
            url: str = self.page_url("versions", own, prefix="published")
            return url
        return self.published_url("history", key=key)

    def published_url(self, route: str, **query: Any) -> str:
        args = {k: v for k, v in query.items() if v is not None}
        return url_path_join(self.base_url, "bookstore/published", route) + "?" + urlencode(args)

    def clone_url(self, bucket: str, key: str, version_id: str | None) -> str:
        query = {"s3_bucket": bucket, "s3_key": key}
        if version_id:
            query["s3_version_id"] = version_id
        return url_path_join(self.base_url, "bookstore/clone") + "?" + urlencode(query)

    def run_path(self, key: str) -> str:
        """The Jupyter path a run of ``key`` is archived as (as ``bookstore run --s3-key``)."""
        from ..runs import run_key_path

        return run_key_path(self.settings["bookstore_settings"], key)

    def published_key(self, value: Any) -> tuple[str | None, str, str]:
        """(owner, path, key) of a readable published key; 400 / 403 otherwise."""
        if not isinstance(value, str) or not value:
            raise BadRequest("key is missing: give the S3 key of a published notebook")
        parsed = self.gallery.parse_key(value)
        prefix = self.gallery.list_prefix(None)
        if parsed is None or ".." in value.split("/") or "//" in value:
            raise BadRequest(
                f"key {value!r} is not a published notebook: give a key under {prefix!r} "
                "(c.BookstoreSettings.published_prefix), as listed by the gallery"
            )
        reason = self.settings["bookstore_settings"].unreadable_reason(value)
        if reason:
            raise Forbidden(reason)
        return parsed[0], parsed[1], value


class PublishedAPIHandler(_GalleryMixin, BookstoreAPIHandler):
    """``GET /api/bookstore/published``."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        page, _ = await self.requested_page()
        self.set_header("Cache-Control", "no-store")
        self.finish(page.to_json())


class PublishedPageHandler(_PublishedPageMixin, BookstorePageHandler):
    """``GET /bookstore/published``."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        page, query = await self.requested_page()
        here = url_path_join(self.base_url, "bookstore/published")
        entries = []
        for nb in page.notebooks:
            entries.append(
                {
                    "nb": nb,
                    "iso": nb.last_modified.isoformat(),
                    "time": nb.last_modified.strftime("%Y-%m-%d %H:%M UTC"),
                    "size": human_size(nb.size),
                    "clone_url": self.clone_url(page.bucket, nb.key, nb.version_id),
                    "history_url": self.history_url(nb.key),
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
            can_run=self.can_run,
            run_url=url_path_join(self.base_url, "bookstore/published/run"),
        )


class PublishedHistoryPageHandler(_PublishedPageMixin, BookstorePageHandler):
    """``GET /bookstore/published/history?key=KEY``: one published notebook's versions."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        owner, path, key = self.published_key(self.get_query_argument("key", None))
        store = self.settings["bookstore_store"]
        token = self.get_query_argument("page_token", None) or None
        raw = decode_page_token(token, key)
        page = await store.list_versions(key, limit=HISTORY_PAGE, page_token=raw)
        if not page.versions and raw is None:
            raise NotFound(f"{key!r} has no published version in bucket {store.bucket!r}")
        is_notebook = path.endswith(".ipynb")
        versions = [
            {
                "v": v,
                "iso": isoformat(v.last_modified),
                "time": v.last_modified.strftime("%Y-%m-%d %H:%M UTC"),
                "size": human_size(v.size),
                "view_url": self.published_url("view", key=key, version_id=v.version_id),
                "clone_url": self.clone_url(store.bucket, key, v.version_id),
            }
            for v in page.versions
        ]
        here = self.published_url("history", key=key)
        runs = await self._runs(key) if is_notebook and self.can_run else []
        self.render_page(
            "published_history.html",
            title_path=path,
            owner=owner,
            key=key,
            bucket=store.bucket,
            versions=versions,
            runs=runs,
            run_path=self.run_path(key),
            can_run=self.can_run and is_notebook,
            run_url=url_path_join(self.base_url, "bookstore/published/run"),
            started=self.get_query_argument("started", None),
            gallery_url=url_path_join(self.base_url, "bookstore/published"),
            history_url=here,
            first_url=here if raw is not None else None,
            next_url=(
                self.published_url(
                    "history", key=key, page_token=encode_page_token(page.next_token)
                )
                if page.next_token
                else None
            ),
        )

    async def _runs(self, key: str) -> list[dict[str, Any]]:
        """This user's runs of ``key``: the ones running here, then the archived ones."""
        from ..runs import list_runs

        path = self.run_path(key)
        settings, store = self.settings["bookstore_settings"], self.settings["bookstore_store"]
        listing = await list_runs(settings, store, path, limit=RUNS_SHOWN)
        archived = {r["run_id"] for r in listing.runs}
        manager = self.settings["bookstore_runs"]
        here = [r for r in manager.runs_of(path) if r["run_id"] not in archived]
        out = []
        for run in [*here, *listing.runs]:
            output = run.get("output_version_id")
            started = run.get("started") or run.get("last_modified") or ""
            out.append(
                {
                    "run": run,
                    "iso": started,
                    "time": started,
                    "view_url": (
                        self.page_url("versions", path, version_id=output, prefix="runs")
                        if output
                        else None
                    ),
                }
            )
        return out


class PublishedViewPageHandler(_PublishedPageMixin, BookstorePageHandler):
    """``GET /bookstore/published/view?key=KEY&version_id=ID``: one version, read-only."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        await require_contents_permission(self, "read")
        owner, path, key = self.published_key(self.get_query_argument("key", None))
        version_id = validate_version_id(self.get_query_argument("version_id", None))
        store = self.settings["bookstore_store"]
        try:
            got = await store.get_object(key, version_id)
        except (S3NotFound, S3BadRequest) as e:
            raise NotFound(f"version {version_id!r} of {key!r} does not exist") from e
        cells = None
        if path.endswith(".ipynb"):
            nb = await run_sync(parse_notebook, got.body, f"version {version_id} of {key}")
            cells = await run_sync(render_notebook, nb)
        self.render_page(
            "published_view.html",
            title_path=path,
            owner=owner,
            key=key,
            version_id=version_id,
            size=human_size(len(got.body)),
            time=got.last_modified.strftime("%Y-%m-%d %H:%M UTC") if got.last_modified else "—",
            cells=cells,
            can_run=self.can_run and cells is not None,
            run_url=url_path_join(self.base_url, "bookstore/published/run"),
            clone_url=self.clone_url(store.bucket, key, version_id),
            history_url=self.history_url(key),
            gallery_url=url_path_join(self.base_url, "bookstore/published"),
        )


class PublishedRunPageHandler(_PublishedPageMixin, BookstorePageHandler):
    """``POST /bookstore/published/run``: the gallery's "Run this version" button."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        from ..runs import RunError, TooManyRuns, check_kernel, notebook_kernel

        if not self.can_run:
            raise NotFound("runs are not available on this server")
        _owner, path, key = self.published_key(self.get_body_argument("key", None))
        if not path.endswith(".ipynb"):
            raise NotANotebook(f"{path!r} is not a notebook (.ipynb): only notebooks run")
        version_id = validate_version_id(self.get_body_argument("version_id", None))
        settings = self.settings["bookstore_settings"]
        store = self.settings["bookstore_store"]
        try:
            got = await store.get_object(key, version_id)
        except (S3NotFound, S3BadRequest) as e:
            raise NotFound(f"published version {version_id!r} of {key!r} does not exist") from e
        nb = await run_sync(parse_notebook, got.body, f"published version of {key}")
        try:
            kernel = notebook_kernel(nb, None)
            await run_sync(check_kernel, kernel)
        except RunError as e:
            raise NotFound(str(e)) from e
        source = {
            "bucket": settings.s3_bucket,
            "key": key,
            "prefix": "published",
            "version_id": got.version_id,
            "sha256": hashlib.sha256(got.body).hexdigest(),
        }
        own = self.own_path(key)
        try:
            run = await self.settings["bookstore_runs"].start(
                own if own is not None else self.run_path(key), source, {}, kernel
            )
        except TooManyRuns as e:
            raise TooManyRequests(str(e)) from e
        if own is not None:
            back = self.page_url("versions", own, started=run.run_id)
        else:
            back = self.published_url("history", key=key, started=run.run_id)
        self.redirect(back, status=303)


default_handlers: list[tuple[str, Any]] = [
    (r"/api/bookstore/published/?", PublishedAPIHandler),
    (r"/bookstore/published/?", PublishedPageHandler),
    (r"/bookstore/published/history/?", PublishedHistoryPageHandler),
    (r"/bookstore/published/view/?", PublishedViewPageHandler),
    (r"/bookstore/published/run/?", PublishedRunPageHandler),
]
