"""Shared fixtures: real S3-compatible servers on loopback and a Jupyter server with bookstore.

The fixtures for S3 (``s3_server``, ``s3_bucket``, ``s3``, ``s3_proxy``) and for the server
(``bookstore_config``, ``jp_server_config``, ``bookstore_ext``) come from the plugin that
bookstore ships for downstream projects, :mod:`bookstore.pytest_plugin`. The S3 backend is
chosen with ``BOOKSTORE_TEST_S3`` (``moto``, the default, or ``seaweedfs``); the test command
runs the suite against both.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from typing import Any

import pytest
from jupyter_subprocess import JupyterSubprocess

pytest_plugins = ["pytest_jupyter.jupyter_server", "bookstore.pytest_plugin"]

BACKEND = os.environ.get("BOOKSTORE_TEST_S3", "moto")

#: Modules whose outcome cannot depend on the S3 implementation under test, so they run once:
#: the test command's SeaweedFS run takes them and its moto run deselects them with
#: ``-m "not surface"`` (the moto run has the browser tests; this keeps the two runs about
#: as long as each other). ``pytest`` alone runs them on moto:
#:
#: - pure logic, packaging, docs, layout and settings validation;
#: - the HTTP surface, where S3 is only a backdrop: page links and rendering, the shape of
#:   answers, authorization, confinement and hostile input, request limits, diff limits,
#:   the event loop, the extension's state;
#: - the in-kernel client (a kernel calling the server's API), whose S3 calls (put with
#:   metadata, list versions, head, get a version) are the store's, tested on both servers by
#:   test_archive, test_versions, test_publish and test_clone; runs (test_run_cli,
#:   test_runs_api) are not surface: their issue asks for them on both servers;
#: - the spool's bounds while S3 is cut off by a TCP proxy (test_limits: no S3 answers at all);
#: - test_testing_infra, which starts its own moto and SeaweedFS servers whatever
#:   ``BOOKSTORE_TEST_S3`` says (so it covers both in either run).
#:
#: Everything that reads back what S3 stored (versions, metadata, listings, pins, errors S3
#: answers with, streaming reads, crash recovery against the bucket, the hub) runs on both.
SURFACE_MODULES = {
    "test_cli_demo",
    "test_client",
    "test_demo_script",
    "test_diff_limits",
    "test_docs",
    "test_event_loop",
    "test_extension_state",
    "test_history_page",
    "test_labextension",
    "test_layout",
    "test_limits",
    "test_logging",
    "test_openapi",
    "test_pages_frontend",
    "test_retention",
    "test_run_startup",
    "test_scheduling_docs",
    "test_security",
    "test_server_modes",
    "test_settings",
    "test_testing_infra",
    "test_units",
}


_SHARED_SCOPES = ("package", "module", "class")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__ in SURFACE_MODULES:
            item.add_marker(pytest.mark.surface)
        # Tests sharing a module- or class-scoped fixture (a Jupyter subprocess, a browser
        # session) stay on one pytest-xdist worker (``--dist loadgroup``), so it starts once.
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info is not None else ()
        if item.module is not None and any(
            d[-1].scope in _SHARED_SCOPES and d[-1].baseid for d in defs
        ):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


CHROMIUM = os.environ.get("BOOKSTORE_CHROMIUM", "/usr/bin/chromium")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """A failed test that used a Jupyter server subprocess shows the tail of its log.

    The servers log to a file in the test's temporary directory, which CI does not keep: the
    report is the only place a failure's server-side story is seen. Tokens are masked.
    """
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for name, value in getattr(item, "funcargs", {}).items():
        if isinstance(value, JupyterSubprocess):
            tail = re.sub(r"token=[^\s&]+", "token=...", value.log_text()[-8000:])
            title = f"{name}: the Jupyter server's log, last 8000 characters"
            report.sections.append((title, tail))


@pytest.fixture
def jp_nbconvert_templates() -> None:
    """pytest-jupyter copies nbconvert's templates (about 100 files) into every test's data
    directory, for servers that export notebooks. Nothing here exports: skip the copy."""


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
