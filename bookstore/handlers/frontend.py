"""Which Jupyter frontend a page links back to, and where it opens a file.

bookstore's pages (history, diff, clone landing page) link "home" and "open" into the UI the
user came from: JupyterLab, Notebook 7 or nbclassic, known from the Referer of a Jupyter page,
remembered in a cookie while the user moves between bookstore's pages, else the server's
``default_url``.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import urlsplit

from jupyter_server.utils import url_escape, url_path_join

#: Remembers the user's frontend across bookstore's own pages (not a secret).
COOKIE = "bookstore-frontend"


class Frontend(NamedTuple):
    home: str  # relative to base_url
    notebook: str  # ``{path}``: the URL-escaped Jupyter path
    file: str


FRONTENDS: dict[str, Frontend] = {
    "lab": Frontend("lab", "lab/tree/{path}", "lab/tree/{path}"),
    "nbclassic": Frontend("nbclassic/tree", "nbclassic/notebooks/{path}", "nbclassic/edit/{path}"),
    # Notebook 7 (or nbclassic when it is the default UI of an old notebook package).
    "notebook": Frontend("tree", "notebooks/{path}", "edit/{path}"),
}

#: First segment of a page's path (after base_url) -> the frontend that serves it.
_SEGMENTS = {
    "lab": "lab",
    "doc": "lab",
    "nbclassic": "nbclassic",
    "tree": "notebook",
    "notebooks": "notebook",
    "edit": "notebook",
    "consoles": "notebook",
    "terminals": "notebook",
}


def frontend_of(path: str, base_url: str) -> str | None:
    """The frontend serving the URL path ``path`` (under ``base_url``), if any."""
    if not path.startswith(base_url):
        return None
    first = path[len(base_url) :].lstrip("/").split("/", 1)[0]
    return _SEGMENTS.get(first)


def pick_frontend(handler: Any) -> str | None:
    """The frontend to link to: the Referer's, else the remembered one, else default_url's.

    A Referer from one of this server's frontends is remembered in a cookie, so the history
    page's "Diff" and "View" pages still link back to the UI the user came from.
    """
    base_url = handler.base_url
    referer = handler.request.headers.get("Referer", "")
    if referer:
        parts = urlsplit(referer)
        if parts.netloc == handler.request.host:
            name = frontend_of(parts.path, base_url)
            if name:
                if handler.get_cookie(COOKIE) != name:
                    handler.set_cookie(
                        COOKIE,
                        name,
                        path=url_path_join(base_url, "bookstore"),
                        httponly=True,
                        samesite="Lax",
                    )
                return name
    remembered = handler.get_cookie(COOKIE)
    if remembered in FRONTENDS:
        return str(remembered)
    default = handler.default_url or ""
    if not default.startswith(base_url):
        default = url_path_join(base_url, default)
    return frontend_of(default, base_url)


class Links(NamedTuple):
    home: str
    open_notebook: str  # a template with ``{path}``, or "" when no frontend is known
    open_file: str

    def open(self, path: str, notebook: bool) -> str:
        """The URL that opens ``path`` in the frontend, or "" when there is none."""
        template = self.open_notebook if notebook else self.open_file
        return template.replace("{path}", url_escape(path)) if template else ""


def frontend_links(handler: Any) -> Links:
    """Home and open-file URLs in the user's frontend (home: default_url without one)."""
    name = pick_frontend(handler)
    base_url = handler.base_url
    if name is None:
        default = handler.default_url or base_url
        home = default if default.startswith(base_url) else url_path_join(base_url, default)
        return Links(home, "", "")
    f = FRONTENDS[name]
    return Links(
        url_path_join(base_url, f.home),
        url_path_join(base_url, f.notebook),
        url_path_join(base_url, f.file),
    )
