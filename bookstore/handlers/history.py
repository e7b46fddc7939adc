"""The history page: a timeline of a file's workspace and published versions.

* ``GET /bookstore/versions/<path>``: the timeline (time, size, who saved, sha256) with,
  for each version, links to view it, diff it against the previous or the current
  version, clone it as a new file, and a restore button.
* ``GET /bookstore/versions/<path>?version_id=ID[&prefix=]``: one version, read-only.
* ``POST /bookstore/versions/<path>`` (form: ``version_id``, ``prefix``, ``_xsrf``):
  restore that version, then back to the timeline (303).
* ``GET /bookstore/diff/<path>?from=ID[&to=ID][&prefix=]``: the diff, cell by cell.

Pages are rendered on the server from ``bookstore/templates/versions*.html``; notebook
contents are untrusted and rendered as text (see :mod:`bookstore.render`), and the pages
carry a Content-Security-Policy that allows no inline script.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from anyio.to_thread import run_sync
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler, path_regex
from jupyter_server.extension.handler import ExtensionHandlerJinjaMixin, ExtensionHandlerMixin
from jupyter_server.utils import url_escape, url_path_join
from tornado import web

from ..codecs import store_token
from ..history import (
    MAX_LIMIT,
    RESTORABLE_PREFIXES,
    NotFound,
    VersionListing,
    VersionRecord,
    decode_page_token,
    encode_page_token,
    file_content,
    is_notebook_path,
    isoformat,
    parse_notebook,
    validate_limit,
    validate_prefix,
    validate_version_id,
)
from ..render import (
    MAX_FILE_TEXT,
    cell_changes,
    cut_text,
    human_size,
    metadata_changed,
    render_notebook,
)
from ..s3 import gather_or_cancel
from ..times import human_time as format_time
from .base import AUTH_RESOURCE, ClientErrorLogMixin, require_contents_permission
from .frontend import frontend_links
from .versions_common import HistoryMixin

#: Versions per prefix shown on one page of the timeline.
PAGE_SIZE = 50

#: Stricter than Jupyter's default: no inline script, no plugins, no fetches, and images
#: from ``data:`` URIs only, so nothing in a version makes the viewer's browser send a
#: request (the Jupyter logo is inlined as one too).
PAGE_CSP = (
    "default-src 'none'; img-src data:; style-src 'self'; script-src 'self'; "
    "connect-src 'none'; form-action 'self'; base-uri 'none'"
)


def _human_iso(value: str | None) -> str:
    """``2024-05-01 14:03:22 UTC`` from an ISO 8601 time."""
    return format_time(value, " UTC", empty="—")


@lru_cache(maxsize=1)
def jupyter_logo_data_uri() -> str | None:
    """Jupyter's logo as a ``data:`` URI (the pages allow no other images), if installed."""
    try:
        data = (resources.files("jupyter_server") / "static/logo/logo.png").read_bytes()
    except OSError:
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def human_time(record: VersionRecord) -> str:
    """``2024-05-01 14:03:22 UTC``."""
    return format_time(record.last_modified, " UTC", empty="—")


class BookstorePageHandler(
    ClientErrorLogMixin,
    HistoryMixin,
    ExtensionHandlerJinjaMixin,
    ExtensionHandlerMixin,
    JupyterHandler,
):
    """Base of bookstore's HTML pages: templates, CSP, URL helpers."""

    auth_resource = AUTH_RESOURCE

    @property
    def content_security_policy(self) -> str:
        return f"{super().content_security_policy}; {PAGE_CSP}"

    def page_url(self, route: str, path: str, **query: Any) -> str:
        """``<base_url>bookstore/<route>/<path>?<query>`` with None values left out."""
        url = url_path_join(self.base_url, "bookstore", route, url_escape(path))
        args = {k: v for k, v in query.items() if v is not None}
        return f"{url}?{urlencode(args)}" if args else url

    def render_page(self, template: str, **ns: Any) -> None:
        ns.setdefault("jupyter_logo", jupyter_logo_data_uri())
        links = frontend_links(self)
        ns.setdefault("home_url", links.home)
        path = ns.get("path")
        if path is not None:
            ns.setdefault("history_url", self.page_url("versions", path))
            ns["is_notebook"] = is_notebook_path(path)
            ns.setdefault("open_url", links.open(path, ns["is_notebook"]))
        self.finish(self.render_template(template, **ns))


