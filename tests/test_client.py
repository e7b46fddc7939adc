"""``bookstore.client.BookstoreClient`` against real Jupyter servers, real kernels and real S3.

The client is synchronous (urllib); against the in-process test server it runs in a thread
so the server's event loop keeps serving. The kernel test starts ``jupyter server`` as a
subprocess and a real ipykernel through its sessions API, and runs the client in there.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from helpers import notebook
from jupyter_subprocess import JupyterSubprocess, free_port

from bookstore import client as client_module
from bookstore import errors
from bookstore.client import (
    BookstoreBadRequest,
    BookstoreClient,
    BookstoreConnectionError,
    BookstoreDiscoveryError,
    BookstoreForbidden,
    BookstoreHTTPError,
    BookstoreInvalidNotebook,
    BookstoreNotFound,
    BookstoreTimeout,
    CloneResult,
    PublishResult,
)
from bookstore.testing import S3Server

T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture
def server_url(
    jp_serverapp: Any, jp_http_port: int, jp_base_url: str, http_server_client: Any
) -> str:
    """The in-process test server's URL, under its non-root base URL ``/a%40b/``."""
    return f"http://127.0.0.1:{jp_http_port}{jp_base_url}"


@pytest.fixture
def client(server_url: str, jp_serverapp: Any) -> BookstoreClient:
    return BookstoreClient(server_url, jp_serverapp.identity_provider.token, timeout=20)


async def save(jp_fetch: Any, path: str, nb: dict[str, Any]) -> None:
    await jp_fetch(
        "api/contents",
        path,
        method="PUT",
        body=json.dumps({"type": "notebook", "format": "json", "content": nb}),
    )


# --- explicit URL and token, in-process server ---------------------------------------------------


async def test_publish_a_given_path(
    client: BookstoreClient, jp_fetch: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    await save(jp_fetch, "report.ipynb", notebook("report"))
    result = await in_thread(client.publish, "report.ipynb")
    assert isinstance(result, PublishResult)
    obj = s3.get_object(Bucket=s3_bucket, Key="published/report.ipynb")
    assert result.version_id == obj["VersionId"]
    assert result.s3_path == f"s3://{s3_bucket}/published/report.ipynb"
    assert obj["Body"].read() == (jp_root_dir / "report.ipynb").read_bytes()


async def test_clone_returns_the_new_file(
    client: BookstoreClient, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    version = s3.put_object(
        Bucket=s3_bucket, Key="published/x.ipynb", Body=json.dumps(notebook()).encode()
    )["VersionId"]
    (jp_root_dir / "x.ipynb").write_text("{}")
    result = await in_thread(client.clone, "published/x.ipynb", version_id=version)
    assert isinstance(result, CloneResult)
    assert (result.path, result.type, result.version_id) == ("x-1.ipynb", "notebook", version)
    replaced = await in_thread(client.clone, "published/x.ipynb", overwrite=True)
    assert replaced.path == "x.ipynb"
    assert json.loads((jp_root_dir / "x.ipynb").read_text())["cells"]


async def test_errors_are_typed(
    client: BookstoreClient, jp_fetch: Any, s3_server: S3Server, s3_bucket: str
) -> None:
    with pytest.raises(BookstoreNotFound) as missing:
        await in_thread(client.clone, "published/no/such.ipynb")
    assert missing.value.status == 404
    assert "published/no/such.ipynb" in missing.value.message

    with pytest.raises(BookstoreForbidden, match="not allowed"):
        await in_thread(client.clone, "a.ipynb", s3_bucket="some-other-bucket")
    with pytest.raises(BookstoreBadRequest):
        await in_thread(client.clone, "a.ipynb", target_path="../out.ipynb")
    with pytest.raises(BookstoreNotFound):
        await in_thread(client.publish, "not-there.ipynb")

    await jp_fetch(
        "api/contents/plain.txt",
        method="PUT",
        body=json.dumps({"type": "file", "format": "text", "content": "x"}),
    )
    with pytest.raises(BookstoreHTTPError) as not_nb:
        await in_thread(client.publish, "plain.txt")
    assert not_nb.value.status == 400  # the contents API refuses type=notebook for a text file
    assert not isinstance(not_nb.value, BookstoreInvalidNotebook)


async def test_client_errors_are_bookstores_error_tree(
    client: BookstoreClient, s3_bucket: str
) -> None:
    # The server's refusal and the client's error are the same class of bookstore.errors.
    with pytest.raises(errors.NotFound) as missing:
        await in_thread(client.clone, "published/no/such.ipynb")
    with pytest.raises(errors.Forbidden) as forbidden:
        await in_thread(client.clone, "a.ipynb", s3_bucket="some-other-bucket")

    assert isinstance(missing.value, BookstoreNotFound)
    assert isinstance(forbidden.value, BookstoreForbidden)
    for e in (missing.value, forbidden.value):
        assert isinstance(e, errors.BookstoreError)
        assert errors.http_status(e) == e.status
    assert client_module.BookstoreError is errors.BookstoreError


async def test_wrong_token_is_forbidden(server_url: str) -> None:
    bad = BookstoreClient(server_url, "wrong-token", timeout=10)
    with pytest.raises(BookstoreForbidden) as e:
        await in_thread(bad.clone, "a.ipynb")
    assert e.value.status == 403


async def test_discovery_outside_a_kernel_uses_the_only_running_server(
    server_url: str, jp_fetch: Any, s3: Any, s3_bucket: str
) -> None:
    """The test server wrote its jpserver-*.json in the (test) runtime dir: that is found."""
    await save(jp_fetch, "found.ipynb", notebook())
    client = BookstoreClient(timeout=10)
    result = await in_thread(client.publish, "found.ipynb")
    assert client.url.endswith("/a%40b/")
    assert result.key == "published/found.ipynb"
    with pytest.raises(BookstoreDiscoveryError, match="not run in a notebook kernel"):
        await in_thread(client.publish)


def test_discovery_without_any_server_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "empty-runtime"))
    with pytest.raises(
        BookstoreDiscoveryError, match=r"pass BookstoreClient\(url=..., token=...\)"
    ):
        BookstoreClient(timeout=5).publish()


