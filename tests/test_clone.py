"""Cloning from S3 and from the shared folder, against a real Jupyter server and real S3."""

from __future__ import annotations

import json
import os
import uuid
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import BACKEND
from helpers import list_versions, notebook
from tornado.httpclient import HTTPResponse

from bookstore.testing import S3Server, TcpProxy


def nb_bytes(nb: dict[str, Any]) -> bytes:
    return (nbformat.writes(nbformat.from_dict(nb), version=nbformat.NO_CONVERT) + "\n").encode()


def put(s3: Any, bucket: str, key: str, body: bytes) -> str:
    """Put an object with boto3; return its version id."""
    return str(s3.put_object(Bucket=bucket, Key=key, Body=body)["VersionId"])


def message(resp: HTTPResponse) -> str:
    return str(json.loads(resp.body)["message"])


def listing(root: Path) -> list[str]:
    """Every file under the Jupyter root, to prove that nothing was written."""
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if ".ipynb_checkpoints" not in p.parts
    )


async def clone(jp_fetch: Any, **body: Any) -> HTTPResponse:
    return await jp_fetch(  # type: ignore[no-any-return]
        "api/bookstore/clone", method="POST", body=json.dumps(body), raise_error=False
    )


async def fs_clone(jp_fetch: Any, **body: Any) -> HTTPResponse:
    return await jp_fetch(  # type: ignore[no-any-return]
        "api/bookstore/fs-clone", method="POST", body=json.dumps(body), raise_error=False
    )


@pytest.fixture
def bookstore_config(bookstore_config: dict[str, Any]) -> dict[str, Any]:
    """These tests are about cloning itself, from keys anywhere in the bucket; which keys
    may be read (readable_prefixes) is tested in test_readable.py."""
    return {**bookstore_config, "readable_prefixes": ["*"]}


# --- clone from S3: success --------------------------------------------------------------------


