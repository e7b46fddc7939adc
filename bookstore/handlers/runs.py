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

from ..errors import BadRequest
from ..history import contents_model, validate_limit, validate_version_id
from ..runs import RunManager, list_runs, run_from_metadata
from ..services import runnable_path, start_run
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
        return runnable_path(path)

    async def start_run(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Start a run of ``path`` as :func:`bookstore.services.start_run` does; the 202
        answer. ``body`` holds ``version_id``, ``parameters`` and ``kernel``, all optional."""
        unknown = set(body) - {"version_id", "parameters", "kernel"}
        if unknown:
            raise BadRequest(
                f"unknown field(s) {', '.join(sorted(unknown))}: give version_id, "
                f"parameters and kernel",
            )
        return await start_run(
            self.run_manager,
            self.settings["bookstore_settings"],
            self.settings["bookstore_store"],
            path,
            version_id=body.get("version_id"),
            parameters=body.get("parameters"),
            kernel=body.get("kernel"),
        )


class RunsHandler(RunsMixin, BookstoreAPIHandler):
    """List a notebook's runs, read one output, or start a run."""

    @web.authenticated
    @authorized
    async def get(self, path: str = "") -> None:
        path = self.notebook_path(self.api_path(path, "/api/bookstore/runs/"))
        version_id = self.get_query_argument("version_id", None)
        if version_id is not None:
            record, result = await self.history.record(
                path, validate_version_id(version_id), "runs"
            )
            model = await run_sync(contents_model, path, result.body, record, result.content_type)
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
        body = await self.get_json_object() if self.request.body else {}
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
            raise BadRequest("give the published version to run (version_id)")
        answer = await self.start_run(path, {"version_id": version_id})
        self.redirect(self.page_url("versions", path, started=answer["run_id"]), status=303)


default_handlers: list[tuple[str, Any]] = [
    (rf"/api/bookstore/runs{path_regex}", RunsHandler),
    (rf"/bookstore/runs{path_regex}", RunPageHandler),
]
