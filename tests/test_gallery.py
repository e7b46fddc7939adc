"""Issue 14: the gallery of published notebooks, on a real server and real S3:
``GET /api/bookstore/published``, the page ``/bookstore/published`` and ``bookstore published``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlparse

import pytest
from helpers import async_wait_until, notebook
from run_helpers import outputs_text, param_notebook, publish, run_versions

from bookstore import gallery
from bookstore.cli import main


def nb_body(source: str) -> bytes:
    return json.dumps(notebook(source)).encode()


@pytest.fixture
def bookstore_config(
    bookstore_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    monkeypatch.setenv("JUPYTERHUB_USER", "bob")
    return {
        **bookstore_config,
        "workspace_prefix": "workspace/{username}",
        "published_prefix": "published/{username}",
        "published_cache_seconds": 3600.0,  # long: the tests say when it is cleared
    }


@pytest.fixture
def bucket_contents(s3: Any, s3_bucket: str) -> dict[str, list[str]]:
    """Published notebooks of alice and bob, alice's draft, and an unpublished notebook."""
    ids: dict[str, list[str]] = {}
    for key, n in (
        ("published/alice/report.ipynb", 2),
        ("published/alice/sub/Analysis.ipynb", 1),
        ("published/bob/mine.ipynb", 1),
        ("published/carol%2Fx/odd.ipynb", 1),
        ("published/alice/withdrawn.ipynb", 1),
        ("workspace/alice/draft.ipynb", 1),
        ("published/loose.ipynb", 1),  # no owner segment: not a published notebook
    ):
        ids[key] = [
            s3.put_object(Bucket=s3_bucket, Key=key, Body=nb_body(f"{key} {i}"))["VersionId"]
            for i in range(n)
        ]
    s3.delete_object(Bucket=s3_bucket, Key="published/alice/withdrawn.ipynb")
    return ids


async def get_json(jp_fetch: Any, **params: Any) -> Any:
    resp = await jp_fetch("api/bookstore/published", params=params)
    return json.loads(resp.body)


async def test_lists_every_users_published_notebooks(
    jp_fetch: Any, bookstore_ext: Any, s3_bucket: str, bucket_contents: dict[str, list[str]]
) -> None:
    bookstore_ext.gallery.count_budget = None  # wait for every count (a busy test machine)
    data = await get_json(jp_fetch)
    assert data["bucket"] == s3_bucket
    assert data["next_token"] is None
    got = {(n["owner"], n["path"]): n for n in data["published"]}
    assert set(got) == {
        ("alice", "report.ipynb"),
        ("alice", "sub/Analysis.ipynb"),
        ("bob", "mine.ipynb"),
        ("carol/x", "odd.ipynb"),
    }
    report = got[("alice", "report.ipynb")]
    assert report["versions"] == 2
    assert report["version_id"] == bucket_contents["published/alice/report.ipynb"][-1]
    assert report["key"] == "published/alice/report.ipynb"
    assert report["size"] == len(nb_body("published/alice/report.ipynb 1"))
    assert report["last_modified"].endswith("Z") or "+00:00" in report["last_modified"]


async def test_paging_visits_each_notebook_once(
    jp_fetch: Any, bookstore_ext: Any, bucket_contents: dict[str, list[str]]
) -> None:
    seen: list[str] = []
    token = None
    for _ in range(10):
        params = {"limit": 1, **({"page_token": token} if token else {})}
        data = await get_json(jp_fetch, **params)
        assert len(data["published"]) <= 1
        seen += [n["key"] for n in data["published"]]
        token = data["next_token"]
        if not token:
            break
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) == 4


async def test_owner_and_path_filters(
    jp_fetch: Any, bookstore_ext: Any, bucket_contents: dict[str, list[str]]
) -> None:
    alice = await get_json(jp_fetch, owner="alice")
    assert {n["path"] for n in alice["published"]} == {"report.ipynb", "sub/Analysis.ipynb"}
    odd = await get_json(jp_fetch, owner="carol/x")
    assert [n["path"] for n in odd["published"]] == ["odd.ipynb"]
    q = await get_json(jp_fetch, q="analysis")
    assert [n["path"] for n in q["published"]] == ["sub/Analysis.ipynb"]
    none = await get_json(jp_fetch, owner="alice", q="mine")
    assert none["published"] == []


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"page_token": "!!!"}, "page_token"),
        ({"page_token": "d29ya3NwYWNlL2FsaWNl"}, "page_token"),  # "workspace/alice"
        ({"q": "x" * 300}, "q"),
    ],
)
async def test_bad_queries_are_400(
    jp_fetch: Any, bookstore_ext: Any, params: dict[str, str], words: str
) -> None:
    resp = await jp_fetch("api/bookstore/published", params=params, raise_error=False)
    assert resp.code == 400
    assert words in json.loads(resp.body)["message"]


