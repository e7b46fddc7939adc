"""Issue 14: drafts stay private. ``readable_prefixes`` is one check behind every door that
reads from S3: the clone API and page, the history API and pages, the CLI and the client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import notebook
from traitlets import TraitError

from bookstore.cli import main
from bookstore.client import BookstoreClient, BookstoreForbidden
from bookstore.settings import BookstoreSettings, prefix_matches

ALICE_DRAFT = "workspace/alice/draft.ipynb"
ALICE_PUBLISHED = "published/alice/report.ipynb"
BOB_DRAFT = "workspace/bob/mine.ipynb"


def nb_body(source: str) -> bytes:
    return json.dumps(notebook(source)).encode()


# --- the check itself (pure logic) -----------------------------------------------------------


def test_default_reads_own_workspace_everyones_published_and_own_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", "bob")
    s = BookstoreSettings(
        workspace_prefix="workspace/{username}", published_prefix="published/{username}"
    )
    assert s.readable_prefixes == ["workspace/{username}", "published/*", "runs"]
    assert s.unreadable_reason(BOB_DRAFT) is None
    assert s.unreadable_reason(ALICE_PUBLISHED) is None
    reason = s.unreadable_reason(ALICE_DRAFT)
    assert reason is not None
    assert "readable_prefixes" in reason
    assert ALICE_DRAFT in reason
    # A prefix is a whole segment: bob does not read bob2's drafts.
    assert s.unreadable_reason("workspace/bob2/x.ipynb") is not None
    # The prefix itself, or a key beside it, is not under it.
    assert s.unreadable_reason("workspace/bob") is not None
    assert s.unreadable_reason("other/x.ipynb") is not None


def test_runs_prefix_is_readable_when_the_setting_exists() -> None:
    from bookstore.settings import default_readable_prefixes

    assert default_readable_prefixes("ws/{username}", "pub/{username}/nb", "runs/{username}") == [
        "ws/{username}",
        "pub/*",
        "runs/{username}",
    ]
    assert default_readable_prefixes("ws", "pub") == ["ws", "pub"]


def test_star_matches_within_one_segment_only() -> None:
    assert prefix_matches("published/*", "published/alice/a.ipynb")
    assert prefix_matches("pub-*", "pub-alice/a.ipynb")
    assert not prefix_matches("published/*", "published/a.ipynb")  # no user segment
    assert prefix_matches("*", "anything/at/all.ipynb")
    assert prefix_matches("*", "top-level.ipynb")  # '*' alone: the whole bucket
    assert not prefix_matches("a*", "top-level.ipynb")
    assert not prefix_matches("a.b", "axb/c.ipynb")  # '.' is literal


def test_opting_in_to_open_drafts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", "bob")
    s = BookstoreSettings(readable_prefixes=["workspace/*", "published/*"])
    assert s.unreadable_reason(ALICE_DRAFT) is None


def test_readable_prefixes_are_validated() -> None:
    with pytest.raises(TraitError, match="readable_prefixes"):
        BookstoreSettings(readable_prefixes=["../x"])
    with pytest.raises(TraitError, match="readable_prefixes"):
        BookstoreSettings(readable_prefixes=["ws/{user}"])
    with pytest.raises(TraitError, match="single"):
        BookstoreSettings(readable_prefixes=["ws/**"])


# --- every door, on a real server and real S3 ------------------------------------------------


@pytest.fixture
def bookstore_config(
    bookstore_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    monkeypatch.setenv("JUPYTERHUB_USER", "bob")
    return {
        **bookstore_config,
        "workspace_prefix": "workspace/{username}",
        "published_prefix": "published/{username}",
    }


@pytest.fixture
def alice_objects(s3: Any, s3_bucket: str) -> dict[str, str]:
    """Alice's draft and her published notebook, as her server would have stored them."""
    return {
        key: s3.put_object(Bucket=s3_bucket, Key=key, Body=nb_body(key))["VersionId"]
        for key in (ALICE_DRAFT, ALICE_PUBLISHED)
    }


async def test_api_clone_of_a_draft_is_403_and_writes_nothing(
    jp_fetch: Any, jp_root_dir: Path, alice_objects: dict[str, str]
) -> None:
    resp = await jp_fetch(
        "api/bookstore/clone",
        method="POST",
        body=json.dumps({"s3_key": ALICE_DRAFT}),
        raise_error=False,
    )
    assert resp.code == 403
    assert "readable_prefixes" in json.loads(resp.body)["message"]
    assert not (jp_root_dir / "draft.ipynb").exists()

    ok = await jp_fetch(
        "api/bookstore/clone", method="POST", body=json.dumps({"s3_key": ALICE_PUBLISHED})
    )
    assert json.loads(ok.body)["path"] == "report.ipynb"


