"""pytest fixtures to test bookstore, or code built on it, against a real S3 server.

Enable it in a ``conftest.py`` after pytest-jupyter's server plugin (``jp_fetch``,
``jp_serverapp``, ...), whose ``jp_server_config`` it overrides: the later plugin wins::

    pytest_plugins = ["pytest_jupyter.jupyter_server", "bookstore.pytest_plugin"]

It provides:

* ``s3_server`` (session): moto's server mode, or SeaweedFS (``weed mini``) when the
  environment variable ``BOOKSTORE_TEST_S3`` is ``seaweedfs``, on free ports of 127.0.0.1.
  With pytest-xdist every worker starts its own.
* ``s3_bucket``: a fresh, uniquely named bucket with versioning enabled; ``s3``: a boto3
  client for assertions about what is in S3; ``s3_proxy``: a :class:`~bookstore.testing.TcpProxy`
  in front of the S3 server, to cut and restore the network.
* ``spool_dir``, ``bookstore_config`` (``c.BookstoreSettings`` for the test bucket, fast
  retries), ``jp_server_config`` (the extension enabled, ``BookstoreContentsArchiver`` as the
  contents manager) and ``bookstore_ext`` (the started extension object).
* ``s3_requests``: an :class:`S3Requests` log of the S3 operations the server's request
  handlers send (the archiver's background uploads left out), to pin how many requests a
  page or API call costs, or that a save sends none.
* ``bookstore_cli_env``: the environment of the ``bookstore`` command line (``JPYNB_S3_*``
  for the test bucket, and its own Jupyter config, data and spool directories), set in the
  test's environment; :func:`cli_environment` makes the same variables for a subprocess.

Override ``bookstore_config`` or ``jp_server_config`` in a test module or class to change
settings. :func:`wait_until` and :func:`async_wait_until` wait on a condition and fail loudly
when it does not hold in time.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
import uuid
from collections.abc import Awaitable, Iterator
from typing import Any, Callable, Union

import pytest

from bookstore.testing import S3Server, TcpProxy, start_s3

__all__ = [
    "S3Requests",
    "async_wait_until",
    "cli_environment",
    "server_config",
    "settings_for",
    "wait_until",
]

#: The S3 implementation the fixtures start: ``moto`` (default) or ``seaweedfs``.
BACKEND_ENV = "BOOKSTORE_TEST_S3"


def _timeout_error(message: str, timeout: float, last: Any) -> AssertionError:
    detail = f" (last value: {last!r})" if last is not None and last is not False else ""
    return AssertionError(f"timed out after {timeout:g}s: {message}{detail}")


def wait_until(
    condition: Callable[[], Any], timeout: float, message: str, interval: float = 0.05
) -> Any:
    """Call ``condition()`` until it returns a true value, and return that value.

    Raises ``AssertionError(message)`` once ``timeout`` seconds have passed without it (the
    condition is checked once more at the deadline). Never a fixed sleep: this returns as soon
    as the condition holds.
    """
    deadline = time.monotonic() + timeout
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise _timeout_error(message, timeout, last)
        time.sleep(interval)


async def async_wait_until(
    condition: Callable[[], Union[Any, Awaitable[Any]]],
    timeout: float,
    message: str,
    interval: float = 0.05,
) -> Any:
    """:func:`wait_until` for a coroutine: the event loop runs while it waits.

    ``condition`` may be a plain function or return an awaitable.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        last = condition()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if loop.time() >= deadline:
            raise _timeout_error(message, timeout, last)
        await asyncio.sleep(interval)


def server_config(
    settings: dict[str, Any], extensions: dict[str, bool] | None = None, **overrides: Any
) -> dict[str, Any]:
    """Jupyter config (as a dict) for a server archiving with bookstore.

    ``settings`` become ``c.BookstoreSettings``, with the keyword arguments overriding them;
    ``extensions`` are enabled next to bookstore (``{"nbclassic": True}``).
    """
    return {
        "ServerApp": {
            "jpserver_extensions": {"bookstore": True, **(extensions or {})},
            "contents_manager_class": "bookstore.BookstoreContentsArchiver",
        },
        "BookstoreSettings": {**settings, **overrides},
    }


class S3Requests:
    """The S3 operations sent on the server's own client, in order (botocore's ``before-send``).

    Only what the request handlers send is kept: the archiver's background uploads run in
    tasks named ``bookstore:<key>`` (their PUTs, and the HEAD before a retried attempt) and
    are left out. ``ops`` holds operation names such as ``"GetObject"``; clear it to start
    counting afresh.
    """

    def __init__(self) -> None:
        self.ops: list[str] = []

    def __call__(self, event_name: str, **kwargs: Any) -> None:
        task = asyncio.current_task()
        if task is not None and task.get_name().startswith("bookstore:"):
            return
        self.ops.append(event_name.rsplit(".", 1)[-1])

    def reads(self) -> list[str]:
        """``ops``, after checking that none of them wrote (only the uploader writes)."""
        assert "PutObject" not in self.ops, self.ops
        return list(self.ops)


def settings_for(
    s3_server: S3Server, bucket: str, spool_dir: str, **overrides: Any
) -> dict[str, Any]:
    """``c.BookstoreSettings`` (as a dict) for ``bucket`` on ``s3_server``, with fast retries
    and short timeouts; the keyword arguments override them (``s3_endpoint_url=proxy.url``)."""
    return {
        "s3_bucket": bucket,
        "s3_endpoint_url": s3_server.endpoint_url,
        "s3_access_key_id": s3_server.access_key_id,
        "s3_secret_access_key": s3_server.secret_access_key,
        "s3_region_name": s3_server.region_name,
        "spool_dir": spool_dir,
        "upload_retry_initial_delay": 0.05,
        "upload_retry_max_delay": 0.5,
        "s3_connect_timeout": 2.0,
        "flush_timeout": 10.0,
        **overrides,
    }


@pytest.fixture(scope="session")
def bookstore_s3_backend() -> str:
    """``moto`` or ``seaweedfs``, from ``BOOKSTORE_TEST_S3``."""
    backend = os.environ.get(BACKEND_ENV, "moto")
    if backend not in ("moto", "seaweedfs"):
        raise pytest.UsageError(f"{BACKEND_ENV}={backend!r}: use moto or seaweedfs")
    return backend


@pytest.fixture(scope="session")
def s3_server(
    bookstore_s3_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Server]:
    """One real S3-compatible server for the whole session (per xdist worker)."""
    server = start_s3(bookstore_s3_backend, tmp_path_factory.mktemp(f"s3-{bookstore_s3_backend}"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh bucket with versioning enabled (unique name: tests never share one)."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_server.create_bucket(name, versioning=True)
    return name


@pytest.fixture
def s3(s3_server: S3Server) -> Any:
    """A plain boto3 client, for assertions about what is in S3: the server's shared one
    (:meth:`S3Server.shared_client`). Do not close it or register event handlers on it;
    ``s3_server.boto3_client()`` makes a client of your own."""
    return s3_server.shared_client()


@pytest.fixture
def s3_proxy(s3_server: S3Server) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the S3 server: ``cut()`` and ``restore()`` the network."""
    with TcpProxy(s3_server.host, s3_server.port) as proxy:
        yield proxy


@pytest.fixture
def spool_dir(tmp_path: Any) -> str:
    """The archiver's spool directory (inside the test's own ``tmp_path``)."""
    return str(tmp_path / "spool")


@pytest.fixture
def bookstore_config(s3_server: S3Server, s3_bucket: str, spool_dir: str) -> dict[str, Any]:
    """``c.BookstoreSettings`` for the test server: the test bucket, fast retries."""
    return settings_for(s3_server, s3_bucket, spool_dir)


@pytest.fixture
def jp_server_config(bookstore_config: dict[str, Any]) -> dict[str, Any]:
    """The Jupyter server config: bookstore enabled and archiving every save."""
    return server_config(bookstore_config)


@pytest.fixture
def bookstore_ext(jp_serverapp: Any, jp_asyncio_loop: Any) -> Any:
    """The bookstore extension, started as the running server's event loop would start it.

    pytest-jupyter does not run the extensions' start hooks; this does.
    """
    ext = jp_serverapp.web_app.settings["bookstore_extension"]
    jp_asyncio_loop.run_until_complete(ext._start_jupyter_server_extension(jp_serverapp))
    return ext


@pytest.fixture
def s3_requests(bookstore_ext: Any, jp_asyncio_loop: Any) -> Iterator[S3Requests]:
    """The S3 operations the server's request handlers send from now on."""
    client = jp_asyncio_loop.run_until_complete(bookstore_ext.store.client())
    log = S3Requests()
    client.meta.events.register("before-send.s3", log)
    try:
        yield log
    finally:
        client.meta.events.unregister("before-send.s3", log)


def cli_environment(s3_server: S3Server, bucket: str, directory: Any) -> dict[str, str]:
    """The environment variables that point the ``bookstore`` command line at ``bucket`` on
    ``s3_server``, as a container would, with a Jupyter config, data and spool directory
    under ``directory`` (the config directory is created). For a subprocess's ``env``, or
    :func:`bookstore_cli_env` sets them in the test's own environment."""
    config = os.path.join(directory, "jupyter-config")
    os.makedirs(config, exist_ok=True)
    return {
        "JUPYTER_CONFIG_DIR": config,
        "JUPYTER_CONFIG_PATH": config,
        "JUPYTER_DATA_DIR": os.path.join(directory, "jupyter-data"),
        "JPYNB_S3_BUCKET": bucket,
        "JPYNB_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "JPYNB_S3_ACCESS_KEY_ID": s3_server.access_key_id,
        "JPYNB_S3_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        "JPYNB_S3_REGION_NAME": s3_server.region_name,
        "BOOKSTORE_SPOOL_DIR": os.path.join(directory, "cli-spool"),
    }


@pytest.fixture
def bookstore_cli_env(
    s3_server: S3Server, s3_bucket: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Point the ``bookstore`` command line at the test bucket, as a container would: all
    through environment variables (:func:`cli_environment`), with a Jupyter config, data and
    spool directory of the test's own (in ``tmp_path``). Returns the variables set."""
    values = cli_environment(s3_server, s3_bucket, tmp_path)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values