async def test_clone_notebook_from_s3(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    nb = notebook("print('from s3')", n_cells=2)
    version = put(s3, s3_bucket, "published/team/analysis.ipynb", nb_bytes(nb))
    resp = await clone(jp_fetch, s3_bucket=s3_bucket, s3_key="published/team/analysis.ipynb")
    assert resp.code == 200, resp.body
    model = json.loads(resp.body)
    assert model["path"] == "analysis.ipynb"
    assert model["type"] == "notebook"
    assert model["s3_path"] == f"s3://{s3_bucket}/published/team/analysis.ipynb"
    assert model["versionID"] == version
    assert "content" not in model
    assert resp.headers["Location"].endswith("/api/contents/analysis.ipynb")
    assert (jp_root_dir / "analysis.ipynb").read_bytes() == nb_bytes(nb)


async def test_clone_defaults_to_the_servers_bucket(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    put(s3, s3_bucket, "x/default.ipynb", nb_bytes(notebook()))
    resp = await clone(jp_fetch, s3_key="x/default.ipynb")
    assert resp.code == 200, resp.body
    assert json.loads(resp.body)["s3_path"] == f"s3://{s3_bucket}/x/default.ipynb"


async def test_clone_a_specific_older_version(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    old, new = notebook("old"), notebook("new")
    old_version = put(s3, s3_bucket, "workspace/v.ipynb", nb_bytes(old))
    put(s3, s3_bucket, "workspace/v.ipynb", nb_bytes(new))
    resp = await clone(
        jp_fetch, s3_bucket=s3_bucket, s3_key="workspace/v.ipynb", s3_version_id=old_version
    )
    assert resp.code == 200, resp.body
    assert json.loads(resp.body)["versionID"] == old_version
    assert (jp_root_dir / "v.ipynb").read_bytes() == nb_bytes(old)


async def test_clone_never_overwrites_by_default_it_picks_a_free_name(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    mine = nb_bytes(notebook("mine"))
    (jp_root_dir / "nb.ipynb").write_bytes(mine)
    theirs = nb_bytes(notebook("theirs"))
    put(s3, s3_bucket, "published/nb.ipynb", theirs)
    paths = []
    for _ in range(2):
        resp = await clone(jp_fetch, s3_bucket=s3_bucket, s3_key="published/nb.ipynb")
        assert resp.code == 200, resp.body
        paths.append(json.loads(resp.body)["path"])
    assert paths == ["nb-1.ipynb", "nb-2.ipynb"]
    assert (jp_root_dir / "nb.ipynb").read_bytes() == mine
    assert (jp_root_dir / "nb-2.ipynb").read_bytes() == theirs


async def test_clone_with_overwrite_replaces_the_file_and_archives_it(
    jp_fetch: Any, jp_root_dir: Path, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    await jp_fetch(
        "api/contents/nb.ipynb",
        method="PUT",
        body=json.dumps({"type": "notebook", "format": "json", "content": notebook("mine")}),
    )
    assert await bookstore_ext.archiver.wait_idle(10)
    before = list_versions(s3, s3_bucket, "workspace/nb.ipynb")
    theirs = notebook("theirs")
    put(s3, s3_bucket, "published/nb.ipynb", nb_bytes(theirs))

    resp = await clone(jp_fetch, s3_bucket=s3_bucket, s3_key="published/nb.ipynb", overwrite=True)
    assert resp.code == 200, resp.body
    assert json.loads(resp.body)["path"] == "nb.ipynb"
    assert (jp_root_dir / "nb.ipynb").read_bytes() == nb_bytes(theirs)
    assert await bookstore_ext.archiver.wait_idle(10)
    after = list_versions(s3, s3_bucket, "workspace/nb.ipynb")
    assert len(after) == len(before) + 1
    newest = s3.get_object(
        Bucket=s3_bucket, Key="workspace/nb.ipynb", VersionId=after[0]["VersionId"]
    )
    assert newest["Body"].read() == nb_bytes(theirs)


async def test_clone_to_a_target_path_and_into_a_folder(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    (jp_root_dir / "sub").mkdir()
    put(s3, s3_bucket, "published/a.ipynb", nb_bytes(notebook()))
    renamed = await clone(
        jp_fetch, s3_bucket=s3_bucket, s3_key="published/a.ipynb", target_path="sub/b.ipynb"
    )
    into = await clone(jp_fetch, s3_bucket=s3_bucket, s3_key="published/a.ipynb", target_path="sub")
    assert json.loads(renamed.body)["path"] == "sub/b.ipynb"
    assert json.loads(into.body)["path"] == "sub/a.ipynb"


async def test_clone_of_text_and_binary_files(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    text = "a,b\n1,é\n".encode()
    binary = bytes(range(256))
    put(s3, s3_bucket, "data/table.csv", text)
    put(s3, s3_bucket, "data/blob.bin", binary)
    for key, expected in (("data/table.csv", text), ("data/blob.bin", binary)):
        resp = await clone(jp_fetch, s3_bucket=s3_bucket, s3_key=key)
        assert resp.code == 200, resp.body
        assert json.loads(resp.body)["type"] == "file"
        assert (jp_root_dir / os.path.basename(key)).read_bytes() == expected


# --- clone from S3: errors, nothing written ----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b"{}", "s3_key"),
        (b'{"s3_key": "/"}', "s3_key"),
        (b'{"s3_key": "folder/"}', "folder"),
        (b'{"s3_key": 7}', "s3_key"),
        (b'{"s3_key": "a.ipynb", "target_path": "../a.ipynb"}', "target_path"),
        (b'{"s3_key": "a.ipynb", "target_path": "/tmp/a.ipynb"}', "target_path"),
        (b'{"s3_key": "a.ipynb", "target_path": "a\\\\b.ipynb"}', "target_path"),
        (b'{"s3_key": "a.ipynb", "target_path": ".hidden.ipynb"}', "hidden"),
        (b'{"s3_key": "a.ipynb", "overwrite": "yes"}', "overwrite"),
        (b'{"s3_key": "a.ipynb", "s3_version_id": "a b"}', "version"),
        (b'{"s3_key": "a.ipynb", "s3_bucket": 3}', "s3_bucket"),
    ],
)
async def test_clone_bad_input_is_400(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str, body: bytes, expected: str
) -> None:
    put(s3, s3_bucket, "a.ipynb", nb_bytes(notebook()))
    resp = await jp_fetch("api/bookstore/clone", method="POST", body=body, raise_error=False)
    assert resp.code == 400, resp.body
    assert expected in message(resp)
    assert listing(jp_root_dir) == []


async def test_clone_into_a_missing_folder_is_404(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    put(s3, s3_bucket, "a.ipynb", nb_bytes(notebook()))
    resp = await clone(jp_fetch, s3_key="a.ipynb", target_path="nowhere/a.ipynb")
    assert resp.code == 404
    assert "nowhere" in message(resp)
    assert listing(jp_root_dir) == []


async def test_clone_over_a_folder_is_409(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    (jp_root_dir / "d.ipynb").mkdir()
    put(s3, s3_bucket, "d.ipynb", nb_bytes(notebook()))
    resp = await clone(jp_fetch, s3_key="d.ipynb", target_path="d.ipynb/", overwrite=True)
    assert resp.code == 200  # a trailing slash means "into this folder"
    resp = await clone(jp_fetch, s3_key="d.ipynb", overwrite=True)
    assert resp.code == 409
    assert listing(jp_root_dir) == ["d.ipynb", "d.ipynb/d.ipynb"]


async def test_clone_from_a_bucket_that_is_not_allowed_is_403(
    jp_fetch: Any, jp_root_dir: Path, s3_server: S3Server, s3: Any, s3_bucket: str
) -> None:
    other = f"other-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(other)
    put(s3, other, "secret.ipynb", nb_bytes(notebook()))
    resp = await clone(jp_fetch, s3_bucket=other, s3_key="secret.ipynb")
    assert resp.code == 403
    assert "not allowed" in message(resp)
    assert listing(jp_root_dir) == []


class TestAllowedBuckets:
    @pytest.fixture
    def other_bucket(self, s3_server: S3Server) -> str:
        name = f"shared-{uuid.uuid4().hex[:12]}"
        s3_server.create_bucket(name)
        return name

    @pytest.fixture
    def bookstore_config(
        self, bookstore_config: dict[str, Any], other_bucket: str
    ) -> dict[str, Any]:
        return {**bookstore_config, "clone_allowed_buckets": [other_bucket, "never-created-bkt"]}

    async def test_clone_from_a_listed_bucket(
        self, jp_fetch: Any, jp_root_dir: Path, s3: Any, other_bucket: str
    ) -> None:
        put(s3, other_bucket, "shared.ipynb", nb_bytes(notebook()))
        resp = await clone(jp_fetch, s3_bucket=other_bucket, s3_key="shared.ipynb")
        assert resp.code == 200, resp.body
        assert (jp_root_dir / "shared.ipynb").exists()

    async def test_clone_from_a_listed_bucket_s3_does_not_have_is_502(
        self, jp_fetch: Any, jp_root_dir: Path
    ) -> None:
        resp = await clone(jp_fetch, s3_bucket="never-created-bkt", s3_key="x.ipynb")
        assert resp.code == 502
        assert "NoSuchBucket" in message(resp)
        assert listing(jp_root_dir) == []


async def test_clone_of_a_missing_key_is_404(
    jp_fetch: Any, jp_root_dir: Path, s3_bucket: str
) -> None:
    resp = await clone(jp_fetch, s3_bucket=s3_bucket, s3_key="nope/missing.ipynb")
    assert resp.code == 404
    assert "missing.ipynb" in message(resp)
    assert listing(jp_root_dir) == []


async def test_clone_of_a_missing_version_is_404(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    put(s3, s3_bucket, "v.ipynb", nb_bytes(notebook()))
    # A well-formed id that belongs to another key.
    foreign = put(s3, s3_bucket, "other.ipynb", nb_bytes(notebook()))
    resp = await clone(jp_fetch, s3_bucket=s3_bucket, s3_key="v.ipynb", s3_version_id=foreign)
    assert resp.code == 404, resp.body
    assert listing(jp_root_dir) == []


async def test_clone_of_a_malformed_version_is_400_or_404(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    put(s3, s3_bucket, "v.ipynb", nb_bytes(notebook()))
    resp = await clone(
        jp_fetch, s3_bucket=s3_bucket, s3_key="v.ipynb", s3_version_id="not-a-version-id"
    )
    assert resp.code in {400, 404}, resp.body
    assert listing(jp_root_dir) == []


async def test_clone_of_a_deleted_key_is_404(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    put(s3, s3_bucket, "gone.ipynb", nb_bytes(notebook()))
    s3.delete_object(Bucket=s3_bucket, Key="gone.ipynb")
    resp = await clone(jp_fetch, s3_bucket=s3_bucket, s3_key="gone.ipynb")
    assert resp.code == 404
    assert listing(jp_root_dir) == []


@pytest.mark.parametrize(
    "body", [b"this is not json", b'{"nbformat": 4, "nbformat_minor": 5, "cells": "no"}']
)
async def test_clone_of_an_invalid_notebook_is_422(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str, body: bytes
) -> None:
    put(s3, s3_bucket, "broken.ipynb", body)
    resp = await clone(jp_fetch, s3_bucket=s3_bucket, s3_key="broken.ipynb")
    assert resp.code == 422
    assert "broken.ipynb" in message(resp)
    assert listing(jp_root_dir) == []


async def test_clone_without_token_is_403(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    put(s3, s3_bucket, "a.ipynb", nb_bytes(notebook()))
    resp = await jp_fetch(
        "api/bookstore/clone",
        method="POST",
        body=json.dumps({"s3_key": "a.ipynb"}),
        headers={"Authorization": ""},
        raise_error=False,
    )
    assert resp.code == 403
    assert listing(jp_root_dir) == []


class TestBodyLimit:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {**bookstore_config, "max_request_body_size": 1024}

    async def test_clone_body_over_the_limit_is_413(self, jp_fetch: Any, jp_root_dir: Path) -> None:
        resp = await clone(jp_fetch, s3_key="a.ipynb", target_path="x" * 2000 + ".ipynb")
        assert resp.code == 413
        assert listing(jp_root_dir) == []


class TestS3Failures:
    @pytest.fixture
    def bookstore_config(
        self, bookstore_config: dict[str, Any], s3_proxy: TcpProxy
    ) -> dict[str, Any]:
        config = {**bookstore_config, "s3_endpoint_url": s3_proxy.url, "s3_read_timeout": 5.0}
        return config

    async def test_clone_while_s3_is_unreachable_is_503(
        self, jp_fetch: Any, jp_root_dir: Path, s3_proxy: TcpProxy, s3: Any, s3_bucket: str
    ) -> None:
        put(s3, s3_bucket, "a.ipynb", nb_bytes(notebook()))
        s3_proxy.cut()
        resp = await clone(jp_fetch, s3_bucket=s3_bucket, s3_key="a.ipynb")
        assert resp.code == 503
        assert listing(jp_root_dir) == []
        s3_proxy.restore()
        assert (await clone(jp_fetch, s3_bucket=s3_bucket, s3_key="a.ipynb")).code == 200


class TestWrongCredentials:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        if BACKEND != "seaweedfs":
            pytest.skip("moto accepts any credentials; run with BOOKSTORE_TEST_S3=seaweedfs")
        return {**bookstore_config, "s3_access_key_id": "unknown-key-id"}

    async def test_clone_with_credentials_s3_refuses_is_502(
        self, jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
    ) -> None:
        put(s3, s3_bucket, "a.ipynb", nb_bytes(notebook()))
        resp = await clone(jp_fetch, s3_bucket=s3_bucket, s3_key="a.ipynb")
        assert resp.code == 502
        assert listing(jp_root_dir) == []


# --- landing page and XSRF ---------------------------------------------------------------------


def cookies_of(resp: HTTPResponse) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in resp.headers.get_list("Set-Cookie"):
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


async def test_landing_page_names_the_object_and_links_its_history(
    jp_fetch: Any, jp_base_url: str, s3_bucket: str
) -> None:
    resp = await jp_fetch(
        "bookstore/clone",
        params={
            "s3_bucket": s3_bucket,
            "s3_key": "workspace/dir/my nb.ipynb",
            "s3_version_id": "v1",
        },
    )
    page = resp.body.decode()
    assert resp.headers["Content-Type"].startswith("text/html")
    assert s3_bucket in page
    assert "workspace/dir/my nb.ipynb" in page
    assert "v1" in page
    assert f'href="{jp_base_url}bookstore/versions/dir/my%20nb.ipynb?prefix=workspace"' in page
    config = json.loads(page.split('id="bookstore-clone-config">')[1].split("</script>")[0])
    assert config["api_url"] == f"{jp_base_url}api/bookstore/clone"
    assert config["post_model"] == {
        "s3_bucket": s3_bucket,
        "s3_key": "workspace/dir/my nb.ipynb",
        "s3_version_id": "v1",
    }
    assert config["xsrf_token"]


class TestLandingPageInJupyterLab:
    @pytest.fixture
    def jp_server_config(self, jp_server_config: dict[str, Any]) -> dict[str, Any]:
        return {
            **jp_server_config,
            "ServerApp": {**jp_server_config["ServerApp"], "default_url": "/lab"},
        }

    async def test_the_page_opens_clones_in_the_default_frontend(
        self, jp_fetch: Any, jp_base_url: str
    ) -> None:
        page = (await jp_fetch("bookstore/clone", params={"s3_key": "a.ipynb"})).body.decode()
        config = json.loads(page.split('id="bookstore-clone-config">')[1].split("</script>")[0])
        assert config["open_notebook_url"] == f"{jp_base_url}lab/tree/{{path}}"
        assert config["open_file_url"] == f"{jp_base_url}lab/tree/{{path}}"


async def test_landing_page_escapes_what_it_shows(jp_fetch: Any, s3_bucket: str) -> None:
    key = "x/</script><script>alert(1)</script>.ipynb"
    page = (await jp_fetch("bookstore/clone", params={"s3_key": key})).body.decode()
    assert "<script>alert(1)" not in page
    assert 'id="bookstore-history-link"' not in page  # not under a bookstore prefix


@pytest.mark.parametrize(
    ("params", "status"),
    [({"s3_key": ""}, 400), ({"s3_key": "a.ipynb", "s3_bucket": "not-allowed-bucket"}, 403)],
)
async def test_landing_page_refuses_bad_parameters(
    jp_fetch: Any, params: dict[str, str], status: int
) -> None:
    resp = await jp_fetch("bookstore/clone", params=params, raise_error=False)
    assert resp.code == status


async def test_clone_post_with_a_cookie_needs_the_xsrf_token(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    """What the landing page does: cookie auth plus X-XSRFToken; without the token: 403."""
    put(s3, s3_bucket, "published/x.ipynb", nb_bytes(notebook()))
    page = await jp_fetch("bookstore/clone", params={"s3_key": "published/x.ipynb"})
    cookies = cookies_of(page)
    xsrf = cookies.pop("_xsrf")
    login = "; ".join(f"{k}={v}" for k, v in cookies.items())
    assert login, "the page should have set a login cookie"
    body = json.dumps({"s3_key": "published/x.ipynb"})

    no_token = await jp_fetch(
        "api/bookstore/clone",
        method="POST",
        body=body,
        raise_error=False,
        headers={"Authorization": "", "Cookie": login},
    )
    assert no_token.code == 403
    assert "XSRF" in no_token.body.decode() or "_xsrf" in no_token.body.decode()
    assert listing(jp_root_dir) == []

    with_token = await jp_fetch(
        "api/bookstore/clone",
        method="POST",
        body=body,
        raise_error=False,
        headers={"Authorization": "", "Cookie": f"{login}; _xsrf={xsrf}", "X-XSRFToken": xsrf},
    )
    assert with_token.code == 200, with_token.body
    assert listing(jp_root_dir) == ["x.ipynb"]


class TestFeatureSwitches:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {
            **bookstore_config,
            "enable_s3_cloning": False,
            "fs_cloning_basedir": "/nonexistent",
        }

    @pytest.mark.parametrize(
        "path",
        ["api/bookstore/clone", "bookstore/clone", "api/bookstore/fs-clone", "bookstore/fs-clone"],
    )
    async def test_disabled_clone_endpoints_are_not_registered(
        self, jp_fetch: Any, path: str
    ) -> None:
        resp = await jp_fetch(path, method="POST", body="{}", raise_error=False)
        assert resp.code == 404
        status = json.loads((await jp_fetch("api/bookstore")).body)
        assert status["features"]["s3_clone_valid"] is False
        assert status["features"]["fs_clone_valid"] is False


# --- clone from the shared folder --------------------------------------------------------------


class TestFSClone:
    @pytest.fixture
    def shared(self, tmp_path: Path) -> Path:
        shared = tmp_path / "shared"
        (shared / "sub").mkdir(parents=True)
        (shared / "lesson.ipynb").write_bytes(nb_bytes(notebook("lesson")))
        (shared / "sub" / "data.txt").write_text("some data\n")
        outside = tmp_path / "outside-secret.txt"
        outside.write_text("secret\n")
        (shared / "escape.txt").symlink_to(outside)
        (shared / "sub" / "up").symlink_to(tmp_path)
        (shared / "alias.ipynb").symlink_to(shared / "lesson.ipynb")
        return shared

    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any], shared: Path) -> dict[str, Any]:
        return {**bookstore_config, "fs_cloning_basedir": str(shared)}

    async def test_fs_clone_copies_a_notebook(
        self, jp_fetch: Any, jp_root_dir: Path, shared: Path
    ) -> None:
        resp = await fs_clone(jp_fetch, relpath="lesson.ipynb")
        assert resp.code == 200, resp.body
        model = json.loads(resp.body)
        assert (model["path"], model["type"], model["relpath"]) == (
            "lesson.ipynb",
            "notebook",
            "lesson.ipynb",
        )
        assert (jp_root_dir / "lesson.ipynb").read_bytes() == (shared / "lesson.ipynb").read_bytes()
        again = json.loads((await fs_clone(jp_fetch, relpath="lesson.ipynb")).body)
        assert again["path"] == "lesson-1.ipynb"

    async def test_fs_clone_of_a_file_to_a_target_path(
        self, jp_fetch: Any, jp_root_dir: Path
    ) -> None:
        resp = await fs_clone(jp_fetch, relpath="sub/data.txt", target_path="copy.txt")
        assert resp.code == 200, resp.body
        assert (jp_root_dir / "copy.txt").read_text() == "some data\n"

    async def test_fs_clone_follows_symlinks_that_stay_inside(
        self, jp_fetch: Any, jp_root_dir: Path
    ) -> None:
        resp = await fs_clone(jp_fetch, relpath="alias.ipynb")
        assert resp.code == 200, resp.body

    @pytest.mark.parametrize(
        "relpath",
        [
            "../outside-secret.txt",
            "/etc/passwd",
            "sub\\data.txt",
            "",
            "escape.txt",
            "sub/up/outside-secret.txt",
            "sub",
        ],
    )
    async def test_fs_clone_refuses_paths_out_of_the_shared_folder(
        self, jp_fetch: Any, jp_root_dir: Path, relpath: str
    ) -> None:
        resp = await fs_clone(jp_fetch, relpath=relpath)
        assert resp.code == 400, resp.body
        assert "secret" not in resp.body.decode().replace("outside-secret.txt", "")
        assert listing(jp_root_dir) == []

    async def test_fs_clone_of_a_missing_file_is_404(
        self, jp_fetch: Any, jp_root_dir: Path
    ) -> None:
        resp = await fs_clone(jp_fetch, relpath="sub/missing.ipynb")
        assert resp.code == 404
        assert listing(jp_root_dir) == []

    async def test_fs_clone_without_token_is_403(self, jp_fetch: Any, jp_root_dir: Path) -> None:
        resp = await jp_fetch(
            "api/bookstore/fs-clone",
            method="POST",
            body=json.dumps({"relpath": "lesson.ipynb"}),
            headers={"Authorization": ""},
            raise_error=False,
        )
        assert resp.code == 403
        assert listing(jp_root_dir) == []

    async def test_fs_landing_page(self, jp_fetch: Any, jp_base_url: str) -> None:
        page = (await jp_fetch("bookstore/fs-clone", params={"relpath": "sub/data.txt"})).body
        text = page.decode()
        assert "sub/data.txt" in text
        assert f"{jp_base_url}api/bookstore/fs-clone" in text

    @pytest.mark.parametrize(("relpath", "status"), [("escape.txt", 400), ("nope.txt", 404)])
    async def test_fs_landing_page_refuses_what_the_api_refuses(
        self, jp_fetch: Any, relpath: str, status: int
    ) -> None:
        resp = await jp_fetch("bookstore/fs-clone", params={"relpath": relpath}, raise_error=False)
        assert resp.code == status
