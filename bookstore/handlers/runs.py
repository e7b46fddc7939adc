"""Runs from Jupyter: list a notebook's runs, read one output, start a run.

* ``GET /api/bookstore/runs/<path>[?limit=&page_token=]``: runs newest first (running
  ones on this server first), paged like the versions API.
* ``GET /api/bookstore/runs/<path>?version_id=ID``: one run's output notebook.
* ``POST /api/bookstore/runs/<path>`` ``{"version_id"?, "parameters"?, "kernel"?}``: start
  ``bookstore run`` on a published version as a subprocess; 202 with the run id.
* ``POST /bookstore/runs/<path>`` (form ``version_id``, ``_xsrf``): the history page's
  "Run this version" button; back to the history page (303).
"""

from __future__ import annotations

import json
from typing import Any

from anyio.to_thread import run_sync
from jupyter_client.jsonutil import json_default
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import path_regex
from tornado import web

from ..history import (
    HistoryError,
    contents_model,
    is_notebook_path,
    parse_notebook,
    validate_limit,
    validate_version_id,
)
from ..runs import (
    RunError,
    RunManager,
    TooManyRuns,
    check_kernel,
    check_kernel_name,
    check_parameters,
    isoformat,
    list_runs,
    notebook_kernel,
    run_from_metadata,
)
from ..s3 import S3BadRequest, S3Error, S3NotFound
from .base import BookstoreAPIHandler
from .history import BookstorePageHandler
from .versions_common import HistoryMixin


class RunsMixin(HistoryMixin):
    """Starting a run, shared by the API and the history page's form."""

    @property
    def run_manager(self) -> RunManager:
        return self.settings["bookstore_runs"]

    @staticmethod
    def notebook_path(path: str) -> str:
        if not is_notebook_path(path):
            raise web.HTTPError(415, f"{path!r} is not a notebook (.ipynb): only notebooks run")
        return path

    async def start_run(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Check the request, resolve the published version, start it; the 202 answer."""
        settings = self.settings["bookstore_settings"]
        store = self.settings["bookstore_store"]
        try:
            version_id = body.get("version_id")
            version_id = None if version_id in (None, "") else validate_version_id(version_id)
            parameters = check_parameters(body.get("parameters"))
            kernel = check_kernel_name(body.get("kernel"))
        except (HistoryError, RunError) as e:
            raise web.HTTPError(400, str(e)) from e
        unknown = set(body) - {"version_id", "parameters", "kernel"}
        if unknown:
            raise web.HTTPError(
                400,
                f"unknown field(s) {', '.join(sorted(unknown))}: give version_id, "
                f"parameters and kernel",
            )
        key = settings.s3_key("published", path)
        reason = settings.unreadable_reason(key)
        if reason:
            raise web.HTTPError(403, reason)
        try:
            got = await store.get_object(key, version_id)
        except (S3NotFound, S3BadRequest) as e:
            if version_id:
                raise web.HTTPError(
                    404, f"published version {version_id!r} of {path!r} does not exist"
                ) from e
            raise web.HTTPError(
                404,
                f"{path!r} has no published version (s3://{settings.s3_bucket}/{key}): "
                f"publish it first",
            ) from e
        except S3Error as e:
            raise self.history_error(e) from e
        nb = await run_sync(parse_notebook, got.body, f"published version of {path}")
        try:
            kernel = notebook_kernel(nb, kernel)
            await run_sync(check_kernel, kernel)
        except RunError as e:
            raise web.HTTPError(404, str(e)) from e
        import hashlib

        source = {
            "bucket": settings.s3_bucket,
            "key": key,
            "prefix": "published",
            "version_id": got.version_id,
            "sha256": hashlib.sha256(got.body).hexdigest(),
        }
        try:
            run = await self.run_manager.start(path, source, parameters, kernel)
        except TooManyRuns as e:
            raise web.HTTPError(429, str(e)) from e
        return {
            "run_id": run.run_id,
            "path": path,
            "status": run.status,
            "source_version_id": got.version_id,
            "kernel": kernel,
            "parameters": parameters,
            "started": isoformat(run.started),
        }


class RunsHandler(RunsMixin, BookstoreAPIHandler):
    """List a notebook's runs, read one output, or start a run."""

    @web.authenticated
    @authorized
    async def get(self, path: str = "") -> None:
        path = self.notebook_path(self.api_path(path, "/api/bookstore/runs/"))
        try:
            version_id = self.get_query_argument("version_id", None)
            if version_id is not None:
                record, result = await self.history.record(
                    path, validate_version_id(version_id), "runs"
                )
                model = await run_sync(
                    contents_model, path, result.body, record, result.content_type
                )
                model["run"] = run_from_metadata(
                    path, record.version_id, record.last_modified, record.size, result.metadata
                )
                self.finish(json.dumps(model, default=json_default))
                return
            limit = validate_limit(self.get_query_argument("limit", None))
            token = self.get_query_argument("page_token", None)
            listing = await list_runs(
                self.bookstore_settings, self.store, path, limit=limit, page_token=token
            )
        except (HistoryError, S3Error) as e:
            raise self.history_error(e) from e
        data = listing.to_json()
        if not token:
            archived = {r["run_id"] for r in listing.runs}
            here = [r for r in self.run_manager.runs_of(path) if r["run_id"] not in archived]
            data["runs"] = here + data["runs"]
        self.finish(json.dumps(data, default=json_default))

    @web.authenticated
    @authorized
    async def post(self, path: str = "") -> None:
        path = self.notebook_path(self.api_path(path, "/api/bookstore/runs/"))
        body = self.get_json_object() if self.request.body else {}
        answer = await self.start_run(path, body)
        self.set_status(202)
        self.finish(json.dumps(answer))


class RunPageHandler(RunsMixin, BookstorePageHandler):
    """The history page's "Run this version" form."""

    @web.authenticated
    @authorized
    async def post(self, path: str = "") -> None:
        path = self.notebook_path(self.api_path(path, "/bookstore/runs/"))
        version_id = self.get_body_argument("version_id", None)
        if not version_id:
            raise web.HTTPError(400, "give the published version to run (version_id)")
        answer = await self.start_run(path, {"version_id": version_id})
        self.redirect(self.page_url("versions", path, started=answer["run_id"]), status=303)


default_handlers: list[tuple[str, Any]] = [
    (rf"/api/bookstore/runs{path_regex}", RunsHandler),
    (rf"/bookstore/runs{path_regex}", RunPageHandler),
]
