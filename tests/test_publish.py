"""``PUT /api/bookstore/publish/<path>`` against a real Jupyter server and a real S3 server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from typing import Any

import nbformat
import pytest
from conftest import BACKEND
from helpers import list_versions, notebook
from tornado.httpclient import HTTPResponse

from bookstore.testing import TcpProxy


def publish_body(nb: dict[str, Any] | None = None) -> str:
    return json.dumps({"type": "notebook", "content": nb if nb is not None else notebook()})


def message(resp: HTTPResponse) -> str:
    return str(json.loads(resp.body)["message"])


def all_keys(s3: Any, bucket: str) -> list[str]:
    """Every key with any version in the bucket (to prove nothing was written)."""
    resp = s3.list_object_versions(Bucket=bucket)
    return [v["Key"] for v in resp.get("Versions", [])] + [
        m["Key"] for m in resp.get("DeleteMarkers", [])
    ]


async def publish(jp_fetch: Any, path: str, body: str | bytes, **kwargs: Any) -> HTTPResponse:
    return await jp_fetch(  # type: ignore[no-any-return]
        "api/bookstore/publish", path, method="PUT", body=body, raise_error=False, **kwargs
    )


# --- success ---------------------------------------------------------------------------------


async def test_publish_stores_nbformat_bytes_with_metadata(
    jp_fetch: Any, s3: Any, s3_bucket: str
) -> None:
    nb = notebook("print('published')", n_cells=3)
    resp = await publish(jp_fetch, "team/report 1.ipynb", publish_body(nb))
    assert resp.code == 200, resp.body
    result = json.loads(resp.body)

    key = "published/team/report 1.ipynb"
    expected = nbformat.writes(nbformat.from_dict(nb), version=nbformat.NO_CONVERT)
    expected_bytes = (expected if expected.endswith("\n") else expected + "\n").encode()
    obj = s3.get_object(Bucket=s3_bucket, Key=key)
    assert obj["Body"].read() == expected_bytes
    assert result == {
        "s3_path": f"s3://{s3_bucket}/{key}",
        "versionID": obj["VersionId"],
        "bucket": s3_bucket,
        "key": key,
        "sha256": hashlib.sha256(expected_bytes).hexdigest(),
    }
    meta = obj["Metadata"]
    assert meta["sha256"] == result["sha256"]
    assert meta["jupyter-path"] == "team/report 1.ipynb"
    assert meta["user"]
    assert meta["saved-at"].endswith("Z")
    assert obj["ContentType"] == "application/x-ipynb+json"


async def test_publishing_again_adds_a_version(jp_fetch: Any, s3: Any, s3_bucket: str) -> None:
    first = json.loads((await publish(jp_fetch, "a.ipynb", publish_body(notebook("1")))).body)
    second = json.loads((await publish(jp_fetch, "a.ipynb", publish_body(notebook("2")))).body)
    versions = list_versions(s3, s3_bucket, "published/a.ipynb")
    assert [v["VersionId"] for v in versions] == [second["versionID"], first["versionID"]]
    assert first["sha256"] != second["sha256"]


async def test_publish_accepts_contents_model_fields(
    jp_fetch: Any, s3: Any, s3_bucket: str
) -> None:
    """A body copied from GET /api/contents (with name, path, format...) is accepted."""
    await jp_fetch(
        "api/contents/copied.ipynb",
        method="PUT",
        body=json.dumps({"type": "notebook", "format": "json", "content": notebook("c")}),
    )
    model = json.loads((await jp_fetch("api/contents/copied.ipynb")).body)
    resp = await publish(jp_fetch, "copied.ipynb", json.dumps(model))
    assert resp.code == 200, resp.body
    assert "published/copied.ipynb" in all_keys(s3, s3_bucket)


async def test_publish_gives_missing_cell_ids_as_jupyter_does(
    jp_fetch: Any, s3: Any, s3_bucket: str
) -> None:
    nb = notebook(n_cells=2)
    del nb["cells"][0]["id"]
    nb["cells"][1]["id"] = "dup"
    nb["cells"].append({**nb["cells"][1]})  # a duplicate id
    resp = await publish(jp_fetch, "ids.ipynb", publish_body(nb))
    assert resp.code == 200, resp.body
    stored = json.loads(s3.get_object(Bucket=s3_bucket, Key="published/ids.ipynb")["Body"].read())
    ids = [cell["id"] for cell in stored["cells"]]
    assert len(set(ids)) == 3
    assert ids[1] == "dup"


# --- bad input: right status, nothing written -------------------------------------------------


@pytest.mark.parametrize("path", ["", "/"])
async def test_publish_without_path_is_400(
    jp_fetch: Any, s3: Any, s3_bucket: str, path: str
) -> None:
    resp = await jp_fetch(
        "api/bookstore/publish" + path, method="PUT", body=publish_body(), raise_error=False
    )
    assert resp.code == 400
    assert "path is empty" in message(resp)
    assert all_keys(s3, s3_bucket) == []


@pytest.mark.parametrize(
    "path",
    [
        "../escape.ipynb",
        "a/../../escape.ipynb",
        "%2Fetc%2Fescape.ipynb",
        "a%5Cb.ipynb",
        "./a.ipynb",
    ],
)
async def test_publish_path_escaping_the_prefix_is_400(
    jp_fetch: Any,
    jp_base_url: str,
    http_server_client: Any,
    jp_auth_header: dict[str, str],
    s3: Any,
    s3_bucket: str,
    path: str,
) -> None:
    # Sent as is: jp_fetch would escape the '%' of the pre-escaped cases.
    resp = await http_server_client.fetch(
        f"{jp_base_url}api/bookstore/publish/{path}",
        method="PUT",
        body=publish_body(),
        headers=jp_auth_header,
        raise_error=False,
    )
    assert resp.code == 400, resp.body
    assert all_keys(s3, s3_bucket) == []


@pytest.mark.parametrize(
    "body",
    [
        {"type": "file", "format": "text", "content": "print(1)"},
        {"type": "directory"},
        {"content": "missing type"},
    ],
)
async def test_publish_of_something_else_than_a_notebook_is_415(
    jp_fetch: Any, s3: Any, s3_bucket: str, body: dict[str, Any]
) -> None:
    resp = await publish(jp_fetch, "x.ipynb", json.dumps(body))
    assert resp.code == 415
    assert "only notebooks can be published" in message(resp)
    assert all_keys(s3, s3_bucket) == []


async def test_publish_of_an_invalid_notebook_is_422_with_nbformat_message(
    jp_fetch: Any, s3: Any, s3_bucket: str
) -> None:
    nb = notebook()
    del nb["cells"][0]["source"]
    resp = await publish(jp_fetch, "bad.ipynb", publish_body(nb))
    assert resp.code == 422
    assert "'source' is a required property" in message(resp)
    assert "$.cells[0]" in message(resp)
    assert all_keys(s3, s3_bucket) == []


@pytest.mark.parametrize(
    "content",
    [
        {},
        "text",
        [],
        {"nbformat": 3, "nbformat_minor": 0, "worksheets": []},
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": "no"},
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": ["no"]},
    ],
)
async def test_publish_of_non_v4_or_empty_content_is_422(
    jp_fetch: Any, s3: Any, s3_bucket: str, content: Any
) -> None:
    resp = await publish(
        jp_fetch, "bad.ipynb", json.dumps({"type": "notebook", "content": content})
    )
    assert resp.code == 422
    assert all_keys(s3, s3_bucket) == []


@pytest.mark.parametrize("body", [b"", b"{not json", b"[1, 2]"])
async def test_publish_body_that_is_not_a_json_object_is_400(
    jp_fetch: Any, s3: Any, s3_bucket: str, body: bytes
) -> None:
    resp = await publish(jp_fetch, "x.ipynb", body, allow_nonstandard_methods=True)
    assert resp.code == 400
    assert all_keys(s3, s3_bucket) == []


async def test_publish_without_token_is_403(jp_fetch: Any, s3: Any, s3_bucket: str) -> None:
    resp = await publish(jp_fetch, "x.ipynb", publish_body(), headers={"Authorization": ""})
    assert resp.code == 403
    assert all_keys(s3, s3_bucket) == []


class TestBodyLimit:
    LIMIT = 4096

    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {**bookstore_config, "max_request_body_size": self.LIMIT}

    async def test_publish_body_over_the_limit_is_413(
        self, jp_fetch: Any, s3: Any, s3_bucket: str
    ) -> None:
        body = publish_body(notebook("x" * 100, n_cells=60))
        assert len(body) > self.LIMIT
        resp = await publish(jp_fetch, "big.ipynb", body)
        assert resp.code == 413
        assert str(self.LIMIT) in message(resp)
        assert all_keys(s3, s3_bucket) == []

    async def test_a_body_within_the_limit_is_published(self, jp_fetch: Any) -> None:
        body = publish_body(notebook("x", n_cells=2))
        assert len(body) < self.LIMIT
        assert (await publish(jp_fetch, "small.ipynb", body)).code == 200

    async def test_declared_content_length_is_refused_before_the_body_is_sent(
        self,
        http_server_client: Any,
        jp_http_port: int,
        jp_base_url: str,
        jp_auth_header: dict[str, str],
        s3: Any,
        s3_bucket: str,
    ) -> None:
        """A client announcing 1 GB gets 413 at once: the server does not wait for the body."""
        reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
        try:
            head = (
                f"PUT {jp_base_url}api/bookstore/publish/huge.ipynb HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{jp_http_port}\r\n"
                f"Authorization: {jp_auth_header['Authorization']}\r\n"
                f"Content-Type: application/json\r\n"
                f"Content-Length: {10**9}\r\n\r\n"
            )
            writer.write(head.encode())
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
        assert status_line.split()[1] == b"413", status_line
        assert all_keys(s3, s3_bucket) == []


# --- S3 failures ---------------------------------------------------------------------------------


class TestS3Unreachable:
    @pytest.fixture
    def bookstore_config(
        self, bookstore_config: dict[str, Any], s3_proxy: TcpProxy
    ) -> dict[str, Any]:
        return {**bookstore_config, "s3_endpoint_url": s3_proxy.url, "s3_read_timeout": 5.0}

    async def test_publish_while_s3_is_unreachable_is_503(
        self, jp_fetch: Any, s3_proxy: TcpProxy, s3: Any, s3_bucket: str
    ) -> None:
        s3_proxy.cut()
        resp = await publish(jp_fetch, "down.ipynb", publish_body())
        assert resp.code == 503
        assert "unreachable" in message(resp)
        s3_proxy.restore()
        assert all_keys(s3, s3_bucket) == []
        # The same request works once S3 is back: the 503 was the outage.
        assert (await publish(jp_fetch, "down.ipynb", publish_body())).code == 200


class TestMissingBucket:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {**bookstore_config, "s3_bucket": f"missing-{uuid.uuid4().hex[:12]}"}

    async def test_publish_to_a_bucket_s3_does_not_have_is_502(self, jp_fetch: Any) -> None:
        resp = await publish(jp_fetch, "x.ipynb", publish_body())
        assert resp.code == 502
        assert "NoSuchBucket" in message(resp)


class TestWrongCredentials:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        if BACKEND != "seaweedfs":
            pytest.skip("moto accepts any credentials; run with BOOKSTORE_TEST_S3=seaweedfs")
        return {**bookstore_config, "s3_secret_access_key": "not-the-secret"}

    async def test_publish_with_credentials_s3_refuses_is_502(
        self, jp_fetch: Any, s3: Any, s3_bucket: str
    ) -> None:
        resp = await publish(jp_fetch, "x.ipynb", publish_body())
        assert resp.code == 502
        assert "SignatureDoesNotMatch" in message(resp) or "AccessDenied" in message(resp)
        assert all_keys(s3, s3_bucket) == []
