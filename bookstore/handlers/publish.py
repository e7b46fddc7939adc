"""``PUT /api/bookstore/publish/<path>``: copy a notebook to the published prefix in S3.

Only ``.ipynb`` paths are accepted (415 otherwise). The body is a contents-API model,
``{"type": "notebook", "content": <nbformat 4>}``. The notebook is validated, serialised
exactly as the archive serialises saves, and written to ``<published_prefix>/<path>`` in
one ``PutObject``; on a versioned bucket every publish of a path is a new version. The
answer keeps the original bookstore's fields (``s3_path``, ``versionID``) and adds
``bucket``, ``key`` and the ``sha256`` of the stored bytes.
"""

from __future__ import annotations

from typing import Any

from anyio.to_thread import run_sync
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import path_regex
from tornado import web

from ..history import is_notebook_path
from ..publisher import publish_bytes
from ..s3 import S3Error
from ..settings import clean_api_path
from .base import BookstoreAPIHandler
from .common import BoundedBodyMixin, check_notebook, notebook_bytes


def _serialise(content: Any) -> bytes:
    return notebook_bytes(check_notebook(content, "the published notebook"))


class BookstorePublishHandler(BoundedBodyMixin, BookstoreAPIHandler):
    """Publish a notebook: validate it, then write it to the published prefix."""

    @web.authenticated
    @authorized
    async def put(self, path: str = "") -> None:
        try:
            path = clean_api_path(path[1:] if path.startswith("/") else path)
        except ValueError as e:
            raise web.HTTPError(
                400, f"give the notebook's path after /api/bookstore/publish/: {e}"
            ) from e
        if not is_notebook_path(path):
            raise web.HTTPError(
                415,
                f"only notebooks can be published: {path!r} does not end in .ipynb; "
                f"give the path of a notebook after /api/bookstore/publish/",
            )
        self.collect_body()
        model = self.get_json_object()
        if model.get("type") != "notebook":
            raise web.HTTPError(
                415,
                f"only notebooks can be published: the body must be a contents model with "
                f'"type": "notebook" (got type {model.get("type")!r})',
            )
        if "content" not in model:
            raise web.HTTPError(422, 'the body has no "content": put the notebook JSON there')
        data = await run_sync(_serialise, model["content"])

        try:
            answer = await publish_bytes(self.store, self.bookstore_settings, path, data)
            gallery = self.settings.get("bookstore_gallery")
            if gallery is not None:
                gallery.invalidate()
        except S3Error as e:
            raise self.s3_http_error(e) from e
        self.log.info(
            "bookstore: published %s to %s (version %s)",
            path,
            answer["s3_path"],
            answer["versionID"],
        )
        self.finish(answer)


default_handlers: list[tuple[str, Any]] = [
    (rf"/api/bookstore/publish{path_regex}", BookstorePublishHandler),
]
