"""Read-only rendering of notebooks and of nbdime diffs, for the history page and the CLI.

Everything a notebook contains is untrusted: cell sources and text outputs are given to
the templates as plain text (Jinja escapes them), markdown is rendered by mistune with raw
HTML escaped and unsafe link schemes dropped, images become ``data:`` URIs of validated
base64, and HTML or JavaScript outputs are never rendered (their plain-text form is shown
instead). The history page also sends a Content-Security-Policy without inline scripts.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from markupsafe import Markup

from .diff import common_ends

#: Longest text output (characters) shown before it is cut.
MAX_TEXT = 20_000
#: Longest text file (characters) the version view shows before it is cut.
MAX_FILE_TEXT = 200_000
#: Largest image output (bytes of base64) shown inline.
MAX_IMAGE = 4 * 1024 * 1024

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]*$")
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return "" if value is None else str(value)


def cut_text(text: str, limit: int = MAX_TEXT) -> str:
    """``text``, or its first ``limit`` characters and a line saying how many are not shown."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit} more characters not shown)"


def strip_ansi(text: str) -> str:
    """Remove terminal colour codes (tracebacks are full of them)."""
    return _ANSI.sub("", text)


_DATA_IMAGE = re.compile(r"^data:image/(png|jpeg|gif|webp|svg\+xml)[;,]", re.IGNORECASE)


def is_data_image(url: str) -> bool:
    """Whether ``url`` is an inline ``data:`` image, the only images the pages show."""
    return bool(_DATA_IMAGE.match(url.strip()))


@lru_cache(maxsize=1)
def _markdown() -> Callable[[str], str] | None:
    try:
        import mistune
        from mistune.util import escape as html_escape
    except ImportError:  # pragma: no cover - mistune comes with nbconvert
        return None

    class Renderer(mistune.HTMLRenderer):
        """Images from ``data:`` URIs only: any other source would make the viewer's
        browser send a request (``![](/logout)`` is a same-origin GET). The others are
        shown as text naming the image."""

        def image(self, text: str, url: str, title: str | None = None) -> str:
            if is_data_image(url):
                return str(super().image(text, url, title))
            alt = f"{text}: " if text else ""
            return f'<span class="bs-image-link">[image not shown: {alt}{html_escape(url)}]</span>'

    md = mistune.create_markdown(
        escape=True, renderer=Renderer(escape=True), plugins=["strikethrough", "table"]
    )
    return md  # type: ignore[return-value]


def render_markdown(source: str) -> Markup | None:
    """Markdown as safe HTML (raw HTML escaped), or None when no renderer is installed."""
    md = _markdown()
    if md is None:
        return None
    return Markup(md(source))  # mistune escaped all raw HTML


def render_output(output: dict[str, Any]) -> dict[str, Any]:
    """One cell output as ``{"kind": text|error|image|markdown|note, ...}`` for templates."""
    otype = output.get("output_type")
    if otype == "stream":
        return {
            "kind": "text",
            "name": output.get("name", "stdout"),
            "text": cut_text(strip_ansi(_text(output.get("text")))),
        }
    if otype == "error":
        tb = "\n".join(_text(line) for line in output.get("traceback") or [])
        text = tb or f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
        return {"kind": "error", "text": cut_text(strip_ansi(text))}
    data = output.get("data") or {}
    for mime in _IMAGE_TYPES:
        if mime in data:
            payload = _text(data[mime]).strip()
            if len(payload) <= MAX_IMAGE and _BASE64.match(payload):
                try:
                    base64.b64decode(payload, validate=False)
                except (binascii.Error, ValueError):
                    break
                compact = re.sub(r"\s", "", payload)
                return {"kind": "image", "src": f"data:{mime};base64,{compact}"}
    if "image/svg+xml" in data:
        svg = _text(data["image/svg+xml"]).encode("utf-8")
        if len(svg) <= MAX_IMAGE:
            # As an <img> source an SVG cannot run scripts.
            src = "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
            return {"kind": "image", "src": src}
    if "text/markdown" in data:
        html = render_markdown(_text(data["text/markdown"]))
        if html is not None:
            return {"kind": "markdown", "html": html}
    if "text/plain" in data:
        hidden = [m for m in data if m in ("text/html", "application/javascript")]
        return {
            "kind": "text",
            "name": "result",
            "text": cut_text(strip_ansi(_text(data["text/plain"]))),
            "hidden": hidden,
        }
    kinds = ", ".join(sorted(data)) or otype or "unknown"
    return {"kind": "note", "text": f"output not shown here ({kinds})"}