async def test_clone_page_of_a_draft_is_403(jp_fetch: Any, alice_objects: dict[str, str]) -> None:
    resp = await jp_fetch("bookstore/clone", params={"s3_key": ALICE_DRAFT}, raise_error=False)
    assert resp.code == 403
    assert b"readable_prefixes" in resp.body
    ok = await jp_fetch("bookstore/clone", params={"s3_key": ALICE_PUBLISHED})
    assert ok.code == 200


async def test_history_and_diff_outside_the_readable_prefixes_are_403(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    ids = [
        s3.put_object(Bucket=s3_bucket, Key=BOB_DRAFT, Body=nb_body(src))["VersionId"]
        for src in ("one", "two")
    ]
    listed = await jp_fetch("api/bookstore/versions/mine.ipynb")
    assert len(json.loads(listed.body)["versions"]) == 2
    # The admin narrows the list: bob's own workspace is no longer readable anywhere.
    bookstore_ext.bookstore_settings.readable_prefixes = ["published/*"]
    for route, params in (
        ("api/bookstore/versions/mine.ipynb", {}),
        ("api/bookstore/versions/mine.ipynb", {"version_id": ids[0]}),
        ("api/bookstore/diff/mine.ipynb", {"from": ids[0], "to": ids[1]}),
        ("bookstore/versions/mine.ipynb", {}),
        ("bookstore/diff/mine.ipynb", {"from": ids[0], "to": ids[1]}),
        ("api/bookstore/runs/mine.ipynb", {}),
    ):
        resp = await jp_fetch(route, params=params, raise_error=False)
        assert resp.code == 403, (route, params, resp.code)
        assert b"readable_prefixes" in resp.body


async def test_client_gets_forbidden(
    jp_serverapp: Any,
    jp_http_port: int,
    jp_base_url: str,
    http_server_client: Any,
    alice_objects: dict[str, str],
) -> None:
    import asyncio

    client = BookstoreClient(
        f"http://127.0.0.1:{jp_http_port}{jp_base_url}",
        jp_serverapp.identity_provider.token,
        timeout=20,
    )
    with pytest.raises(BookstoreForbidden, match="readable_prefixes"):
        await asyncio.to_thread(client.clone, ALICE_DRAFT)


def test_cli_clone_of_a_draft_fails(
    s3_server: Any,
    s3: Any,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key in (ALICE_DRAFT, ALICE_PUBLISHED):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=nb_body(key))
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "jupyter_server_config.py").write_text(
        "c.BookstoreSettings.workspace_prefix = 'workspace/{username}'\n"
        "c.BookstoreSettings.published_prefix = 'published/{username}'\n"
    )
    for name, value in {
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_CONFIG_PATH": str(config),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTERHUB_USER": "bob",
        "JPYNB_S3_BUCKET": s3_bucket,
        "JPYNB_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "JPYNB_S3_ACCESS_KEY_ID": s3_server.access_key_id,
        "JPYNB_S3_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        "BOOKSTORE_SPOOL_DIR": str(tmp_path / "spool"),
    }.items():
        monkeypatch.setenv(name, value)
    root = tmp_path / "root"
    root.mkdir()
    code = main(["clone", ALICE_DRAFT, f"--root-dir={root}"])
    _, err = capsys.readouterr()
    assert code == 1
    assert "readable_prefixes" in err
    assert not (root / "draft.ipynb").exists()
    assert main(["clone", ALICE_PUBLISHED, f"--root-dir={root}"]) == 0
    assert (root / "report.ipynb").exists()


def test_the_hub_user_wins_over_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under JupyterHub every single-user server may run as one OS user (e.g. jovyan): the
    prefixes and the readable check follow JUPYTERHUB_USER, never the OS account."""
    for var in ("USER", "LOGNAME", "USERNAME", "LNAME"):
        monkeypatch.setenv(var, "jovyan")
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    s = BookstoreSettings(
        workspace_prefix="workspace/{username}", published_prefix="published/{username}"
    )
    assert s.username == "alice"
    assert s.workspace == "workspace/alice"
    assert s.unreadable_reason("workspace/alice/a.ipynb") is None
    assert s.unreadable_reason("workspace/jovyan/a.ipynb") is not None
    monkeypatch.delenv("JUPYTERHUB_USER")
    assert BookstoreSettings(workspace_prefix="workspace/{username}").workspace == (
        "workspace/jovyan"
    )
