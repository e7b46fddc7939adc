"""The one way bookstore runs blocking work (disk, parsing, nbformat) off the event loop.

:func:`in_thread` is anyio's worker-thread pool (``anyio.to_thread.run_sync``, what
jupyter_server uses), taking keyword arguments too. anyio is imported on first use, so the
command line does not pay for it at start-up.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, TypeVar

T = TypeVar("T")


async def in_thread(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)`` in a worker thread; the caller's task awaits it."""
    from anyio.to_thread import run_sync

    return await run_sync(partial(func, *args, **kwargs))
