"""Shared fixtures: real S3-compatible servers on loopback and a Jupyter server with bookstore.

The S3 backend is chosen with ``BOOKSTORE_TEST_S3`` (``moto``, the default, or
``seaweedfs``); the test command runs the suite against both.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bookstore.testing import S3Server, start_s3

pytest_plugins = ["pytest_jupyter.jupyter_server"]

BACKEND = os.environ.get("BOOKSTORE_TEST_S3", "moto")

#: Modules whose tests check pure logic, packaging, docs, page links, logging or the shape
#: of HTTP answers: S3 is only a backdrop there, so they run once (on moto), and the
#: SeaweedFS run deselects them with ``-m "not surface"``.
SURFACE_MODULES = {
    "test_cli_demo",
    "test_demo_script",
    "test_docs",
    "test_labextension",
    "test_logging",
    "test_openapi",
    "test_pages_frontend",
    "test_retention",
    "test_scheduling_docs",
    "test_server_modes",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__ in SURFACE_MODULES:
            item.add_marker(pytest.mark.surface)


CHROMIUM = os.environ.get("BOOKSTORE_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(autouse=True)
def _isolate_aws_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test may pick up the developer's AWS or bookstore settings."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "JPYNB_S3_", "BOOKSTORE_SPOOL")):
            monkeypatch.delenv(name, raising=False)
    empty = tmp_path_factory.mktemp("aws")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One real S3-compatible server (moto or SeaweedFS) for the whole session."""
    server = start_s3(BACKEND, tmp_path_factory.mktemp(f"s3-{BACKEND}"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh bucket with versioning enabled."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_server.create_bucket(name, versioning=True)
    return name


@pytest.fixture
def s3(s3_server: S3Server) -> Any:
    """A plain boto3 client, for assertions about what is in S3."""
    return s3_server.boto3_client()


@pytest.fixture
def spool_dir(tmp_path: Any) -> str:
    return str(tmp_path / "spool")


@pytest.fixture
def bookstore_config(s3_server: S3Server, s3_bucket: str, spool_dir: str) -> dict[str, Any]:
    """``c.BookstoreSettings`` for the test server: the test bucket, fast retries."""
    return {
        "s3_bucket": s3_bucket,
        "s3_endpoint_url": s3_server.endpoint_url,
        "s3_access_key_id": s3_server.access_key_id,
        "s3_secret_access_key": s3_server.secret_access_key,
        "s3_region_name": s3_server.region_name,
        "spool_dir": spool_dir,
        "upload_retry_initial_delay": 0.05,
        "upload_retry_max_delay": 0.5,
        "s3_connect_timeout": 2.0,
        "flush_timeout": 10.0,
    }


@pytest.fixture
def jp_server_config(bookstore_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"bookstore": True},
            "contents_manager_class": "bookstore.BookstoreContentsArchiver",
        },
        "BookstoreSettings": bookstore_config,
    }


@pytest.fixture
def bookstore_ext(jp_serverapp: Any, jp_asyncio_loop: Any) -> Any:
    """The bookstore extension, started as the running server's event loop would start it.

    pytest-jupyter does not run the extensions' start hooks; this does.
    """
    ext = jp_serverapp.web_app.settings["bookstore_extension"]
    jp_asyncio_loop.run_until_complete(ext._start_jupyter_server_extension(jp_serverapp))
    return ext


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright, shared by the browser tests.

    Missing Chromium skips the browser tests on a developer's machine but fails them in CI
    (``CI`` set), where scripts/test.sh installs it: a browser test must not pass unseen.
    """
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        message = f"no Chromium at {CHROMIUM}: apt-get install chromium, or set BOOKSTORE_CHROMIUM"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-gpu",
                "--no-first-run",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()
