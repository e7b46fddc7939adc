"""The history page: timeline, read-only view, rendered diff, restore form."""

from __future__ import annotations

import html
import json
import re
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import nbformat
from helpers import list_versions, notebook
from history_helpers import drain, first_source_on_disk, save_nb, save_versions

PAGE = ("bookstore", "versions")


async def page(jp_fetch: Any, *parts: str, **params: Any) -> Any:
    r = await jp_fetch(*parts, params=params, raise_error=False)
    return r


def text_of(r: Any) -> str:
    return r.body.decode("utf-8")  # type: ignore[no-any-return]


def hrefs(body: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]+)"', body)]


# --- timeline ---------------------------------------------------------------------------------


async def test_timeline_lists_workspace_and_published_versions_with_actions(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str, jp_base_url: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "t.ipynb", ["one", "two"])
    pub = s3.put_object(
        Bucket=s3_bucket,
        Key="published/t.ipynb",
        Body=json.dumps(notebook("published")).encode(),
        Metadata={"user": "publisher"},
    )

    r = await page(jp_fetch, *PAGE, "t.ipynb")

    assert r.code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "default-src 'none'" in csp
    body = text_of(r)
    versions = list_versions(s3, s3_bucket, "workspace/t.ipynb")
    for v in versions:
        assert v["VersionId"] in body
    assert pub["VersionId"] in body
    assert bookstore_ext.bookstore_settings.username in body
    assert "publisher" in body
    # One restore form per version, and "Run this version" on the published one.
    assert body.count('name="_xsrf"') == 4
    assert body.count(">Run this version</button>") == 1
    links = hrefs(body)
    newest, older = versions[0]["VersionId"], versions[1]["VersionId"]
    diff_prev = [h for h in links if "/bookstore/diff/t.ipynb" in h and "to=" in h]
    assert len(diff_prev) == 1  # the oldest version has no previous one
    query = parse_qs(urlparse(diff_prev[0]).query)
    assert query["from"] == [older]
    assert query["to"] == [newest]
    clone = [h for h in links if "/bookstore/clone?" in h]
    assert len(clone) == 3
    assert parse_qs(urlparse(clone[0]).query) == {
        "s3_bucket": [s3_bucket],
        "s3_key": ["workspace/t.ipynb"],
        "s3_version_id": [newest],
    }
    assert all(h.startswith(jp_base_url) for h in clone + diff_prev)


async def test_timeline_pages_through_older_versions(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "many.ipynb", [f"v{i}" for i in range(5)])
    ids = [v["VersionId"] for v in list_versions(s3, s3_bucket, "workspace/many.ipynb")]

    first = text_of(await page(jp_fetch, *PAGE, "many.ipynb", limit="2"))
    shown_first = re.findall(r'data-version-id="([^"]*)"', first)
    older = [h for h in hrefs(first) if "page_token=" in h]
    assert shown_first == ids[:2]
    assert len(older) == 1
    token = parse_qs(urlparse(older[0]).query)["page_token"][0]

    second = text_of(await page(jp_fetch, *PAGE, "many.ipynb", limit="2", page_token=token))

    assert re.findall(r'data-version-id="([^"]*)"', second) == ids[2:4]
    # "Diff vs previous" of the page's last version points at the next page's first.
    diff_prev = [h for h in hrefs(second) if "to=" + ids[3] in h]
    assert parse_qs(urlparse(diff_prev[0]).query)["from"] == [ids[4]]


async def test_timeline_of_a_path_without_versions_is_404(
    jp_fetch: Any, bookstore_ext: Any
) -> None:
    r = await page(jp_fetch, *PAGE, "nothing.ipynb")
    assert r.code == 404
    assert "no archived versions" in text_of(r)


async def test_page_requires_authentication(jp_fetch: Any, bookstore_ext: Any) -> None:
    r = await jp_fetch(
        *PAGE, "t.ipynb", headers={"Authorization": ""}, raise_error=False, follow_redirects=False
    )
    assert r.code in (302, 403)
    if r.code == 302:
        assert "/login" in r.headers["Location"]


# --- view ----------------------------------------------------------------------------------------


def hostile_notebook() -> dict[str, Any]:
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("print('<script>alert(1)</script>')", execution_count=3)
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="<b>not bold</b>\n"),
        nbformat.v4.new_output(
            "display_data",
            data={
                "text/html": "<script>alert('html output')</script>",
                "text/plain": "<HTML object>",
            },
        ),
        nbformat.v4.new_output(
            "display_data",
            data={"image/png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"},
        ),
    ]
    md = nbformat.v4.new_markdown_cell(
        "# Title\n\n<img src=x onerror=alert(2)> [link](javascript:alert(3))"
    )
    nb.cells = [md, code]
    return json.loads(nbformat.writes(nb))  # type: ignore[no-any-return]


