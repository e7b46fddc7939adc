"""What the commands print: tables, counts, times and a progress bar on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TextIO, TypeVar

from ..history import (
    VersionRecord,
)
from ..times import human_time

T = TypeVar("T")


async def collect_pages(
    fetch: Callable[[int, str | None], Awaitable[tuple[Sequence[T], str | None]]],
    limit: int,
    page_size: int = 1000,
) -> tuple[list[T], str | None]:
    """The items of ``fetch(size, page_token)``, page after page, until the last page or
    until ``limit`` are in (0: no limit); (items, the next page's token or None).

    The items are not cut to ``limit``: a command says how many more there are.
    """
    items: list[T] = []
    token: str | None = None
    while True:
        size = page_size if not limit else min(page_size, limit - len(items) or 1)
        page, token = await fetch(size, token)
        items += page
        if not token or (limit and len(items) >= limit):
            return items, token


# --- output helpers -----------------------------------------------------------------------------


class Progress:
    """A progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def set_total(self, total: int) -> None:
        self.total = total
        self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.05:
            return
        self._last = now
        if self.total:
            width = 30
            filled = min(width, int(width * self.done / self.total))
            bar = "#" * filled + "-" * (width - filled)
            text = f"{self.label} [{bar}] {self.done}/{self.total}"
        else:
            text = f"{self.label} {self.done}…"
        self.stream.write("\r\033[K" + text)
        self.stream.flush()


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain-text table with aligned columns."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def plural(n: int, noun: str) -> str:
    """``1 version``, ``3 versions``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def short_time(record: VersionRecord) -> str:
    """``2024-05-01 14:03:22`` (UTC)."""
    return human_time(record.last_modified)
