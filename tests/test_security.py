"""Issue 7, security and bad input: trust, confinement, permissions, CSP, tokens, usernames,
hostile JSON and paths, early answers on keep-alive connections."""

from __future__ import annotations

import asyncio
import http.client
import http.server
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from helpers import notebook
from jupyter_server.auth import Authorizer
from tornado.httpclient import HTTPResponse

from bookstore.client import BookstoreClient
from bookstore.settings import BookstoreSettings, decode_username, encode_username


def nb_bytes(nb: dict[str, Any]) -> bytes:
    return (nbformat.writes(nbformat.from_dict(nb), version=nbformat.NO_CONVERT) + "\n").encode()


def listing(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if ".ipynb_checkpoints" not in p.parts
    )


def message(resp: HTTPResponse) -> str:
    return str(json.loads(resp.body)["message"])


async def post(jp_fetch: Any, url: str, body: Any) -> HTTPResponse:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return await jp_fetch(url, method="POST", body=raw, raise_error=False)  # type: ignore[no-any-return]


def raw_bytes(nb: dict[str, Any]) -> bytes:
    """The notebook as JSON, trust marks kept (``nbformat.writes`` would drop them)."""
    return json.dumps(nb).encode()


def trusted_notebook(js: bool = True) -> dict[str, Any]:
    """A notebook whose code cell claims to be trusted and (``js``) carries a JS output."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("display(Javascript('alert(1)'))")
    cell.metadata["trusted"] = True
    if js:
        cell.outputs = [
            nbformat.v4.new_output(
                "display_data",
                data={"application/javascript": "alert(document.cookie)", "text/plain": "<JS>"},
            )
        ]
    nb.cells = [cell, nbformat.v4.new_markdown_cell("hello")]
    out: dict[str, Any] = json.loads(nbformat.writes(nb))
    out["cells"][0]["metadata"]["trusted"] = True
    return out


async def assert_untrusted(jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, path: str) -> None:
    model = json.loads((await jp_fetch("api", "contents", path)).body)
    code = [c for c in model["content"]["cells"] if c["cell_type"] == "code"]
    assert code
    assert all(c["metadata"].get("trusted") is False for c in code), code
    on_disk = nbformat.read(jp_root_dir / path, as_version=4)
    assert jp_serverapp.contents_manager.notary.check_signature(on_disk) is False


# --- 1. clones are never trusted ----------------------------------------------------------------


@pytest.mark.parametrize("js", [True, False], ids=["js-output", "safe-outputs"])
async def test_clone_from_s3_is_never_trusted(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, s3: Any, s3_bucket: str, js: bool
) -> None:
    data = raw_bytes(trusted_notebook(js))
    old = s3.put_object(Bucket=s3_bucket, Key="published/t.ipynb", Body=data)["VersionId"]
    s3.put_object(Bucket=s3_bucket, Key="published/t.ipynb", Body=nb_bytes(notebook()))
    latest = await post(jp_fetch, "api/bookstore/clone", {"s3_key": "published/t.ipynb"})
    assert latest.code == 200, latest.body
    resp = await post(
        jp_fetch,
        "api/bookstore/clone",
        {"s3_key": "published/t.ipynb", "s3_version_id": old, "target_path": "old.ipynb"},
    )
    assert resp.code == 200, resp.body
    await assert_untrusted(jp_fetch, jp_serverapp, jp_root_dir, "old.ipynb")


async def test_clone_of_content_trusted_here_before_is_still_untrusted(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    """Same bytes as a notebook this server signed: the clone must not inherit that trust."""
    nb = trusted_notebook()
    for cell in nb["cells"]:
        cell["metadata"].pop("trusted", None)
    jp_serverapp.contents_manager.notary.sign(nbformat.from_dict(nb))
    s3.put_object(Bucket=s3_bucket, Key="published/same.ipynb", Body=nb_bytes(nb))
    resp = await post(jp_fetch, "api/bookstore/clone", {"s3_key": "published/same.ipynb"})
    assert resp.code == 200, resp.body
    await assert_untrusted(jp_fetch, jp_serverapp, jp_root_dir, "same.ipynb")


# --- 2. fs-clone stays inside the shared folder ------------------------------------------------


class TestSharedFolder:
    @pytest.fixture
    def shared(self, tmp_path: Path) -> Path:
        shared = tmp_path / "shared"
        (shared / "sub").mkdir(parents=True)
        (shared / "sub" / "data.txt").write_text("inside\n")
        (shared / "trusted.ipynb").write_bytes(raw_bytes(trusted_notebook()))
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "data.txt").write_text("SECRET\n")
        os.mkfifo(shared / "pipe.txt")
        return shared

    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any], shared: Path) -> dict[str, Any]:
        return {**bookstore_config, "fs_cloning_basedir": str(shared)}

    async def test_fs_clone_is_never_trusted(
        self, jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path
    ) -> None:
        resp = await post(jp_fetch, "api/bookstore/fs-clone", {"relpath": "trusted.ipynb"})
        assert resp.code == 200, resp.body
        await assert_untrusted(jp_fetch, jp_serverapp, jp_root_dir, "trusted.ipynb")

    async def test_fs_clone_of_a_lone_surrogate_is_400(
        self, jp_fetch: Any, jp_root_dir: Path
    ) -> None:
        resp = await post(jp_fetch, "api/bookstore/fs-clone", rb'{"relpath": "sub/\ud800"}')
        assert resp.code == 400, resp.body
        assert "surrogate" in message(resp)
        assert listing(jp_root_dir) == []

    async def test_fs_clone_of_a_fifo_is_refused_at_once(
        self, jp_fetch: Any, jp_root_dir: Path
    ) -> None:
        for url in ("api/bookstore/fs-clone", "bookstore/fs-clone"):
            if url.startswith("api"):
                resp = await jp_fetch(
                    url,
                    method="POST",
                    body=json.dumps({"relpath": "pipe.txt"}),
                    raise_error=False,
                    request_timeout=20,
                )
                assert "FIFO" in message(resp)
            else:
                resp = await jp_fetch(
                    url, params={"relpath": "pipe.txt"}, raise_error=False, request_timeout=20
                )
            assert resp.code == 400, resp.body
        assert listing(jp_root_dir) == []

    async def test_fs_clone_never_leaks_while_a_folder_is_swapped_for_a_symlink(
        self, jp_fetch: Any, jp_root_dir: Path, shared: Path, tmp_path: Path
    ) -> None:
        """A thread swaps ``sub`` for a symlink to a folder outside, back and forth."""
        stop = threading.Event()
        swaps = [0]

        def swap() -> None:
            sub, parked = shared / "sub", shared / "sub.parked"
            while not stop.is_set():
                os.rename(sub, parked)
                os.symlink(tmp_path / "outside", sub)
                stop.wait(0.001)  # let requests meet both states, not only the gaps
                os.unlink(sub)
                os.rename(parked, sub)
                swaps[0] += 1
                stop.wait(0.001)

        thread = threading.Thread(target=swap, daemon=True)
        thread.start()
        statuses: dict[int, int] = {}
        leaks = 0
        try:
            for _ in range(150):
                resp = await post(
                    jp_fetch,
                    "api/bookstore/fs-clone",
                    {"relpath": "sub/data.txt", "target_path": "copy.txt", "overwrite": True},
                )
                statuses[resp.code] = statuses.get(resp.code, 0) + 1
                if resp.code == 200 and "SECRET" in (jp_root_dir / "copy.txt").read_text():
                    leaks += 1
        finally:
            stop.set()
            thread.join()
        assert swaps[0] > 0
        assert leaks == 0, statuses
        assert set(statuses) <= {200, 400, 404}, statuses
        # Once the folder holds still, the same request clones the file from inside.
        resp = await post(
            jp_fetch,
            "api/bookstore/fs-clone",
            {"relpath": "sub/data.txt", "target_path": "copy.txt", "overwrite": True},
        )
        assert resp.code == 200, resp.body
        assert (jp_root_dir / "copy.txt").read_text() == "inside\n"


@pytest.mark.parametrize("change", ["removed", "made a folder"])
def test_open_beneath_when_a_symlink_changes_between_stat_and_readlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """The step between ``lstat`` and ``readlink`` of a walk, hit on purpose.

    ``sub`` is a symlink when the walk looks at it; just before the walk reads the link,
    the link is removed (404), or replaced by a real folder (the walk looks again and opens
    the file inside). Never an unhandled ``OSError``: a request would answer 500.
    """
    from bookstore.shared_folder import NotInSharedFolder, read_beneath

    shared = tmp_path / "shared"
    (shared / "real").mkdir(parents=True)
    (shared / "real" / "data.txt").write_text("inside\n")
    (shared / "sub").symlink_to("real")
    real_readlink = os.readlink

    def racing_readlink(path: Any, *, dir_fd: int | None = None) -> str:
        if path == "sub":
            os.unlink(shared / "sub")
            if change == "made a folder":
                (shared / "sub").mkdir()
                (shared / "sub" / "data.txt").write_text("swapped in\n")
        return real_readlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "readlink", racing_readlink)
    if change == "removed":
        with pytest.raises(NotInSharedFolder, match=r"there is no file 'sub/data\.txt'"):
            read_beneath(str(shared), "sub/data.txt")
    else:
        assert read_beneath(str(shared), "sub/data.txt") == b"swapped in\n"


# --- 3. clone, fs-clone and restore need contents permissions --------------------------------


class NoContentsWrites(Authorizer):
    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return not (resource == "contents" and action == "write")


class NoContentsReads(Authorizer):
    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return resource != "contents"


class TestContentsPermissions:
    @pytest.fixture
    def authorizer(self) -> type[Authorizer]:
        return NoContentsWrites

    @pytest.fixture
    def shared(self, tmp_path: Path) -> Path:
        shared = tmp_path / "shared"
        shared.mkdir()
        (shared / "lesson.ipynb").write_bytes(nb_bytes(notebook("lesson")))
        return shared

    @pytest.fixture
    def jp_server_config(
        self, jp_server_config: dict[str, Any], authorizer: type[Authorizer], shared: Path
    ) -> dict[str, Any]:
        return {
            **jp_server_config,
            "ServerApp": {**jp_server_config["ServerApp"], "authorizer_class": authorizer},
            "BookstoreSettings": {
                **jp_server_config["BookstoreSettings"],
                "fs_cloning_basedir": str(shared),
            },
        }

    async def published(self, jp_fetch: Any) -> str:
        resp = await jp_fetch(
            "api/bookstore/publish/p.ipynb",
            method="PUT",
            body=json.dumps({"type": "notebook", "content": notebook("published")}),
        )
        return str(json.loads(resp.body)["versionID"])

    async def test_writes_into_the_root_need_contents_write(
        self, jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
    ) -> None:
        version = await self.published(jp_fetch)  # publishing writes to S3 only: allowed
        calls = [
            ("api/bookstore/clone", {"s3_key": "published/p.ipynb"}),
            ("api/bookstore/fs-clone", {"relpath": "lesson.ipynb"}),
            ("api/bookstore/versions/p.ipynb", {"version_id": version, "prefix": "published"}),
        ]
        for url, body in calls:
            resp = await post(jp_fetch, url, body)
            assert resp.code == 403, (url, resp.code, resp.body)
            assert "'write' on 'contents'" in message(resp)
        page = await jp_fetch(
            "bookstore/versions/p.ipynb",
            method="POST",
            body=f"version_id={version}&prefix=published",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            raise_error=False,
            follow_redirects=False,
        )
        assert page.code == 403
        assert listing(jp_root_dir) == []

    @pytest.mark.parametrize("authorizer", [NoContentsReads])
    async def test_views_and_diffs_need_contents_read(
        self, jp_fetch: Any, jp_root_dir: Path
    ) -> None:
        version = await self.published(jp_fetch)
        (jp_root_dir / "p.ipynb").write_bytes(nb_bytes(notebook("current secret")))
        urls = [
            ("api/bookstore/versions/p.ipynb", {"version_id": version, "prefix": "published"}),
            ("api/bookstore/diff/p.ipynb", {"from": version, "prefix": "published"}),
            ("bookstore/versions/p.ipynb", {"version_id": version, "prefix": "published"}),
            ("bookstore/diff/p.ipynb", {"from": version, "prefix": "published"}),
        ]
        for url, params in urls:
            resp = await jp_fetch(url, params=params, raise_error=False)
            assert resp.code == 403, (url, resp.code)
            assert b"current secret" not in resp.body
        # The timeline (no content) still needs only bookstore's own permission.
        listing_resp = await jp_fetch(
            "api/bookstore/versions/p.ipynb", params={"prefix": "published"}
        )
        assert listing_resp.code == 200


# --- 4. history pages make no requests on the viewer's behalf ----------------------------------


def csp_directives(resp: HTTPResponse) -> dict[str, list[str]]:
    """The effective directives: the first occurrence of each, as browsers apply them."""
    out: dict[str, list[str]] = {}
    for part in resp.headers["Content-Security-Policy"].split(";"):
        words = part.split()
        if words and words[0] not in out:
            out[words[0]] = words[1:]
    return out


async def test_a_version_with_remote_images_makes_no_request(
    jp_fetch: Any, jp_base_url: str
) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("![logout](/logout) ![x](https://example.com/t.png)"),
        nbformat.v4.new_code_cell(
            "1",
            outputs=[
                nbformat.v4.new_output(
                    "display_data", data={"text/markdown": f"![]({jp_base_url}logout)"}
                )
            ],
        ),
    ]
    resp = await jp_fetch(
        "api/bookstore/publish/img.ipynb",
        method="PUT",
        body=json.dumps({"type": "notebook", "content": json.loads(nbformat.writes(nb))}),
    )
    version = json.loads(resp.body)["versionID"]
    page = await jp_fetch(
        "bookstore/versions/img.ipynb", params={"version_id": version, "prefix": "published"}
    )
    html = page.body.decode()
    sources = re.findall(r"<img[^>]*\ssrc=\"([^\"]*)\"", html)
    assert sources
    assert all(s.startswith("data:") for s in sources), sources
    assert "image not shown" in html
    assert "/logout" in html  # named, as text
    csp = csp_directives(page)
    assert csp["img-src"] == ["data:"]
    assert csp["default-src"] == ["'none'"]
    assert csp["connect-src"] == ["'none'"]


async def test_clone_landing_page_has_a_strict_csp(jp_fetch: Any) -> None:
    page = await jp_fetch("bookstore/clone", params={"s3_key": "published/x.ipynb"})
    csp = csp_directives(page)
    assert csp["default-src"] == ["'none'"]
    assert csp["img-src"] == ["data:"]
    assert csp["connect-src"] == ["'self'"]
    (nonce,) = [w[len("'nonce-") : -1] for w in csp["script-src"]]
    html = page.body.decode()
    scripts = re.findall(r"<script(?![^>]*application/json)([^>]*)>", html)
    assert scripts
    assert all(f'nonce="{nonce}"' in s for s in scripts)
    again = csp_directives(
        await jp_fetch("bookstore/clone", params={"s3_key": "published/y.ipynb"})
    )
    assert again["script-src"] != csp["script-src"]  # a fresh nonce per page


# --- 5. the client keeps its token on redirects ---------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]]
    redirect_to: str | None

    def do_GET(self) -> None:  # http.server's naming
        self.seen.append({"path": self.path, **dict(self.headers.items())})
        if self.redirect_to and not self.path.startswith("/landed"):
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_servers() -> Iterator[Any]:
    """Starts loopback HTTP servers that record what they receive (and may redirect)."""
    started = []

    def start() -> tuple[str, list[dict[str, str]], type[_Recorder]]:
        seen: list[dict[str, str]] = []
        handler = type("Recorder", (_Recorder,), {"seen": seen, "redirect_to": None})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/", seen, handler

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def test_client_does_not_send_its_token_to_another_host(http_servers: Any) -> None:
    other_url, other_seen, _ = http_servers()  # same host, another port: another server
    url, seen, handler = http_servers()
    handler.redirect_to = other_url + "landed"
    BookstoreClient(url, "s3cret-token", timeout=10)._request("GET", "api/bookstore")
    assert seen[0]["Authorization"] == "token s3cret-token"
    assert [s["path"] for s in other_seen] == ["/landed"]
    assert not any("s3cret" in v for v in other_seen[0].values())


def test_client_keeps_its_token_on_a_redirect_to_the_same_server(http_servers: Any) -> None:
    url, seen, handler = http_servers()
    handler.redirect_to = url + "landed"
    BookstoreClient(url, "tok", timeout=10)._request("GET", "api/bookstore")
    assert [s["path"] for s in seen] == ["/api/bookstore", "/landed"]
    assert seen[1]["Authorization"] == "token tok"


# --- 6. usernames map one-to-one to prefixes -------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["alice", "a/b", "a_b", "a%2Fb", ".", "..", "", "x..y", "jo.e@ex.org", "José", "a b", "\x00"],
)
def test_username_encoding_round_trips(name: str) -> None:
    segment = encode_username(name)
    assert decode_username(segment) == name
    assert "/" not in segment
    assert segment not in {".", "..", ""}


def test_usernames_never_share_a_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["a/b", "a_b", "a%2Fb", "a%b", ".", "%2E", "..", "a b", "a+b", "A_B", "José"]
    prefixes = set()
    for name in names:
        monkeypatch.setenv("JUPYTERHUB_USER", name)
        prefixes.add(BookstoreSettings(workspace_prefix="ws/{username}").workspace)
    assert len(prefixes) == len(names)


@pytest.mark.parametrize("name", ["alice", "bob-smith", "j.doe", "jane_doe", "u@example.org"])
def test_plain_usernames_keep_their_prefix(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", name)
    assert BookstoreSettings(workspace_prefix="ws/{username}").workspace == f"ws/{name}"


# --- 13 and 16. hostile JSON bodies and paths: 400, never 500 --------------------------------


DEEP = b'{"type": "notebook", "content": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("api/bookstore/clone", rb'{"s3_key": "published/\ud800.ipynb"}'),
        ("api/bookstore/clone", rb'{"s3_key": "a.ipynb", "target_path": "\udc00.ipynb"}'),
        ("api/bookstore/versions/a.ipynb", rb'{"version_id": "\ud800"}'),
        ("api/bookstore/clone", DEEP),
        ("api/bookstore/versions/a.ipynb", DEEP),
    ],
)
async def test_lone_surrogates_and_deep_nesting_are_400(
    jp_fetch: Any, jp_root_dir: Path, tmp_path: Path, url: str, body: bytes
) -> None:
    resp = await post(jp_fetch, url, body)
    assert resp.code == 400, resp.body
    assert "surrogate" in message(resp) or "nested too deeply" in message(resp)
    assert listing(jp_root_dir) == []


@pytest.mark.parametrize(
    "body",
    [
        rb'{"type": "notebook", "content": {"nbformat": 4, "nbformat_minor": 5, "metadata": {},'
        rb' "cells": [{"cell_type": "markdown", "id": "a", "metadata": {}, "source": "\ud800"}]}}',
        DEEP,
    ],
    ids=["surrogate", "deep"],
)
async def test_publish_of_a_surrogate_or_deep_json_is_400(
    jp_fetch: Any, s3: Any, s3_bucket: str, body: bytes
) -> None:
    resp = await jp_fetch(
        "api/bookstore/publish/a.ipynb", method="PUT", body=body, raise_error=False
    )
    assert resp.code == 400, resp.body
    assert s3.list_objects_v2(Bucket=s3_bucket).get("Contents", []) == []


async def test_publish_accepts_notebooks_only(jp_fetch: Any, s3: Any, s3_bucket: str) -> None:
    body = json.dumps({"type": "notebook", "content": notebook()})
    resp = await jp_fetch(
        "api/bookstore/publish/notes.txt", method="PUT", body=body, raise_error=False
    )
    assert resp.code == 415
    assert ".ipynb" in message(resp)
    assert s3.list_objects_v2(Bucket=s3_bucket).get("Contents", []) == []


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\u202a", "\x7f", "\x85", "\t"])
async def test_every_api_path_refuses_control_and_bidi_characters(
    jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str, char: str
) -> None:
    name = f"evil{char}bnpi.ipynb"
    nb = json.dumps({"type": "notebook", "content": notebook()})
    calls = [
        ("PUT", f"api/bookstore/publish/{name}", nb, None),
        ("GET", f"api/bookstore/versions/{name}", None, None),
        ("GET", f"api/bookstore/diff/{name}", None, {"from": "v1"}),
        ("GET", f"bookstore/versions/{name}", None, None),
        ("POST", "api/bookstore/clone", json.dumps({"s3_key": f"published/{name}"}), None),
        (
            "POST",
            "api/bookstore/clone",
            json.dumps({"s3_key": "published/ok.ipynb", "target_path": name}),
            None,
        ),
    ]
    for method, url, body, params in calls:
        resp = await jp_fetch(url, method=method, body=body, params=params, raise_error=False)
        assert resp.code == 400, (method, url, resp.code, resp.body[:300])
    assert listing(jp_root_dir) == []
    assert s3.list_objects_v2(Bucket=s3_bucket).get("Contents", []) == []


# --- 14. early answers close the connection --------------------------------------------------


class TestEarlyAnswers:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {**bookstore_config, "max_request_body_size": 1024}

    @pytest.mark.parametrize(
        ("auth", "status"), [(False, 403), (True, 413)], ids=["403-no-auth", "413-too-large"]
    )
    async def test_next_request_on_the_connection_does_not_fail(
        self,
        jp_fetch: Any,
        jp_serverapp: Any,
        jp_http_port: int,
        jp_base_url: str,
        http_server_client: Any,
        auth: bool,
        status: int,
    ) -> None:
        token = jp_serverapp.identity_provider.token
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"token {token}"

        def talk() -> tuple[int, str | None, int]:
            conn = http.client.HTTPConnection("127.0.0.1", jp_http_port, timeout=20)
            try:
                body = json.dumps({"s3_key": "a.ipynb", "pad": "x" * 20_000}).encode()
                conn.request("POST", f"{jp_base_url}api/bookstore/clone", body, headers)
                first = conn.getresponse()
                first.read()
                conn.request(
                    "GET",
                    f"{jp_base_url}api/bookstore",
                    headers={"Authorization": f"token {token}"},
                )
                second = conn.getresponse()
                second.read()
                return first.status, first.getheader("Connection"), second.status
            finally:
                conn.close()

        first, connection, second = await asyncio.to_thread(talk)
        assert (first, second) == (status, 200)
        assert connection == "close"


@pytest.mark.browser
def test_viewing_a_version_in_a_browser_sends_no_request_for_its_images(
    browser: Any, tmp_path: Path, bookstore_config: dict[str, Any]
) -> None:
    """Chromium's own request log: the page, its stylesheet and script, nothing else."""
    from jupyter_subprocess import JupyterSubprocess

    config = {
        "ServerApp": {"jpserver_extensions": {"bookstore": True}},
        "BookstoreSettings": bookstore_config,
    }
    with JupyterSubprocess("server", tmp_path / "jp", config=config) as jp:
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_markdown_cell(f"![a](/logout) ![b]({jp.url}logout) ![c](//x.invalid/p)")
        ]
        content = json.loads(nbformat.writes(nb))
        r = jp.request(
            "PUT", "api/bookstore/publish/img.ipynb", {"type": "notebook", "content": content}
        )
        assert r.status_code == 200, r.text
        version = r.json()["versionID"]
        page = browser.new_page()
        requests: list[str] = []
        page.on("request", lambda req: requests.append(req.url))
        try:
            url = f"{jp.url}bookstore/versions/img.ipynb?version_id={version}&prefix=published"
            page.goto(f"{url}&token={jp.token}", wait_until="networkidle")
            html = page.content()
        finally:
            page.close()
    assert not [u for u in requests if "logout" in u or "x.invalid" in u], requests
    assert "image not shown" in html
    assert all(u.startswith(jp.url) for u in requests), requests
    assert {u.split("?")[0].rsplit("/", 1)[-1] for u in requests} <= {
        "img.ipynb",
        "versions.css",
        "versions.js",
    }, requests
