"""Issue 14: the gallery of published notebooks, on a real server and real S3:
``GET /api/bookstore/published``, the page ``/bookstore/published`` and ``bookstore published``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from helpers import notebook

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


async def test_narrowed_readable_prefixes_hide_notebooks(
    jp_fetch: Any, bookstore_ext: Any, bucket_contents: dict[str, list[str]]
) -> None:
    bookstore_ext.bookstore_settings.readable_prefixes = ["published/{username}"]
    data = await get_json(jp_fetch, limit=2)
    assert [n["key"] for n in data["published"]] == ["published/bob/mine.ipynb"]


async def test_page_links_to_clone_and_own_history(
    jp_fetch: Any, bookstore_ext: Any, s3_bucket: str, bucket_contents: dict[str, list[str]]
) -> None:
    resp = await jp_fetch("bookstore/published")
    html = resp.body.decode()
    assert "sub/Analysis.ipynb" in html
    assert "carol/x" in html
    assert "withdrawn" not in html
    assert "draft" not in html
    clone_links = [
        parse_qs(urlparse(href.replace("&amp;", "&")).query)
        for href in __import__("re").findall(r'href="([^"]*bookstore/clone\?[^"]*)"', html)
    ]
    report = next(q for q in clone_links if q["s3_key"] == ["published/alice/report.ipynb"])
    assert report["s3_version_id"] == [bucket_contents["published/alice/report.ipynb"][-1]]
    assert report["s3_bucket"] == [s3_bucket]
    # History links only for bob's own notebooks (the history pages read his prefixes).
    assert "bookstore/versions/mine.ipynb?prefix=published" in html
    assert "bookstore/versions/report.ipynb" not in html

    filtered = (await jp_fetch("bookstore/published", params={"q": "zzz"})).body.decode()
    assert "No published notebook matches" in filtered


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