class HistoryPageHandler(BookstorePageHandler):
    """The timeline, one version's view, and the restore form's target."""

    @web.authenticated
    @authorized
    async def get(self, path: str = "") -> None:
        path = self.api_path(path, "/bookstore/versions/")
        if self.get_query_argument("version_id", None) is not None:
            await self._view(path)
        else:
            await self._timeline(path)

    @web.authenticated
    @authorized
    async def post(self, path: str = "") -> None:
        path = self.api_path(path, "/bookstore/versions/")
        version_id = validate_version_id(self.get_body_argument("version_id", None))
        prefix = validate_prefix(self.get_body_argument("prefix", None), RESTORABLE_PREFIXES)
        saved = await self.restore(path, version_id, prefix)
        self.redirect(
            self.page_url(
                "versions",
                path,
                restored=version_id,
                restored_prefix=prefix,
                save_id=saved.get("bookstore_save_id"),
            ),
            status=303,
        )

    # --- timeline ------------------------------------------------------------------------

    async def _listing(
        self, path: str, prefix: str, limit: int, token: str | None
    ) -> tuple[VersionListing | None, VersionRecord | None]:
        """One page plus the version right after it (for "diff vs previous")."""
        try:
            listing = await self.history.listing(
                path, prefix=prefix, limit=min(limit + 1, MAX_LIMIT), page_token=token
            )
        except NotFound:
            return None, None
        pending = [v for v in listing.versions if v.pending]
        uploaded = [v for v in listing.versions if not v.pending]
        after = uploaded[limit] if len(uploaded) > limit else None
        if after is not None and uploaded[limit - 1].version_id:
            # The next page starts right after the last version shown.
            raw = store_token(listing.key, uploaded[limit - 1].version_id)
            listing.next_token = encode_page_token(raw)
        listing.versions = pending + uploaded[:limit]
        return listing, after

    def _entries(
        self, path: str, listing: VersionListing | None, after: VersionRecord | None
    ) -> list[dict[str, Any]]:
        if listing is None:
            return []
        uploaded = [v for v in listing.versions if not v.pending]
        previous: dict[str, VersionRecord | None] = {}
        for i, v in enumerate(uploaded):
            previous[v.version_id or ""] = uploaded[i + 1] if i + 1 < len(uploaded) else after
        bucket, key = listing.bucket, listing.key
        out = []
        for v in listing.versions:
            entry: dict[str, Any] = {
                "record": v,
                "time": human_time(v),
                "iso": isoformat(v.last_modified),
                "size": human_size(v.size, "—"),
                "user": v.user or "—",
                "sha_short": (v.sha256 or "")[:12],
                "prefix": listing.prefix,
                "view_url": None,
                "diff_prev_url": None,
                "diff_current_url": None,
                "clone_url": None,
            }
            if v.version_id and not v.pending:
                vid = v.version_id
                entry["view_url"] = self.page_url(
                    "versions", path, version_id=vid, prefix=listing.prefix
                )
                prev = previous.get(vid)
                if prev is not None and prev.version_id and is_notebook_path(path):
                    entry["diff_prev_url"] = self.page_url(
                        "diff", path, prefix=listing.prefix, to=vid, **{"from": prev.version_id}
                    )
                if is_notebook_path(path):
                    entry["diff_current_url"] = self.page_url(
                        "diff", path, prefix=listing.prefix, **{"from": vid}
                    )
                entry["clone_url"] = (
                    url_path_join(self.base_url, "bookstore/clone")
                    + "?"
                    + (urlencode({"s3_bucket": bucket, "s3_key": key, "s3_version_id": vid}))
                )
            out.append(entry)
        return out

    async def _timeline(self, path: str) -> None:
        limit = validate_limit(self.get_query_argument("limit", None), default=PAGE_SIZE)
        limit = min(limit, MAX_LIMIT - 1)
        token = self.get_query_argument("page_token", None)
        ws_key = self.history.key(path, "workspace")
        decode_page_token(token, ws_key)  # 400 now for a foreign token
        if token:
            workspace = await self._listing(path, "workspace", limit, token)
            published: tuple[VersionListing | None, VersionRecord | None] = (None, None)
        else:
            workspace, published = await gather_or_cancel(
                [
                    self._listing(path, "workspace", limit, None),
                    self._listing(path, "published", limit, None),
                ]
            )
        ws_entries = self._entries(path, *workspace)
        pub_entries = self._entries(path, *published)
        runs = [] if token or not is_notebook_path(path) else await self._runs(path)
        if not ws_entries and not pub_entries and not runs and not token:
            self.set_status(404)
        older_url = None
        if workspace[0] is not None and workspace[0].next_token:
            older_url = self.page_url(
                "versions", path, page_token=workspace[0].next_token, limit=limit
            )
        restored = self.get_query_argument("restored", None)
        self.render_page(
            "versions.html",
            path=path,
            bucket=self.history.bucket,
            workspace_key=ws_key,
            published_key=self.history.key(path, "published"),
            workspace=ws_entries,
            published=pub_entries,
            older_url=older_url,
            newest_url=self.page_url("versions", path) if token else None,
            paged=bool(token),
            restored=restored,
            restored_prefix=self.get_query_argument("restored_prefix", "workspace"),
            restored_save_id=self.get_query_argument("save_id", None),
            restore_url=self.page_url("versions", path),
            is_notebook=is_notebook_path(path),
            runs=runs,
            runs_key=self.history.key(path, "runs"),
            run_url=self.page_url("runs", path),
            can_run="bookstore_runs" in self.settings and is_notebook_path(path),
            any_running=any(r["run"]["status"] == "running" for r in runs),
            started=self.get_query_argument("started", None),
        )

    async def _runs(self, path: str) -> list[dict[str, Any]]:
        """The Runs section: runs executing here, then the newest archived runs."""
        from ..runs import list_runs

        listing = await list_runs(
            self.settings["bookstore_settings"],
            self.settings["bookstore_store"],
            path,
            limit=PAGE_SIZE,
        )
        manager = self.settings.get("bookstore_runs")
        archived = {r["run_id"] for r in listing.runs}
        here = [
            r for r in (manager.runs_of(path) if manager else []) if r["run_id"] not in archived
        ]
        runs = here + listing.runs
        outputs = [r["output_version_id"] for r in runs]
        entries = []
        for i, run in enumerate(runs):
            out = run["output_version_id"]
            src = run.get("source") or {}
            older = next((o for o in outputs[i + 1 :] if o), None)
            duration = run.get("duration")
            error = run.get("error") or None
            entries.append(
                {
                    "run": run,
                    "time": _human_iso(run.get("started") or run.get("last_modified")),
                    "iso": run.get("started") or run.get("last_modified") or "",
                    "duration": f"{duration:.1f} s" if isinstance(duration, (int, float)) else "—",
                    "parameters": ", ".join(
                        f"{k}={v!r}" for k, v in (run.get("parameters") or {}).items()
                    ),
                    "source_url": (
                        self.page_url(
                            "versions",
                            path,
                            version_id=src.get("version_id"),
                            prefix=src.get("prefix"),
                        )
                        if src.get("version_id") and src.get("prefix") in RESTORABLE_PREFIXES
                        else None
                    ),
                    "error": (
                        f"cell {error.get('cell_index')} raised {error.get('ename')}: "
                        f"{error.get('evalue')}"
                        if error
                        else None
                    ),
                    "view_url": (
                        self.page_url("versions", path, version_id=out, prefix="runs")
                        if out
                        else None
                    ),
                    "diff_prev_url": (
                        self.page_url("diff", path, prefix="runs", to=out, **{"from": older})
                        if out and older
                        else None
                    ),
                }
            )
        return entries

    # --- one version -----------------------------------------------------------------------

    async def _view(self, path: str) -> None:
        await require_contents_permission(self, "read")
        version_id = validate_version_id(self.get_query_argument("version_id", None))
        prefix = validate_prefix(self.get_query_argument("prefix", None))
        record, result = await self.history.record(path, version_id, prefix)
        cells: list[dict[str, Any]] | None = None
        text: str | None = None
        if is_notebook_path(path):
            nb = await run_sync(parse_notebook, result.body, f"version {version_id} of {path}")
            cells = await run_sync(render_notebook, nb)
        else:
            content, fmt = file_content(result.body)
            text = cut_text(content, MAX_FILE_TEXT) if fmt == "text" else None
        key = self.history.key(path, prefix)
        self.render_page(
            "versions_view.html",
            path=path,
            prefix=prefix,
            record=record,
            time=human_time(record),
            size=human_size(record.size, "—"),
            cells=cells,
            text=text,
            history_url=self.page_url("versions", path),
            restore_url=self.page_url("versions", path),
            diff_current_url=(
                self.page_url("diff", path, prefix=prefix, **{"from": version_id})
                if is_notebook_path(path)
                else None
            ),
            clone_url=url_path_join(self.base_url, "bookstore/clone")
            + "?"
            + urlencode(
                {"s3_bucket": self.history.bucket, "s3_key": key, "s3_version_id": version_id}
            ),
        )


