"""bookstore's pages link back into the UI the user came from, and show UTC times labelled."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from history_helpers import save_versions

ROOT = Path(__file__).resolve().parent.parent


def link(body: str, element_id: str) -> str | None:
    found = re.search(rf'id="{element_id}"[^>]*href="([^"]+)"', body)
    return html.unescape(found.group(1)) if found else None


async def history(jp_fetch: Any, path: str, **headers: str) -> Any:
    return await jp_fetch("bookstore", "versions", path, headers=headers, raise_error=False)


async def test_history_page_links_back_to_the_ui_of_the_referer_and_remembers_it(
    jp_fetch: Any, bookstore_ext: Any, jp_base_url: str, jp_http_port: int
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "t.ipynb", ["one"])
    referer = f"http://127.0.0.1:{jp_http_port}{jp_base_url}lab/tree/t.ipynb"

    r = await history(jp_fetch, "t.ipynb", Referer=referer)

    body = r.body.decode()
    assert link(body, "bookstore-home-link") == f"{jp_base_url}lab"
    assert link(body, "bookstore-open-link") == f"{jp_base_url}lab/tree/t.ipynb"
    assert ">Open notebook</a>" in body
    cookies = r.headers.get_list("Set-Cookie")
    assert any(c.startswith("bookstore-frontend=lab;") for c in cookies), cookies

    # The next bookstore page (its Referer is bookstore's own) still links to JupyterLab.
    again = await history(jp_fetch, "t.ipynb", Cookie="bookstore-frontend=lab")
    assert link(again.body.decode(), "bookstore-home-link") == f"{jp_base_url}lab"


async def test_history_page_links_to_the_classic_ui_it_came_from(
    jp_fetch: Any, bookstore_ext: Any, jp_base_url: str, jp_http_port: int
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "c.ipynb", ["one"])
    referer = f"http://127.0.0.1:{jp_http_port}{jp_base_url}nbclassic/notebooks/c.ipynb"

    body = (await history(jp_fetch, "c.ipynb", Referer=referer)).body.decode()

    assert link(body, "bookstore-home-link") == f"{jp_base_url}nbclassic/tree"
    assert link(body, "bookstore-open-link") == f"{jp_base_url}nbclassic/notebooks/c.ipynb"


async def test_a_foreign_referer_is_ignored(
    jp_fetch: Any, bookstore_ext: Any, jp_base_url: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "f.ipynb", ["one"])

    r = await history(jp_fetch, "f.ipynb", Referer=f"http://evil.example{jp_base_url}lab")

    assert not any("bookstore-frontend" in c for c in r.headers.get_list("Set-Cookie"))
    assert link(r.body.decode(), "bookstore-home-link") != f"{jp_base_url}lab"


class TestDefaultUrl:
    @pytest.fixture
    def jp_server_config(self, jp_server_config: dict[str, Any]) -> dict[str, Any]:
        return {
            **jp_server_config,
            "ServerApp": {**jp_server_config["ServerApp"], "default_url": "/nbclassic/tree"},
        }

    async def test_without_a_referer_the_server_default_url_is_home(
        self, jp_fetch: Any, bookstore_ext: Any, jp_base_url: str
    ) -> None:
        await save_versions(bookstore_ext, jp_fetch, "d.ipynb", ["one"])

        body = (await history(jp_fetch, "d.ipynb")).body.decode()

        assert link(body, "bookstore-home-link") == f"{jp_base_url}nbclassic/tree"
        assert link(body, "bookstore-open-link") == f"{jp_base_url}nbclassic/notebooks/d.ipynb"


async def test_times_are_utc_and_labelled_like_the_cli(jp_fetch: Any, bookstore_ext: Any) -> None:
    await save_versions(bookstore_ext, jp_fetch, "u.ipynb", ["one"])

    body = (await history(jp_fetch, "u.ipynb")).body.decode()

    times = re.findall(r"<time datetime=\"[^\"]+\">([^<]+)</time>", body)
    assert times
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", t) for t in times)
    # No script rewrites them into an unlabelled local time.
    script = (ROOT / "bookstore" / "static" / "versions.js").read_text()
    assert "toLocale" not in script


async def test_clone_page_has_the_history_pages_header_and_links(
    jp_fetch: Any, bookstore_ext: Any, s3_bucket: str, jp_base_url: str
) -> None:
    r = await jp_fetch(
        "bookstore",
        "clone",
        params={"s3_bucket": s3_bucket, "s3_key": "workspace/team/r.ipynb"},
    )

    body = r.body.decode()
    assert 'class="bs-header"' in body
    assert "versions.css" in body
    assert "clone.js" in body
    assert link(body, "bookstore-history-link") == (
        f"{jp_base_url}bookstore/versions/team/r.ipynb?prefix=workspace"
    )
    assert link(body, "bookstore-back-link") == link(body, "bookstore-home-link")
    assert 'class="bs-button-primary"' in body
