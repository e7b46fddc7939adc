"""An :class:`~bookstore.s3.S3Store` on botocore's own client, its calls in worker threads.

The server keeps one aiobotocore client for its whole life: its S3 calls run side by side on
the event loop. A short-lived command that makes a handful of calls in a row
(``bookstore run``: one read of the source, one upload of the output) does better with
botocore's synchronous client, each call in a worker thread: the command then never imports
aiobotocore, aiohttp and httpx, some 0.4 s of a run's start (``bench/bench_run.py``), and a
scheduler's run costs about what running papermill alone costs.

Everything else is :class:`~bookstore.s3.S3Store`'s: the calls, their arguments, the error
translation (botocore raises the same exceptions either way), the hooks that refuse a blind
re-send and sign pre-hashed bodies.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .s3 import S3Store, with_s3_model
from .threads import in_thread

__all__ = ["ThreadedS3Store"]


class ThreadedS3Store(S3Store):
    """:class:`~bookstore.s3.S3Store` whose client is botocore's, called in worker threads."""

    async def _open_client(self, stack: contextlib.AsyncExitStack) -> Any:
        def create() -> Any:
            import botocore.session
            from botocore.config import Config

            session = with_s3_model(botocore.session.get_session())
            return session.create_client("s3", **self._client_kwargs(Config))

        client = await in_thread(create)
        stack.callback(client.close)
        return _ThreadedClient(client)


class _ThreadedClient:
    """botocore's client with aiobotocore's surface: ``await client.get_object(...)``."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.meta = client.meta  # events: the hooks S3Store registers

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        async def call(**kwargs: Any) -> Any:
            # in_thread carries the context over: the no-resend flag reaches the hook.
            response = await in_thread(method, **kwargs)
            if isinstance(response, dict) and "Body" in response:
                response["Body"] = _ThreadedBody(response["Body"])
            return response

        return call


class _ThreadedBody:
    """A botocore ``StreamingBody`` read as aiobotocore's: ``async with``, ``await read()``."""

    def __init__(self, body: Any) -> None:
        self._body = body

    async def __aenter__(self) -> _ThreadedBody:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._body.close()

    async def read(self, amt: int | None = None) -> bytes:
        data: bytes = await in_thread(self._body.read, amt)
        return data