def render_cell(cell: dict[str, Any], index: int) -> dict[str, Any]:
    """A cell as ``{"index", "cell_type", "source", "prompt", "html", "outputs"}``."""
    ctype = cell.get("cell_type", "code")
    source = _text(cell.get("source"))
    out: dict[str, Any] = {
        "index": index,
        "cell_type": ctype,
        "source": source,
        "prompt": None,
        "html": None,
        "outputs": [],
    }
    if ctype == "code":
        count = cell.get("execution_count")
        out["prompt"] = f"[{count if count is not None else ' '}]"
        out["outputs"] = [render_output(o) for o in cell.get("outputs") or []]
    elif ctype == "markdown":
        out["html"] = render_markdown(source)
    return out


def render_notebook(nb: dict[str, Any]) -> list[dict[str, Any]]:
    """Every cell of a notebook, rendered for a read-only view."""
    return [render_cell(c, i) for i, c in enumerate(nb.get("cells") or [])]


# --- diffs ---------------------------------------------------------------------------------


@dataclass
class CellChange:
    """One cell of a notebook diff: unchanged, added, removed or modified."""

    status: str
    cell_type: str
    old_index: int | None = None
    new_index: int | None = None
    old: dict[str, Any] | None = None
    new: dict[str, Any] | None = None
    #: ``(tag, line)``: tag ``" "`` unchanged, ``"-"`` removed, ``"+"`` added.
    lines: list[tuple[str, str]] = field(default_factory=list)
    outputs_changed: bool = False
    metadata_changed: bool = False
    old_outputs: list[dict[str, Any]] = field(default_factory=list)
    new_outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.status != "unchanged"