class DiffPageHandler(BookstorePageHandler):
    """A diff between two versions, or a version and the current file, cell by cell."""

    @web.authenticated
    @authorized
    async def get(self, path: str = "") -> None:
        path = self.api_path(path, "/bookstore/diff/")
        asked = await self.requested_diff(path, self.get_query_argument)
        prefix, from_id, to_id, diff = asked.prefix, asked.from_id, asked.to_id, asked.diff
        if diff.diff is None:  # over a max_diff_* cap: the summary only
            changes = []
            n_changed = diff.summary.changed
            nb_metadata_changed = diff.summary.metadata_changed
        else:
            changes = await run_sync(cell_changes, diff.base, diff.remote, diff.diff)
            n_changed = sum(1 for c in changes if c.changed)
            nb_metadata_changed = metadata_changed(diff.diff)
        self.render_page(
            "versions_diff.html",
            path=path,
            prefix=prefix,
            from_id=from_id,
            to_id=to_id,
            changes=changes,
            summary=diff.summary,
            n_changed=n_changed,
            nb_metadata_changed=nb_metadata_changed,
            history_url=self.page_url("versions", path),
            from_url=self.page_url("versions", path, version_id=from_id, prefix=prefix),
            to_url=(
                self.page_url("versions", path, version_id=to_id, prefix=prefix) if to_id else None
            ),
        )


page_handlers: list[tuple[str, Any]] = [
    (rf"/bookstore/versions{path_regex}", HistoryPageHandler),
    (rf"/bookstore/diff{path_regex}", DiffPageHandler),
]