def test_connection_refused_is_a_connection_error() -> None:
    client = BookstoreClient(f"http://127.0.0.1:{free_port()}/", "t", timeout=5)
    with pytest.raises(BookstoreConnectionError) as e:
        client.clone("a.ipynb")
    assert not isinstance(e.value, BookstoreTimeout)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in conns:
            conn.close()
        sock.close()


def test_a_server_that_does_not_answer_times_out(silent_server: int) -> None:
    client = BookstoreClient(f"http://127.0.0.1:{silent_server}/", "t", timeout=0.5)
    with pytest.raises(BookstoreTimeout):
        client.clone("a.ipynb")


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout"):
        BookstoreClient("http://127.0.0.1:1/", timeout=0)


# --- inside a real kernel of a real server -------------------------------------------------------

KERNEL_CODE = """
import dataclasses, json
from bookstore.client import BookstoreClient, BookstoreNotFound
client = BookstoreClient(timeout=30)
published = client.publish()
print("PUBLISHED", json.dumps(dataclasses.asdict(published)))
cloned = client.clone(published.key, version_id=published.version_id)
print("CLONED", json.dumps({"path": cloned.path, "version_id": cloned.version_id}))
try:
    client.clone("published/no/such/key.ipynb")
except BookstoreNotFound as e:
    print("NOTFOUND", e.status)
print("URL", client.url)
"""


def run_in_kernel(connection_file: Path, code: str, timeout: float = 120) -> str:
    """Execute ``code`` in the kernel; return its stdout (fail on an error reply)."""
    from jupyter_client import BlockingKernelClient

    kc = BlockingKernelClient(connection_file=str(connection_file))
    kc.load_connection_file()
    # The heartbeat gives up on a kernel after 1 s without a beat, which a loaded CI
    # machine can take: "Kernel died before replying to kernel_info" for a live kernel.
    kc.hb_channel.time_to_dead = 10.0
    kc.start_channels()
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    try:
        kc.wait_for_ready(timeout=timeout)
        reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    finally:
        kc.stop_channels()
    text = "".join(out)
    assert reply["content"]["status"] == "ok", text
    return text


@pytest.mark.slow
def test_client_in_a_real_kernel_publishes_its_own_notebook(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str, s3: Any
) -> None:
    config = {
        "ServerApp": {
            "jpserver_extensions": {
                "bookstore": True,
                # Only what the test needs: the frontends add seconds to the start.
                "jupyterlab": False,
                "notebook": False,
                "nbclassic": False,
                "nbdime": False,
                "jupyter_lsp": False,
                "notebook_shim": False,
            },
            "contents_manager_class": "bookstore.BookstoreContentsArchiver",
        },
        "BookstoreSettings": {
            "s3_bucket": s3_bucket,
            "s3_endpoint_url": s3_server.endpoint_url,
            "s3_access_key_id": s3_server.access_key_id,
            "s3_secret_access_key": s3_server.secret_access_key,
            "s3_region_name": s3_server.region_name,
            "spool_dir": str(tmp_path / "spool"),
        },
    }
    with JupyterSubprocess("server", tmp_path, config=config) as jp:
        assert jp.request("PUT", "api/contents/work", json={"type": "directory"}).ok
        jp.save_notebook("work/analysis.ipynb", notebook("analysis", n_cells=2))
        r = jp.request(
            "POST",
            "api/sessions",
            json={"path": "work/analysis.ipynb", "type": "notebook", "kernel": {"name": "python3"}},
        )
        assert r.status_code == 201, r.text
        kernel_id = r.json()["kernel"]["id"]
        connection_file = jp.runtime_dir / f"kernel-{kernel_id}.json"

        output = run_in_kernel(connection_file, KERNEL_CODE)

        lines = dict(line.split(" ", 1) for line in output.splitlines() if " " in line)
        published = json.loads(lines["PUBLISHED"])
        assert published["path"] == "work/analysis.ipynb"
        assert published["key"] == "published/work/analysis.ipynb"
        obj = s3.get_object(Bucket=s3_bucket, Key="published/work/analysis.ipynb")
        assert obj["VersionId"] == published["version_id"]
        assert obj["Body"].read() == (jp.root_dir / "work/analysis.ipynb").read_bytes()
        cloned = json.loads(lines["CLONED"])
        assert cloned == {"path": "analysis.ipynb", "version_id": published["version_id"]}
        assert (jp.root_dir / "analysis.ipynb").exists()
        assert lines["NOTFOUND"] == "404"
        assert lines["URL"] == jp.url