def line_diff(old: str, new: str) -> list[tuple[str, str]]:
    """Every line of ``old`` and ``new``, tagged ``" "``, ``"-"`` or ``"+"``.

    The matcher is quadratic on repeated lines, so the lines both share at the start and
    the end are set aside first (most edits touch a few lines in the middle).
    """
    a, b = old.splitlines(), new.splitlines()
    head, tail = common_ends(a, b)
    out: list[tuple[str, str]] = [(" ", line) for line in a[:head]]
    mid_a, mid_b = a[head : len(a) - tail], b[head : len(b) - tail]
    matcher = difflib.SequenceMatcher(None, mid_a, mid_b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.extend((" ", line) for line in mid_a[i1:i2])
            continue
        out.extend(("-", line) for line in mid_a[i1:i2])
        out.extend(("+", line) for line in mid_b[j1:j2])
    out.extend((" ", line) for line in a[len(a) - tail :])
    return out


def _change(status: str, old: Any, new: Any, oi: int | None, ni: int | None) -> CellChange:
    cell = new if new is not None else old
    old_src = _text(old.get("source")) if old is not None else ""
    new_src = _text(new.get("source")) if new is not None else ""
    change = CellChange(
        status=status,
        cell_type=cell.get("cell_type", "code"),
        old_index=oi,
        new_index=ni,
        old=old,
        new=new,
        lines=line_diff(old_src, new_src),
    )
    if old is not None and new is not None:
        change.outputs_changed = (old.get("outputs") or []) != (new.get("outputs") or [])
        change.metadata_changed = (old.get("metadata") or {}) != (new.get("metadata") or {})
        if (
            status == "modified"
            and old_src == new_src
            and not (change.outputs_changed or change.metadata_changed)
        ):
            change.status = "unchanged"  # only the execution count or the id changed
    if change.outputs_changed or status in {"added", "removed"}:
        change.old_outputs = [render_output(o) for o in (old or {}).get("outputs") or []]
        change.new_outputs = [render_output(o) for o in (new or {}).get("outputs") or []]
    return change


def cell_changes(base: dict[str, Any], remote: dict[str, Any], diff: list[Any]) -> list[CellChange]:
    """Walk nbdime's diff of ``base`` -> ``remote`` into one entry per cell, in order."""
    import nbdime
    from nbdime.diff_utils import to_diffentry_dicts

    base_cells = list(base.get("cells") or [])
    cells_diff: list[Any] = []
    for entry in diff:
        if entry.get("key") == "cells" and entry.get("op") == "patch":
            cells_diff = entry.get("diff") or []
    added: dict[int, list[Any]] = {}
    removed: set[int] = set()
    patched: dict[int, Any] = {}
    for op in cells_diff:
        key = int(op["key"])
        if op["op"] == "addrange":
            added.setdefault(key, []).extend(op["valuelist"])
        elif op["op"] == "removerange":
            removed.update(range(key, key + int(op["length"])))
        elif op["op"] == "patch":
            patched[key] = op["diff"]
        elif op["op"] == "replace":
            removed.add(key)
            added.setdefault(key, []).append(op["value"])
    changes: list[CellChange] = []
    new_index = 0

    def emit_added(at: int) -> None:
        nonlocal new_index
        for cell in added.get(at, []):
            changes.append(_change("added", None, cell, None, new_index))
            new_index += 1

    for i, cell in enumerate(base_cells):
        if i in removed:
            changes.append(_change("removed", cell, None, i, None))
            emit_added(i)
            continue
        emit_added(i)
        if i in patched:
            new_cell = nbdime.patch(cell, to_diffentry_dicts(patched[i]))
            changes.append(_change("modified", cell, new_cell, i, new_index))
        else:
            changes.append(_change("unchanged", cell, cell, i, new_index))
        new_index += 1
    emit_added(len(base_cells))
    return _pair_replacements(changes)


def _pair_replacements(changes: list[CellChange]) -> list[CellChange]:
    """Show a removed cell followed by an added cell of the same type as one modified cell.

    nbdime reports a cell whose source changed completely as removed plus added; side by
    side, a line diff of the two reads better.
    """
    out: list[CellChange] = []
    i = 0
    while i < len(changes):
        if changes[i].status != "removed":
            out.append(changes[i])
            i += 1
            continue
        j = i
        while j < len(changes) and changes[j].status == "removed":
            j += 1
        k = j
        while k < len(changes) and changes[k].status == "added":
            k += 1
        removed, added = changes[i:j], changes[j:k]
        paired = 0
        while (
            paired < min(len(removed), len(added))
            and removed[paired].cell_type == added[paired].cell_type
        ):
            old, new = removed[paired], added[paired]
            out.append(_change("modified", old.old, new.new, old.old_index, new.new_index))
            paired += 1
        out.extend(removed[paired:])
        out.extend(added[paired:])
        i = k
    return out


def metadata_changed(diff: list[Any]) -> bool:
    """Whether the notebook-level metadata differs."""
    return any(entry.get("key") == "metadata" for entry in diff)


def text_diff(changes: list[CellChange], context: bool = False) -> str:
    """A readable, unified-style text of a notebook diff (for the command line)."""
    out: list[str] = []
    for c in changes:
        if not c.changed and not context:
            continue
        if c.new_index is not None and c.old_index not in (None, c.new_index):
            where = f"{c.old_index + 1} -> {c.new_index + 1}"
        elif c.new_index is not None:
            where = str(c.new_index + 1)
        else:
            where = f"{(c.old_index or 0) + 1} (removed)"
        out.append(f"@@ cell {where} ({c.cell_type}): {c.status}")
        for tag, line in c.lines:
            if c.status == "unchanged":
                out.append(f"  {line}")
            else:
                out.append(f"{tag} {line}")
        if c.outputs_changed:
            out.append("  (outputs changed)")
        if c.metadata_changed:
            out.append("  (cell metadata changed)")
    return "\n".join(out) + ("\n" if out else "")


def human_size(size: int | None, missing: str = "") -> str:
    """``1.2 MB``-style sizes for people; ``missing`` when the size is unknown."""
    if size is None:
        return missing
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover
