"""Uploads from the spool: the body's hashes are computed off the event loop.

Over plain HTTP botocore signs the payload: without help it hashes each body (up to a
whole multipart part, 8 MiB by default) with SHA-256 on the event loop, inside the signer.
The uploader computes every hash S3 needs in the worker thread that reads the part.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from typing import Any

import botocore.auth
import botocore.utils
import pytest

from bookstore.s3 import S3Store
from bookstore.settings import MIN_PART_SIZE, BookstoreSettings

#: Hashing less than this on the loop is not worth a thread (headers, XML bodies).
SMALL = 64 * 1024


class HashSpy:
    """Which threads hash how many bytes through botocore's hash functions."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []  # (thread id, bytes)

    def wrap(self, real: Any) -> Any:
        spy = self

        def hasher(data: bytes = b"", *args: Any, **kwargs: Any) -> Any:
            h = real(data, *args, **kwargs) if data else real(*args, **kwargs)
            return _Counted(h, spy, len(data))

        return hasher

    def on_thread(self, ident: int) -> list[int]:
        return [n for t, n in self.calls if t == ident]


class _Counted:
    def __init__(self, h: Any, spy: HashSpy, n: int) -> None:
        self._h, self._spy = h, spy
        if n:
            spy.calls.append((threading.get_ident(), n))

    def update(self, data: bytes) -> None:
        self._spy.calls.append((threading.get_ident(), len(data)))
        self._h.update(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._h, name)


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> HashSpy:
    spy = HashSpy()
    monkeypatch.setattr(botocore.auth, "sha256", spy.wrap(hashlib.sha256))
    monkeypatch.setattr(botocore.utils, "get_md5", spy.wrap(hashlib.md5))
    return spy


@pytest.fixture
def store(bookstore_config: dict[str, Any], jp_asyncio_loop: Any) -> Iterator[S3Store]:
    settings = BookstoreSettings(**bookstore_config, multipart_threshold=MIN_PART_SIZE)
    store = S3Store(settings)
    yield store
    jp_asyncio_loop.run_until_complete(store.close())


@pytest.mark.parametrize(
    ("size", "parts"),
    [(MIN_PART_SIZE - 1000, 0), (2 * MIN_PART_SIZE + 1000, 3)],
    ids=["single-put", "multipart"],
)
async def test_upload_hashes_the_body_off_the_event_loop(
    store: S3Store, s3: Any, s3_bucket: str, hashes: HashSpy, size: int, parts: int
) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    loop_thread = threading.get_ident()

    result = await store.upload_file(
        "workspace/big.ipynb",
        lambda: io.BytesIO(body),
        len(body),
        hashlib.sha256(body).hexdigest(),
        {"save-id": "s1"},
        bucket=s3_bucket,
    )

    stored = s3.get_object(Bucket=s3_bucket, Key="workspace/big.ipynb", VersionId=result.version_id)
    assert stored["Body"].read() == body
    head = s3.head_object(Bucket=s3_bucket, Key="workspace/big.ipynb")
    assert head["ETag"].strip('"').endswith(f"-{parts}") == bool(parts)
    # Nothing of the body was hashed on the event loop; signing still happened (headers).
    assert [n for n in hashes.on_thread(loop_thread) if n >= SMALL] == []
    assert hashes.calls, "the spy saw no hashing at all: it is not wired to botocore"