async def test_view_renders_cells_read_only_and_escapes_everything(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    body = {"type": "notebook", "content": hostile_notebook()}
    await jp_fetch("api", "contents", "x.ipynb", method="PUT", body=json.dumps(body))
    await drain(bookstore_ext)
    vid = list_versions(s3, s3_bucket, "workspace/x.ipynb")[0]["VersionId"]

    r = await page(jp_fetch, *PAGE, "x.ipynb", version_id=vid)

    assert r.code == 200
    text = text_of(r)
    assert "<h1>Title</h1>" in text  # markdown is rendered...
    assert "&lt;img src=x onerror=alert(2)&gt;" in text  # ...but raw HTML in it is not
    assert "javascript:alert" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;not bold&lt;/b&gt;" in text
    assert "alert('html output')" not in text  # HTML outputs are not rendered
    assert "&lt;HTML object&gt;" in text
    assert 'src="data:image/png;base64,iVBORw0KGgo' in text
    assert "In&nbsp;[3]:" in text
    # The only scripts are the page's own file.
    assert re.findall(r"<script[^>]*>", text) == [
        m for m in re.findall(r"<script[^>]*>", text) if "versions.js" in m
    ]
    assert vid in text


async def test_view_of_unknown_or_malformed_version(jp_fetch: Any, bookstore_ext: Any) -> None:
    await save_versions(bookstore_ext, jp_fetch, "v.ipynb", ["one"])
    r = await page(jp_fetch, *PAGE, "v.ipynb", version_id="0123456789abcdef0123456789abcdef")
    assert r.code == 404
    r = await page(jp_fetch, *PAGE, "v.ipynb", version_id="<bad>")
    assert r.code == 400
    assert "<bad>" not in text_of(r)


# --- diff ----------------------------------------------------------------------------------------


async def test_diff_page_renders_changed_lines(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    await save_nb(jp_fetch, "d.ipynb", "same", n_cells=2)
    nb = notebook("same", 2)
    nb["cells"][1]["source"] = "changed <line>"
    nb["cells"].append(nbformat.v4.new_markdown_cell("added cell"))
    body = {"type": "notebook", "content": nb}
    await jp_fetch("api", "contents", "d.ipynb", method="PUT", body=json.dumps(body))
    await drain(bookstore_ext)
    new, old = list_versions(s3, s3_bucket, "workspace/d.ipynb")

    r = await page(
        jp_fetch,
        "bookstore",
        "diff",
        "d.ipynb",
        **{"from": old["VersionId"], "to": new["VersionId"]},
    )

    assert r.code == 200
    text = text_of(r)
    assert re.search(r'class="bs-del">.*?same  # 1', text, re.S)
    assert re.search(r'class="bs-add">.*?changed &lt;line&gt;', text, re.S)
    assert "bs-dcell-added" in text
    assert "added cell" in text
    assert "bs-dcell-unchanged" in text  # the first cell did not change
    assert "<line>" not in text


async def test_diff_page_against_the_current_file(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "c.ipynb", ["archived"])
    vid = list_versions(s3, s3_bucket, "workspace/c.ipynb")[0]["VersionId"]
    await save_nb(jp_fetch, "c.ipynb", "now different")

    r = await page(jp_fetch, "bookstore", "diff", "c.ipynb", **{"from": vid})

    text = text_of(r)
    assert r.code == 200
    assert "the current file" in text
    assert "now different" in text


# --- restore form --------------------------------------------------------------------------------


async def test_restore_form_restores_and_redirects_to_the_timeline(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "f.ipynb", ["good", "bad"])
    good = list_versions(s3, s3_bucket, "workspace/f.ipynb")[1]["VersionId"]

    r = await jp_fetch(
        *PAGE,
        "f.ipynb",
        method="POST",
        body=urlencode({"version_id": good, "prefix": "workspace"}),
        follow_redirects=False,
        raise_error=False,
    )

    assert r.code == 303
    location = r.headers["Location"]
    assert "/bookstore/versions/f.ipynb" in location
    assert parse_qs(urlparse(location).query)["restored"] == [good]
    assert first_source_on_disk(jp_root_dir / "f.ipynb") == "good  # 0"
    params = {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}
    after = text_of(await page(jp_fetch, *PAGE, "f.ipynb", **params))
    assert "Restored workspace version" in after


async def test_restore_form_needs_the_xsrf_token_with_cookie_login(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, jp_serverapp: Any, s3: Any, s3_bucket: str
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "x.ipynb", ["good", "bad"])
    good = list_versions(s3, s3_bucket, "workspace/x.ipynb")[1]["VersionId"]
    token = jp_serverapp.identity_provider.token
    # Log in as a browser does: the token in the URL once, a cookie afterwards.
    login = await jp_fetch(*PAGE, "x.ipynb", params={"token": token}, headers={"Authorization": ""})
    cookies = SimpleCookie()
    for header in login.headers.get_list("Set-Cookie"):
        cookies.load(header)
    cookie = "; ".join(f"{k}={m.value}" for k, m in cookies.items())
    form_xsrf = re.search(r'name="_xsrf" value="([^"]+)"', text_of(login))
    assert form_xsrf is not None
    browser = {"Authorization": "", "Cookie": cookie}

    forged = await jp_fetch(
        *PAGE,
        "x.ipynb",
        method="POST",
        headers=browser,
        body=urlencode({"version_id": good}),
        follow_redirects=False,
        raise_error=False,
    )
    assert forged.code == 403
    assert first_source_on_disk(jp_root_dir / "x.ipynb") == "bad  # 0"

    genuine = await jp_fetch(
        *PAGE,
        "x.ipynb",
        method="POST",
        headers=browser,
        body=urlencode({"version_id": good, "_xsrf": html.unescape(form_xsrf.group(1))}),
        follow_redirects=False,
        raise_error=False,
    )
    assert genuine.code == 303
    assert first_source_on_disk(jp_root_dir / "x.ipynb") == "good  # 0"
