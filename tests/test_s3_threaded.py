"""The store on botocore's own client in threads (``bookstore run``) behaves as the server's.

:class:`bookstore.s3_threaded.ThreadedS3Store` swaps aiobotocore's client for botocore's,
each call in a worker thread, so that a run never imports aiobotocore and aiohttp. Each
test here runs on both stores, against the real S3 server: same answers, same errors, same
hooks.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from run_helpers import param_notebook, publish, run_versions

from bookstore.errors import ObjectTooLarge, S3NotFound, S3Unavailable
from bookstore.s3 import S3Store, _no_resend
from bookstore.s3_threaded import ThreadedS3Store
from bookstore.settings import MIN_PART_SIZE, BookstoreSettings
from bookstore.testing import TcpProxy

STORES = {"aiobotocore": S3Store, "threads": ThreadedS3Store}


@pytest.fixture(params=sorted(STORES))
def store_class(request: pytest.FixtureRequest) -> type[S3Store]:
    return STORES[request.param]


@pytest.fixture
def store(
    store_class: type[S3Store], bookstore_config: dict[str, Any], jp_asyncio_loop: Any
) -> Iterator[S3Store]:
    settings = BookstoreSettings(**bookstore_config, multipart_threshold=MIN_PART_SIZE)
    store = store_class(settings)
    yield store
    jp_asyncio_loop.run_until_complete(store.close())


async def test_writes_reads_and_lists_versions(store: S3Store, s3: Any, s3_bucket: str) -> None:
    first = await store.put_object("workspace/a.ipynb", b"one", {"save-id": "s1"})
    second = await store.put_object("workspace/a.ipynb", b"two", {"save-id": "s2"})

    got = await store.get_object("workspace/a.ipynb", first.version_id)
    assert (got.body, got.version_id, got.metadata["save-id"]) == (b"one", first.version_id, "s1")
    head = await store.head_object("workspace/a.ipynb")
    assert (head["VersionId"], head["Metadata"]["save-id"]) == (second.version_id, "s2")
    page = await store.list_versions("workspace/a.ipynb")
    assert [v.version_id for v in page.versions] == [second.version_id, first.version_id]
    stored = s3.get_object(Bucket=s3_bucket, Key="workspace/a.ipynb", VersionId=first.version_id)
    assert stored["Body"].read() == b"one"


async def test_streams_to_disk_and_uploads_in_parts(store: S3Store, s3: Any, tmp_path: Any) -> None:
    body = bytes(range(256)) * (MIN_PART_SIZE // 256) + b"tail" * 300
    put = await store.upload_file(
        "workspace/big.ipynb", lambda: io.BytesIO(body), len(body), hashlib.sha256(body).hexdigest()
    )
    head = await store.head_object("workspace/big.ipynb", put.version_id)
    assert head["ETag"].strip('"').endswith("-2")  # two parts

    path, info = await store.download_to_temp("workspace/big.ipynb", str(tmp_path), put.version_id)
    assert Path(path).read_bytes() == body  # noqa: ASYNC240 (a test's own check)
    assert (info.size, info.version_id) == (len(body), put.version_id)


async def test_errors_are_translated_alike(store: S3Store) -> None:
    with pytest.raises(S3NotFound, match=r"reading s3://.*/workspace/missing\.ipynb"):
        await store.get_object("workspace/missing.ipynb")
    await store.put_object("workspace/large.ipynb", b"x" * 100)
    with pytest.raises(ObjectTooLarge):
        await store.get_object("workspace/large.ipynb", max_bytes=10)


@pytest.mark.parametrize("damage", ["sha256", "size"])
async def test_damaged_bytes_are_refused_before_anything_is_stored(
    store: S3Store, s3: Any, s3_bucket: str, damage: str
) -> None:
    body = b"the bytes as saved"
    sha = hashlib.sha256(body if damage == "size" else b"other bytes").hexdigest()
    size = len(body) + (1 if damage == "size" else 0)
    with pytest.raises(ValueError, match="damaged"):
        await store.upload_file("workspace/d.ipynb", lambda: io.BytesIO(body), size, sha)
    assert "Versions" not in s3.list_object_versions(Bucket=s3_bucket, Prefix="workspace/d")


async def test_an_unreachable_s3_is_unavailable(
    store_class: type[S3Store], bookstore_config: dict[str, Any], s3_proxy: TcpProxy
) -> None:
    settings = BookstoreSettings(**{**bookstore_config, "s3_endpoint_url": s3_proxy.url})
    cut = store_class(settings)
    s3_proxy.cut()
    try:
        with pytest.raises(S3Unavailable, match="S3 is unreachable"):
            await cut.put_object("workspace/a.ipynb", b"one", resend=False)
    finally:
        s3_proxy.restore()
        await cut.close()


async def test_the_no_resend_flag_reaches_the_hook(store: S3Store) -> None:
    """put_object(resend=False) sets a context variable that botocore's retry hook reads:
    it must be visible where botocore runs the request (a worker thread for threads)."""
    seen: list[bool] = []
    client = await store.client()
    client.meta.events.register(
        "before-call.s3.PutObject", lambda **kwargs: seen.append(_no_resend.get())
    )
    await store.put_object("workspace/a.ipynb", b"one", resend=False)
    await store.put_object("workspace/a.ipynb", b"two")
    assert seen == [True, False]


def test_a_run_loads_neither_aiobotocore_nor_aiohttp(
    bookstore_cli_env: dict[str, str], s3: Any, s3_bucket: str
) -> None:
    """What makes ``bookstore run`` start about as fast as papermill alone
    (bench/bench_run.py): its two S3 calls go through botocore's client."""
    publish(s3, s3_bucket, "lean/plain.ipynb", param_notebook("print('sum', x + 1)"))
    code = (
        "import json, sys\n"
        "from bookstore.cli import main\n"
        "status = main(['run', 'lean/plain.ipynb', '-p', 'x', '1'])\n"
        "print(json.dumps([status, [m for m in ('aiobotocore', 'aiohttp') if m in sys.modules]]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ),  # with bookstore_cli_env's variables
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [0, []]
    [run] = run_versions(s3, s3_bucket, "lean/plain.ipynb")
    assert run["nb"]["metadata"]["bookstore"]["run"]["status"] == "succeeded"
