"""Comparing two notebooks: a cheap summary by cell hashes, then nbdime's diff within caps.

:func:`summarize_cells` is linear in the notebooks' size and says whether a full diff is
within ``BookstoreSettings.max_diff_*``; :func:`diff_notebooks` runs nbdime on the cells
between the equal leading and trailing ones. Both are blocking: run them in a thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .settings import BookstoreSettings


@dataclass
class DiffCaps:
    """How much of two notebooks is diffed cell by cell (``BookstoreSettings.max_diff_*``)."""

    cells: int
    lines: int
    bytes: int

    @classmethod
    def from_settings(cls, settings: BookstoreSettings) -> DiffCaps:
        return cls(settings.max_diff_cells, settings.max_diff_lines, settings.max_diff_bytes)


@dataclass
class DiffSummary:
    """Two notebooks compared cell by cell by hash: cheap (linear) whatever their size.

    ``too_large`` says which cap the notebooks are over (then only this summary is
    given, not nbdime's diff); it is None when they are diffed in full.
    """

    cells_before: int
    cells_after: int
    unchanged: int
    removed: int
    added: int
    metadata_changed: bool
    changed_lines: int
    changed_bytes: int
    too_large: str | None = None
    #: Leading and trailing cells exactly equal in both (left out of nbdime's diff).
    head: int = 0
    tail: int = 0

    @property
    def changed(self) -> int:
        """Cells changed: a modified cell is one removed and one added, and counts once."""
        return max(self.removed, self.added)

    @property
    def message(self) -> str:
        n = self.changed
        text = f"{n} cell{'' if n == 1 else 's'} changed"
        if self.too_large:
            text = f"too large to diff: {text} ({self.too_large})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "cells_before": self.cells_before,
            "cells_after": self.cells_after,
            "cells_unchanged": self.unchanged,
            "cells_removed": self.removed,
            "cells_added": self.added,
            "cells_changed": self.changed,
            "metadata_changed": self.metadata_changed,
            "changed_lines": self.changed_lines,
            "changed_bytes": self.changed_bytes,
            "too_large": self.too_large,
            "message": self.message,
        }


def _cell_fingerprint(cell: dict[str, Any]) -> tuple[str, str, int, int]:
    """``(loose hash, exact hash, lines, bytes)`` of a cell.

    The loose hash ignores the cell id and execution counts (what a reader calls "the
    same cell"); the exact one covers everything (cells nbdime would find equal).
    """
    import hashlib

    outputs = []
    counts = []
    for out in cell.get("outputs") or []:
        if isinstance(out, dict):
            counts.append(out.get("execution_count"))
            out = {k: v for k, v in out.items() if k != "execution_count"}
        outputs.append(out)
    kept = {
        "cell_type": cell.get("cell_type"),
        "source": cell.get("source"),
        "metadata": cell.get("metadata"),
        "outputs": outputs,
        "attachments": cell.get("attachments"),
    }
    text = json.dumps(kept, sort_keys=True, default=str)
    loose = hashlib.sha256(text.encode("utf-8")).hexdigest()
    rest = {k: v for k, v in cell.items() if k not in kept}
    rest["output counts"] = counts
    exact = loose + json.dumps(rest, sort_keys=True, default=str)
    lines = _count_lines(cell.get("source"))
    for out in outputs:
        if isinstance(out, dict):
            lines += _count_lines(out.get("text"))
            data = out.get("data")
            if isinstance(data, dict):
                lines += sum(_count_lines(v) for v in data.values())
    return loose, exact, lines, len(text)


def _count_lines(value: Any) -> int:
    if isinstance(value, list):
        return sum(_count_lines(v) for v in value)
    if isinstance(value, str):
        return value.count("\n") + 1 if value else 0
    return 0


def summarize_cells(base: Any, remote: Any, caps: DiffCaps) -> DiffSummary:
    """Compare two notebooks' cells by hash, and say whether a full diff is within ``caps``.

    Leading and trailing cells that are exactly equal are not diffed (see
    :func:`diff_notebooks`); the cells between them are what a diff costs, so their
    number, lines and bytes are what is capped. Linear in the notebooks' size.
    Blocking: run it in a thread.
    """
    from collections import Counter

    before = [_cell_fingerprint(c) for c in base.get("cells") or []]
    after = [_cell_fingerprint(c) for c in remote.get("cells") or []]
    old, new = Counter(f[0] for f in before), Counter(f[0] for f in after)
    common = old & new
    only_old, only_new = old - common, new - common
    head, tail = common_ends([f[1] for f in before], [f[1] for f in after])
    middle = before[head : len(before) - tail] + after[head : len(after) - tail]
    cells = max(len(before), len(after)) - head - tail
    lines = sum(f[2] for f in middle)
    nbytes = sum(f[3] for f in middle)
    too_large = None
    if cells > caps.cells:
        too_large = (
            f"{cells} cells to compare, over the limit of {caps.cells} "
            f"(c.BookstoreSettings.max_diff_cells)"
        )
    elif lines > caps.lines:
        too_large = (
            f"{lines} lines to compare, over the limit of {caps.lines} "
            f"(c.BookstoreSettings.max_diff_lines)"
        )
    elif nbytes > caps.bytes:
        too_large = (
            f"{nbytes} bytes to compare, over the limit of {caps.bytes} "
            f"(c.BookstoreSettings.max_diff_bytes)"
        )
    return DiffSummary(
        cells_before=len(before),
        cells_after=len(after),
        unchanged=sum(common.values()),
        removed=sum(only_old.values()),
        added=sum(only_new.values()),
        metadata_changed=(base.get("metadata") or {}) != (remote.get("metadata") or {}),
        changed_lines=lines,
        changed_bytes=nbytes,
        too_large=too_large,
        head=head,
        tail=tail,
    )


def common_ends(a: list[str], b: list[str]) -> tuple[int, int]:
    """How many leading and trailing items ``a`` and ``b`` share (not overlapping)."""
    n = min(len(a), len(b))
    head = 0
    while head < n and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < n - head and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
        tail += 1
    return head, tail


@dataclass
class NotebookDiff:
    """Two notebooks and nbdime's diff between them, or only a summary when too large."""

    path: str
    prefix: str
    from_id: str
    to_id: str | None
    base: Any
    remote: Any
    #: nbdime's diff; None when the notebooks are over a cap (see ``summary.too_large``).
    diff: list[dict[str, Any]] | None
    summary: DiffSummary

    @property
    def too_large(self) -> bool:
        return self.diff is None

    def to_json(self) -> dict[str, Any]:
        """``{"base", "diff"}`` as nbdime's own server answers, plus what was compared.

        Over a cap, ``base`` and ``diff`` are null and ``summary`` says what changed.
        """
        return {
            "path": self.path,
            "prefix": self.prefix,
            "from": self.from_id,
            "to": self.to_id,
            "base": None if self.too_large else self.base,
            "diff": self.diff,
            "summary": self.summary.to_json(),
        }


def diff_notebooks(
    base: Any, remote: Any, summary: DiffSummary | None = None
) -> list[dict[str, Any]]:
    """nbdime's diff of two notebooks, as plain JSON-ready data (blocking).

    nbdime's cell matching costs time quadratic in the number of cells, so the leading
    and trailing cells that are exactly equal (``summary.head`` and ``.tail``, from
    :func:`summarize_cells`) are left out of what it compares, and the cell indices of its
    answer are shifted back: the diff is the same, on the whole ``base``.
    """
    import nbdime
    import nbformat

    if summary is None:
        summary = summarize_cells(base, remote, DiffCaps(0, 0, 0))
    head, tail = summary.head, summary.tail
    if head or tail:
        b_cells, r_cells = list(base.get("cells") or []), list(remote.get("cells") or [])
        base = nbformat.from_dict({**base, "cells": b_cells[head : len(b_cells) - tail]})
        remote = nbformat.from_dict({**remote, "cells": r_cells[head : len(r_cells) - tail]})
    diff: list[dict[str, Any]] = json.loads(json.dumps(nbdime.diff_notebooks(base, remote)))
    if head:
        for entry in diff:
            if entry.get("key") == "cells" and entry.get("op") == "patch":
                for op in entry.get("diff") or []:
                    op["key"] = int(op["key"]) + head
    return diff
