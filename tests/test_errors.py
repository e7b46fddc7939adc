"""The error tree: botocore failures translated once, bookstore errors mapped to HTTP once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join

from bookstore import errors
from bookstore.errors import (
    BadRequest,
    BookstoreError,
    Conflict,
    Forbidden,
    InvalidNotebook,
    NotANotebook,
    NotFound,
    ObjectTooLarge,
    S3BadRequest,
    S3Error,
    S3NotFound,
    S3Refused,
    S3Unavailable,
    TooLarge,
    TooManyRequests,
    http_status,
)
from bookstore.handlers.base import ClientErrorLogMixin, to_http_error
from bookstore.s3 import translate_error


def client_error(code: str, status: int, message: str = "msg") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GetObject",
    )


# --- translate_error (pure logic) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, S3NotFound),
        ("NoSuchVersion", 404, S3NotFound),
        ("", 404, S3NotFound),
        ("NoSuchBucket", 404, S3Refused),
        ("AccessDenied", 403, S3Refused),
        ("InvalidAccessKeyId", 403, S3Refused),
        ("SignatureDoesNotMatch", 403, S3Refused),
        ("InvalidArgument", 400, S3BadRequest),
        ("KeyTooLongError", 400, S3BadRequest),
        ("MetadataTooLarge", 400, S3BadRequest),
        ("MethodNotAllowed", 405, S3BadRequest),
        ("SlowDown", 503, S3Unavailable),
        ("RequestTimeout", 400, S3Unavailable),
        ("Throttling", 400, S3Unavailable),
        ("", 429, S3Unavailable),
        ("InternalError", 500, S3Unavailable),
        ("", 502, S3Unavailable),
        ("Weird", 409, S3Refused),
    ],
)
def test_translate_error_classifies_s3_answers(code: str, status: int, expected: type) -> None:
    err = translate_error(client_error(code, status, "the message"), "reading k")

    assert type(err) is expected
    assert err.code == code
    assert str(err).startswith("reading k: S3 answered ")
    assert "the message" in str(err)
    # S3's own status is never passed through: ours comes from the class.
    assert err.status == expected.status


def test_translate_error_says_which_setting_gives_credentials() -> None:
    err = translate_error(NoCredentialsError(), "listing k")

    assert isinstance(err, S3Refused)
    assert err.status == 502
    assert "c.BookstoreSettings.s3_access_key_id" in str(err)
    assert err.code == "NoCredentials"


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        ConnectionResetError("reset"),
        asyncio.TimeoutError(),
    ],
)
def test_translate_error_makes_network_failures_unavailable(exc: BaseException) -> None:
    err = translate_error(exc, "putting k")

    assert isinstance(err, S3Unavailable)
    assert err.status == 503
    assert err.retryable
    assert str(err).startswith("putting k: ")


def test_translate_error_keeps_a_bookstore_s3_error() -> None:
    original = S3NotFound("already ours")

    assert translate_error(original, "again") is original


def test_only_what_s3_rejects_for_what_it_is_is_not_retryable() -> None:
    assert not translate_error(client_error("KeyTooLongError", 400), "k").retryable
    assert translate_error(client_error("AccessDenied", 403), "k").retryable
    assert translate_error(client_error("SlowDown", 503), "k").retryable


# --- the tree ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (BadRequest, 400),
        (Forbidden, 403),
        (NotFound, 404),
        (Conflict, 409),
        (TooLarge, 413),
        (NotANotebook, 415),
        (InvalidNotebook, 422),
        (TooManyRequests, 429),
        (S3Error, 502),
        (S3Refused, 502),
        (S3Unavailable, 503),
        (S3NotFound, 404),
        (S3BadRequest, 400),
        (ObjectTooLarge, 413),
    ],
)
def test_every_error_is_a_bookstore_error_with_its_status(cls: type, status: int) -> None:
    err = cls("what to fix")

    assert isinstance(err, BookstoreError)
    assert http_status(err) == status
    mapped = to_http_error(err)
    assert mapped.status_code == status
    assert mapped.log_message == "what to fix"


def test_the_old_names_are_the_same_classes() -> None:
    from bookstore import history, s3, shared_folder

    assert history.HistoryError is BookstoreError
    assert history.BadRequest is BadRequest
    assert s3.S3Error is S3Error
    assert issubclass(shared_folder.NotInSharedFolder, BookstoreError)
    assert shared_folder.NotInSharedFolder("x").status == 404


def test_errors_module_and_cli_do_not_import_tornado() -> None:
    import ast
    import inspect

    from bookstore import cli

    for module in (errors, cli):
        tree = ast.parse(inspect.getsource(module))
        names = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any(n == "tornado" or n.startswith("tornado.") for n in names), module


def test_http_status_of_anything_else_is_500() -> None:
    assert http_status(RuntimeError("boom")) == 500
    assert BookstoreError("x", status=418).status == 418


# --- mapped once, by the base handler ----------------------------------------------------------


class _Raise(ClientErrorLogMixin, APIHandler):
    """Raises the bookstore error named in the URL (a probe for the mapping)."""

    async def get(self, name: str) -> None:
        cls = getattr(errors, name)
        raise cls(f"{name}: here is what to fix")


class _RaisePage(ClientErrorLogMixin, JupyterHandler):
    async def get(self, name: str) -> None:
        raise getattr(errors, name)(f"{name} on a page")


@pytest.fixture
def probe(jp_serverapp: Any) -> None:
    base = jp_serverapp.base_url
    jp_serverapp.web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, r"bookstore-test-raise/(\w+)"), _Raise),
            (url_path_join(base, r"bookstore-test-raise-page/(\w+)"), _RaisePage),
        ],
    )


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("BadRequest", 400),
        ("Forbidden", 403),
        ("NotFound", 404),
        ("Conflict", 409),
        ("InvalidNotebook", 422),
        ("S3Unavailable", 503),
        ("S3Refused", 502),
        ("S3NotFound", 404),
    ],
)
async def test_the_base_handler_maps_a_bookstore_error_to_its_status(
    jp_fetch: Any, probe: None, name: str, status: int
) -> None:
    resp = await jp_fetch("bookstore-test-raise", name, raise_error=False)

    assert resp.code == status
    body = json.loads(resp.body)
    assert body["message"] == f"{name}: here is what to fix"


async def test_pages_map_bookstore_errors_too(jp_fetch: Any, probe: None) -> None:
    resp = await jp_fetch("bookstore-test-raise-page", "NotANotebook", raise_error=False)

    assert resp.code == 415
    assert "NotANotebook on a page" in resp.body.decode()