async def test_answers_are_cached_until_this_server_publishes(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    assert (await get_json(jp_fetch))["published"] == []
    s3.put_object(Bucket=s3_bucket, Key="published/alice/new.ipynb", Body=nb_body("new"))
    assert (await get_json(jp_fetch))["published"] == []  # the cached answer
    await jp_fetch(
        "api/bookstore/publish/own.ipynb",
        method="PUT",
        body=json.dumps({"type": "notebook", "content": notebook("own")}),
    )
    keys = [n["key"] for n in (await get_json(jp_fetch))["published"]]
    assert keys == ["published/alice/new.ipynb", "published/bob/own.ipynb"]


async def test_a_stale_answer_is_given_at_once_and_refreshed_in_the_background(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    gallery_ = bookstore_ext.gallery
    bookstore_ext.bookstore_settings.published_cache_seconds = 2.0  # stale from 2 s to 12 s
    s3.put_object(Bucket=s3_bucket, Key="published/alice/one.ipynb", Body=nb_body("one"))
    assert [n["path"] for n in (await get_json(jp_fetch))["published"]] == ["one.ipynb"]
    s3.put_object(Bucket=s3_bucket, Key="published/alice/two.ipynb", Body=nb_body("two"))
    ((fresh_until, _, _),) = gallery_._cache.values()
    await async_wait_until(lambda: time.monotonic() > fresh_until, 30, "never stale")

    # Stale: the old answer at once (what the handlers get), and one refresh started...
    stale = await gallery_.page()
    assert stale.cached
    assert [n.path for n in stale.notebooks] == ["one.ipynb"]
    (refresh,) = gallery_._refreshing.values()
    assert [n.path for n in (await gallery_.page()).notebooks] == ["one.ipynb"]
    assert list(gallery_._refreshing.values()) == [refresh]  # not a second one
    await refresh
    # ...whose answer the next reader gets, fresh, without listing S3 themselves.
    ((fresh_until, _, page),) = gallery_._cache.values()
    assert [n.path for n in page.notebooks] == ["one.ipynb", "two.ipynb"]
    assert [n["path"] for n in (await get_json(jp_fetch))["published"]] == [
        "one.ipynb",
        "two.ipynb",
    ]


async def test_a_refresh_started_before_a_publish_does_not_store_its_answer(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    gallery_ = bookstore_ext.gallery
    bookstore_ext.bookstore_settings.published_cache_seconds = 2.0
    assert (await get_json(jp_fetch))["published"] == []
    ((fresh_until, _, _),) = gallery_._cache.values()
    await async_wait_until(lambda: time.monotonic() > fresh_until, 30, "never stale")
    await gallery_.page()  # the stale answer; starts a refresh
    (refresh,) = gallery_._refreshing.values()
    gallery_.invalidate()  # this server published meanwhile
    await refresh
    assert gallery_._cache == {}


async def test_narrowed_readable_prefixes_hide_notebooks(
    jp_fetch: Any, bookstore_ext: Any, bucket_contents: dict[str, list[str]]
) -> None:
    bookstore_ext.bookstore_settings.readable_prefixes = ["published/{username}"]
    data = await get_json(jp_fetch, limit=2)
    assert [n["key"] for n in data["published"]] == ["published/bob/mine.ipynb"]


def entries_of(html: str) -> dict[str, str]:
    """Each gallery entry's HTML by its S3 key."""
    found = re.findall(r'<li class="bs-version" data-key="([^"]+)">(.*?)</li>', html, re.S)
    return {unescape(key): body for key, body in found}


def hrefs(fragment: str) -> dict[str, str]:
    """The links of an entry by their text."""
    return {
        text.strip(): unescape(href)
        for href, text in re.findall(r'<a class="bs-action" href="([^"]+)">([^<]+)</a>', fragment)
    }


def run_form(fragment: str) -> dict[str, str] | None:
    form = re.search(
        r'<form method="post" action="([^"]+)" class="bs-run">(.*?)</form>', fragment, re.S
    )
    if form is None:
        return None
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(2)))
    return {"action": unescape(form.group(1)), **{k: unescape(v) for k, v in fields.items()}}


def local(url: str) -> str:
    """A page's own link as a jp_fetch path (the base URL is /a%40b/ in pytest-jupyter)."""
    parsed = urlparse(url)
    path = unquote(parsed.path)
    return path[path.index("bookstore/") :] + (f"?{parsed.query}" if parsed.query else "")


async def fetch_page(jp_fetch: Any, url: str) -> str:
    path, _, query = local(url).partition("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    return (await jp_fetch(*path.split("/"), params=params)).body.decode()


async def test_page_links_every_entry_to_clone_history_and_run(
    jp_fetch: Any, bookstore_ext: Any, s3_bucket: str, bucket_contents: dict[str, list[str]]
) -> None:
    html = (await jp_fetch("bookstore/published")).body.decode()
    entries = entries_of(html)
    assert set(entries) == {
        "published/alice/report.ipynb",
        "published/alice/sub/Analysis.ipynb",
        "published/bob/mine.ipynb",
        "published/carol%2Fx/odd.ipynb",
    }
    assert "withdrawn" not in html
    assert "draft" not in html
    for key, fragment in entries.items():
        newest = bucket_contents[key][-1]
        links = hrefs(fragment)
        assert set(links) == {"Clone", "History"}, key
        clone = parse_qs(urlparse(links["Clone"]).query)
        assert clone == {"s3_bucket": [s3_bucket], "s3_key": [key], "s3_version_id": [newest]}
        form = run_form(fragment)
        assert form is not None, key
        assert form["action"].endswith("/bookstore/published/run")
        assert (form["key"], form["version_id"]) == (key, newest)
        assert form.get("_xsrf")
        # Every link answers for this reader (bob), his own notebook's and his colleagues'.
        assert "Clone " in await fetch_page(jp_fetch, links["Clone"])
        history = await fetch_page(jp_fetch, links["History"])
        assert newest in history, key
    # bob's own notebook: his history page (restore and all); others': the read-only one.
    assert (
        "bookstore/versions/mine.ipynb?prefix=published"
        in hrefs(entries["published/bob/mine.ipynb"])["History"]
    )
    alice = hrefs(entries["published/alice/report.ipynb"])["History"]
    assert local(alice) == "bookstore/published/history?" + urlencode(
        {"key": "published/alice/report.ipynb"}
    )

    filtered = (await jp_fetch("bookstore/published", params={"q": "zzz"})).body.decode()
    assert "No published notebook matches" in filtered


async def test_history_of_another_users_notebook_lists_views_and_clones_each_version(
    jp_fetch: Any, bookstore_ext: Any, s3_bucket: str, bucket_contents: dict[str, list[str]]
) -> None:
    key = "published/alice/report.ipynb"
    html = (await jp_fetch("bookstore/published/history", params={"key": key})).body.decode()
    older, newest = bucket_contents[key]
    rows = re.findall(
        r'<li class="bs-version[^"]*" data-version-id="([^"]+)">(.*?)</li>', html, re.S
    )
    assert [vid for vid, _ in rows] == [newest, older]  # newest first
    assert "Published by" in html
    assert "alice" in html
    assert "Restore" not in html  # read-only: nothing of alice's can be overwritten here
    for (vid, fragment), text in zip(rows, (f"{key} 1", f"{key} 0")):
        links = hrefs(fragment)
        assert set(links) == {"View", "Clone"}
        assert parse_qs(urlparse(links["Clone"]).query)["s3_version_id"] == [vid]
        view = await fetch_page(jp_fetch, links["View"])
        assert text in view  # that version's cell, rendered read-only
        form = run_form(fragment)
        assert form is not None
        assert (form["key"], form["version_id"]) == (key, vid)
    assert "Your runs" in html


@pytest.mark.parametrize(
    ("route", "params", "code", "words"),
    [
        ("history", {}, 400, "key is missing"),
        ("history", {"key": "workspace/alice/draft.ipynb"}, 400, "not a published notebook"),
        ("history", {"key": "published/alice/../../workspace/alice/draft.ipynb"}, 400, "not a"),
        ("history", {"key": "published/alice/nothing.ipynb"}, 404, None),
        ("view", {"key": "published/alice/report.ipynb"}, 400, "version_id"),
        ("view", {"key": "published/alice/report.ipynb", "version_id": "nope"}, 404, None),
    ],
)
async def test_published_history_bad_requests(
    jp_fetch: Any,
    bookstore_ext: Any,
    bucket_contents: dict[str, list[str]],
    route: str,
    params: dict[str, str],
    code: int,
    words: str | None,
) -> None:
    resp = await jp_fetch("bookstore/published", route, params=params, raise_error=False)
    assert resp.code == code
    if words:  # (a 404 page is Jupyter's own; the log has bookstore's message)
        assert words in resp.body.decode(), resp.body.decode()


async def test_published_pages_refuse_keys_outside_readable_prefixes(
    jp_fetch: Any,
    bookstore_ext: Any,
    s3: Any,
    s3_bucket: str,
    bucket_contents: dict[str, list[str]],
) -> None:
    bookstore_ext.bookstore_settings.readable_prefixes = ["published/{username}"]
    key = "published/alice/report.ipynb"
    version = bucket_contents[key][-1]
    for route, params in (("history", {"key": key}), ("view", {"key": key, "version_id": version})):
        resp = await jp_fetch("bookstore/published", route, params=params, raise_error=False)
        assert resp.code == 403
        assert "readable_prefixes" in resp.body.decode()
    resp = await jp_fetch(
        "bookstore/published/run",
        method="POST",
        body=urlencode({"key": key, "version_id": version}),
        raise_error=False,
        follow_redirects=False,
    )
    assert resp.code == 403
    assert not s3.list_object_versions(Bucket=s3_bucket, Prefix="runs/").get("Versions")


@pytest.mark.slow  # a `bookstore run` subprocess and a kernel
async def test_run_this_version_of_another_users_notebook(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    key = "published/alice/team/params.ipynb"
    first = publish(s3, s3_bucket, "alice/team/params.ipynb", param_notebook("print('x is', x)"))
    publish(s3, s3_bucket, "alice/team/params.ipynb", param_notebook("print('newer')"))
    html = (await jp_fetch("bookstore/published/history", params={"key": key})).body.decode()
    rows = re.findall(r'data-version-id="([^"]+)">(.*?)</li>', html, re.S)
    forms = [run_form(fragment) for _, fragment in rows]
    form = next(f for f in forms if f is not None and f["version_id"] == first)

    resp = await jp_fetch(
        *local(form["action"]).split("/"),
        method="POST",
        body=urlencode({"key": form["key"], "version_id": form["version_id"]}),
        raise_error=False,
        follow_redirects=False,
    )
    assert resp.code == 303, resp.body
    back = resp.headers["Location"]
    assert local(back).startswith("bookstore/published/history?")
    started = parse_qs(urlparse(back).query)["started"][0]

    # Archived as `bookstore run --s3-key KEY` would: the reader's runs prefix, at the key.
    out_key = bookstore_ext.bookstore_settings.s3_key("runs", key)
    (run,) = await async_wait_until(
        lambda: run_versions(s3, s3_bucket, key, prefix=out_key[: -len(key) - 1]) or None,
        240,
        f"the run was not archived at {out_key}",
        interval=0.3,
    )
    meta = run["nb"]["metadata"]["bookstore"]["run"]
    assert meta["run_id"] == started
    assert meta["source"]["key"] == key
    assert meta["source"]["version_id"] == first
    assert "x is 1" in outputs_text(run["nb"])

    page = await fetch_page(jp_fetch, back)
    assert started in page
    view = re.search(r'href="([^"]+)">View output</a>', page)
    assert view is not None
    assert "x is 1" in await fetch_page(jp_fetch, unescape(view.group(1)))


def test_cli_published(
    s3_server: Any,
    s3_bucket: str,
    bucket_contents: dict[str, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in {
        "JUPYTER_CONFIG_DIR": str(tmp_path),
        "JUPYTER_CONFIG_PATH": str(tmp_path),
        "JPYNB_S3_BUCKET": s3_bucket,
        "JPYNB_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "JPYNB_S3_ACCESS_KEY_ID": s3_server.access_key_id,
        "JPYNB_S3_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        "BOOKSTORE_SPOOL_DIR": str(tmp_path / "spool"),
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["published", "--published-prefix=published/{username}", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["published"]) == 4
    assert main(["published", "--published-prefix=published/{username}", "--owner=alice"]) == 0
    out = capsys.readouterr().out
    assert "2 published notebook(s)" in out
    assert "sub/Analysis.ipynb" in out
    assert "mine.ipynb" not in out


def test_python_m_bookstore_cli_runs_published(
    s3_server: Any, s3_bucket: str, bucket_contents: dict[str, list[str]], tmp_path: Path
) -> None:
    """``python -m bookstore.cli`` (how the server starts ``bookstore run``) loads every
    subcommand, ``published`` included, without an import cycle."""
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path),
        "JUPYTER_CONFIG_PATH": str(tmp_path),
        "JPYNB_S3_BUCKET": s3_bucket,
        "JPYNB_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "JPYNB_S3_ACCESS_KEY_ID": s3_server.access_key_id,
        "JPYNB_S3_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        "BOOKSTORE_SPOOL_DIR": str(tmp_path / "spool"),
    }
    env.pop("JUPYTERHUB_USER", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bookstore.cli",
            "published",
            "--published-prefix=published/{username}",
            "--json",
            "--owner=alice",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    paths = sorted(n["path"] for n in json.loads(done.stdout)["published"])
    assert paths == ["report.ipynb", "sub/Analysis.ipynb"]


async def test_a_rare_q_pages_through_the_scan_budget(
    jp_fetch: Any,
    bookstore_ext: Any,
    bucket_contents: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A filtered answer reads at most MAX_SCAN_PAGES S3 list pages: it may hold fewer
    entries than asked, even none, with a token; following the tokens finds every match once."""
    monkeypatch.setattr(gallery, "LIST_PAGE_KEYS", 1)
    monkeypatch.setattr(gallery, "MAX_SCAN_PAGES", 2)
    answers: list[tuple[list[str], bool]] = []
    token = None
    for _ in range(20):
        params = {"q": "REPORT", **({"page_token": token} if token else {})}
        data = await get_json(jp_fetch, **params)
        token = data["next_token"]
        answers.append(([n["key"] for n in data["published"]], token is not None))
        if not token:
            break
    # Keys in order: alice/report, alice/sub/Analysis | bob/mine, carol%2Fx/odd | loose.
    assert answers == [
        (["published/alice/report.ipynb"], True),
        ([], True),  # no match in this answer's two S3 pages: not the end, go on
        ([], False),
    ]


async def test_versions_are_counted_per_key_across_s3_pages(
    jp_fetch: Any,
    bookstore_ext: Any,
    s3: Any,
    s3_bucket: str,
    bucket_contents: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bookstore_ext.gallery.count_budget = None  # wait for every count (a busy test machine)
    # A key that starts with another one: its versions are not the other's.
    for i in range(3):
        s3.put_object(
            Bucket=s3_bucket, Key="published/alice/report.ipynb.bak", Body=nb_body(f"bak {i}")
        )
    for i in range(2):
        s3.put_object(
            Bucket=s3_bucket, Key="published/alice/sub/Analysis.ipynb", Body=nb_body(f"a {i}")
        )
    data = await get_json(jp_fetch, owner="alice")
    counts = {n["path"]: n["versions"] for n in data["published"]}
    assert counts == {"report.ipynb": 2, "report.ipynb.bak": 3, "sub/Analysis.ipynb": 3}

    # Many versions: counted across ListObjectVersions pages (one version a page here).
    bookstore_ext.gallery.invalidate()
    bookstore_ext.gallery._counts.clear()
    monkeypatch.setattr(gallery, "LIST_PAGE_KEYS", 1)
    data = await get_json(jp_fetch, q="analysis")
    assert [(n["path"], n["versions"]) for n in data["published"]] == [("sub/Analysis.ipynb", 3)]


async def test_counts_not_back_in_time_are_left_out(
    jp_fetch: Any, bookstore_ext: Any, bucket_contents: dict[str, list[str]]
) -> None:
    bookstore_ext.gallery.count_budget = 0.0  # no time to count: the page does not wait
    data = await get_json(jp_fetch, owner="alice")
    assert [n["versions"] for n in data["published"]] == [None, None]
    assert data["published"][0]["version_id"] == bucket_contents["published/alice/report.ipynb"][-1]
    html = (await jp_fetch("bookstore/published", params={"owner": "bob"})).body.decode()
    assert "mine.ipynb" in html
    assert 'title="Published versions"' not in html  # no "N versions" tag


async def test_no_version_is_counted_when_listing_already_took_the_budget(
    jp_fetch: Any,
    bookstore_ext: Any,
    bucket_contents: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server whose list request alone takes longer than the count budget (moto with a big
    bucket scans all of it per request) is not sent version listings it cannot answer in time
    and would keep working on after the answer gave up."""
    g = bookstore_ext.gallery
    g.count_budget = 0.0  # every list request takes longer than this
    asked: list[str] = []
    real = g.count_versions

    async def spy(key: str) -> int:
        asked.append(key)
        return await real(key)

    monkeypatch.setattr(g, "count_versions", spy)
    data = await get_json(jp_fetch, owner="alice")
    assert [n["path"] for n in data["published"]] == ["report.ipynb", "sub/Analysis.ipynb"]
    assert [n["versions"] for n in data["published"]] == [None, None]
    assert asked == []
    assert g._count_backoff_until > time.monotonic()
