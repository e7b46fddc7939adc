"""Requests that must not hold the event loop or S3 longer than they need."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import list_versions, notebook
from history_helpers import get_json, save_versions

from bookstore import extension
from bookstore.pytest_plugin import S3Requests


async def test_a_diff_reads_each_version_with_one_get(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str, s3_requests: S3Requests
) -> None:
    await save_versions(bookstore_ext, jp_fetch, "one-get.ipynb", ["x = 1", "x = 2"])
    new, old = list_versions(s3, s3_bucket, "workspace/one-get.ipynb")
    s3_requests.ops.clear()

    body = await get_json(
        jp_fetch,
        "api",
        "bookstore",
        "diff",
        "one-get.ipynb",
        **{"from": old["VersionId"], "to": new["VersionId"]},
    )

    assert body["from"] == old["VersionId"]
    # Two versions, two GETs: no HEAD for "is it the latest", no tag reads for pins.
    assert sorted(s3_requests.reads()) == ["GetObject", "GetObject"]


# --- a status request does not wait on S3 -------------------------------------------------------


class SilentS3:
    """A TCP server on loopback that accepts connections and never answers (a hung S3)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)  # so the accepting thread sees ``stop`` promptly
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.stop.set()
        self._thread.join(10)
        self.sock.close()
        for conn in self.accepted:
            conn.close()


class TestHungS3:
    @pytest.fixture
    def silent_s3(self) -> Iterator[SilentS3]:
        server = SilentS3()
        yield server
        server.close()

    @pytest.fixture
    def bookstore_config(
        self, bookstore_config: dict[str, Any], silent_s3: SilentS3
    ) -> dict[str, Any]:
        return {**bookstore_config, "s3_endpoint_url": silent_s3.url, "s3_read_timeout": 120.0}

    async def test_status_answers_a_stale_check_without_waiting_on_s3(
        self,
        jp_fetch: Any,
        bookstore_ext: Any,
        silent_s3: SilentS3,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # Were the status to wait for the check, it would wait an hour: no timing to judge.
        monkeypatch.setattr(extension, "FIRST_CHECK_WAIT", 3600.0)
        # A result from long ago, as if the last check was made before S3 hung.
        bookstore_ext._check = {
            "checked_at": 1.0,
            "bucket_ok": True,
            "versioning": "Enabled",
            "problems": [],
        }

        resp = await jp_fetch("api", "bookstore", request_timeout=60)  # S3 hangs for 120 s

        archive = json.loads(resp.body)["archive"]
        assert archive["bucket_ok"] is True  # the last result, answered at once
        assert archive["versioning"] == "Enabled"
        # ... while the refresh is still waiting on S3, in the background.
        assert bookstore_ext._check_task is not None
        assert not bookstore_ext._check_task.done()


# --- request bodies are parsed off the event loop ----------------------------------------------


async def test_a_large_request_body_is_parsed_in_a_thread(
    jp_fetch: Any, bookstore_ext: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bookstore.handlers import base

    threads: list[str] = []
    real = base.parse_json

    def spy(raw: bytes, what: str = "request body") -> Any:
        threads.append(threading.current_thread().name)
        return real(raw, what)

    monkeypatch.setattr(base, "parse_json", spy)
    big = notebook("x = 1\n" * 40_000)  # about 240 KB of JSON
    small = notebook("y = 2")

    for nb in (big, small):
        resp = await jp_fetch(
            "api",
            "bookstore",
            "publish",
            "parsed.ipynb",
            method="PUT",
            body=json.dumps({"type": "notebook", "content": nb}),
        )
        assert resp.code == 200

    main = threading.main_thread().name
    assert len(threads) == 2
    assert threads[0] != main  # the large body: in a worker thread
    assert threads[1] == main  # a small one is not worth a thread


# --- the S3 client ----------------------------------------------------------------------------


async def test_the_s3_model_is_parsed_in_a_thread_once_per_process(
    s3_server: Any, s3_bucket: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Creating the server's S3 client parses about 1 MB of botocore's JSON the first time:
    in a worker thread, never on the event loop; a second store reuses what was parsed."""
    from botocore.loaders import JSONFileLoader

    from bookstore.pytest_plugin import settings_for
    from bookstore.s3 import S3Store, new_session
    from bookstore.settings import BookstoreSettings

    # A data path of its own: a loader no earlier test has filled.
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path / "botocore-data"))
    parsed_in: list[str] = []
    load_file = JSONFileLoader.load_file

    def recording(self: JSONFileLoader, file_path: str) -> Any:
        data = load_file(self, file_path)
        if data is not None:  # None: no such file (botocore looks for optional ones)
            parsed_in.append(threading.current_thread().name)
        return data

    monkeypatch.setattr(JSONFileLoader, "load_file", recording)
    settings = BookstoreSettings(**settings_for(s3_server, s3_bucket, str(tmp_path / "spool")))
    loop_thread = threading.current_thread().name

    store = S3Store(settings)
    try:
        await (await store.client()).head_bucket(Bucket=s3_bucket)
    finally:
        await store.close()

    assert parsed_in, "no botocore data file was read: the test looks at nothing"
    assert loop_thread not in parsed_in
    files_read = len(parsed_in)
    store = S3Store(settings)
    try:
        await (await store.client()).head_bucket(Bucket=s3_bucket)
    finally:
        await store.close()
    assert len(parsed_in) == files_read  # the second store parsed nothing again
    assert new_session().get_component("data_loader") is new_session().get_component("data_loader")


def test_aiobotocore_is_imported_in_a_thread_when_the_client_is_created() -> None:
    """``bookstore.s3`` does not import aiobotocore (``bookstore run`` never needs it); the
    server imports it when it creates its client, about 0.5 s of CPU: in a worker thread,
    not on the event loop. A fresh process, since this one imported aiobotocore long ago."""
    code = (
        "import asyncio, json, sys, threading\n"
        "from bookstore.s3 import S3Store\n"
        "from bookstore.settings import BookstoreSettings\n"
        "assert 'aiobotocore' not in sys.modules\n"
        "threads = []\n"
        "class Watch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'aiobotocore':\n"
        "            threads.append(threading.current_thread().name)\n"
        "sys.meta_path.insert(0, Watch())\n"
        "async def main():\n"
        "    store = S3Store(BookstoreSettings(s3_bucket='bucket', "
        "s3_endpoint_url='http://127.0.0.1:9', s3_access_key_id='k', "
        "s3_secret_access_key='s'))\n"
        "    await store.client()\n"
        "    await store.close()\n"
        "    return threading.current_thread().name\n"
        "loop_thread = asyncio.run(main())\n"
        "print(json.dumps([loop_thread, threads]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loop_thread, threads = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(threads) == 1, threads  # imported once, and this hook saw it
    assert threads[0] != loop_thread
