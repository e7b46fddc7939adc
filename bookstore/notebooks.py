"""Notebooks and files as bytes and as Jupyter contents models (all blocking: use threads).

* :func:`parse_notebook`: stored bytes to a notebook (:class:`InvalidNotebook` if not one);
* :func:`check_notebook`: a notebook given as JSON, validated strictly (422 with
  nbformat's message), as the publish and clone APIs take it;
* :func:`notebook_bytes`: the bytes bookstore stores for a notebook;
* :func:`file_model`: bytes to the model that ``contents_manager.save()`` writes, for a
  notebook or any other file; ``untrusted`` for what comes from elsewhere (a clone), whose
  trust marks are dropped (:func:`strip_trust`).
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from .errors import InvalidNotebook

if TYPE_CHECKING:
    import nbformat

# nbformat is imported where it is used: importing it loads jsonschema's format checkers,
# seconds of start-up for command-line tools (``bookstore versions``) that never parse one.

#: Longest nbformat validation message we send back (some embed a whole cell).
_MAX_MESSAGE = 600


def is_notebook_path(path: str) -> bool:
    return path.endswith(".ipynb")


def parse_notebook(data: bytes, what: str, *, validate: bool = True) -> nbformat.NotebookNode:
    """Parse stored notebook bytes (blocking); :class:`InvalidNotebook` if they are not one.

    Schema validation only logs (as Jupyter does when it opens a notebook) and takes most
    of the time on big notebooks: diffs skip it (``validate=False``).
    """
    import nbformat

    try:
        if validate:
            return nbformat.reads(data.decode("utf-8"), as_version=4, capture_validation_error={})
        raw = json.loads(data.decode("utf-8"))
        if isinstance(raw, dict) and raw.get("nbformat") == 4:  # what nbformat's reader does
            from nbformat.v4.rwbase import rejoin_lines, strip_transient

            return strip_transient(rejoin_lines(nbformat.from_dict(raw)))
        return nbformat.convert(nbformat.from_dict(raw), 4)
    except Exception as e:  # decoding, JSON and nbformat's own reader errors
        raise InvalidNotebook(f"{what} is not a valid notebook: {e}") from e


def file_content(data: bytes) -> tuple[str, str]:
    """``(content, format)`` of a file as Jupyter's contents API gives it: text or base64."""
    try:
        return data.decode("utf-8"), "text"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def check_notebook(content: Any, what: str = "the notebook") -> nbformat.NotebookNode:
    """Validate an nbformat 4 notebook given as a JSON dict; 422 with nbformat's message.

    Blocking (schema validation of a large notebook takes a while): run it in a thread.
    """
    if not isinstance(content, dict) or not content:
        raise InvalidNotebook(f"{what} is empty or not a JSON object")
    major = content.get("nbformat")
    if major != 4 or not isinstance(content.get("nbformat_minor"), int):
        raise InvalidNotebook(
            f"{what} must be an nbformat 4 notebook (got nbformat={major!r}, "
            f"nbformat_minor={content.get('nbformat_minor')!r}); convert it with "
            f"`jupyter nbconvert --to notebook` or nbformat.convert()",
        )
    cells = content.get("cells")
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise InvalidNotebook(
            f"{what} is not a valid notebook: at $.cells: must be a list of cell objects"
        )
    import nbformat

    nb = nbformat.from_dict(content)
    if nb.nbformat_minor >= 5:
        _repair_cell_ids(nb.cells)
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as e:
        message = str(getattr(e, "message", e))
        if len(message) > _MAX_MESSAGE:
            message = message[:_MAX_MESSAGE] + "..."
        where = getattr(e, "json_path", None) or "$"
        raise InvalidNotebook(f"{what} is not a valid notebook: at {where}: {message}") from e
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidNotebook(f"{what} is not a valid notebook: {e}") from e
    return nb


def _repair_cell_ids(cells: list[Any]) -> None:
    """Give missing or duplicate cell ids a fresh one, as Jupyter does when it saves.

    nbformat would do the same inside ``validate``, with a warning each time.
    """
    from nbformat.corpus.words import generate_corpus_id

    seen: set[Any] = set()
    for cell in cells:
        if "id" not in cell or cell["id"] in seen:
            cell["id"] = generate_corpus_id()
        seen.add(cell["id"])


def notebook_bytes(nb: nbformat.NotebookNode) -> bytes:
    """The bytes the archive stores for ``nb``: nbformat's own serialisation plus a newline."""
    import nbformat

    text = nbformat.writes(nb, version=nbformat.NO_CONVERT)
    if not text.endswith("\n"):
        text += "\n"
    return text.encode("utf-8")


def strip_trust(nb: dict[str, Any]) -> None:
    """Drop every trust mark a notebook carries, so nothing in it is trusted on arrival.

    A cell marked ``"trusted": true`` would make Jupyter sign the notebook on save; the
    ``signature`` field is where nbformat 3 kept the signature.
    """
    for cell in nb.get("cells") or []:
        metadata = cell.get("metadata")
        if isinstance(metadata, dict):
            metadata.pop("trusted", None)
    metadata = nb.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("signature", None)


def file_model(
    path: str, data: bytes, what: str | None = None, *, untrusted: bool = False
) -> dict[str, Any]:
    """The contents model that saves ``data`` at ``path``: a notebook for ``.ipynb``, else a
    file (text when it is UTF-8, base64 otherwise).

    A notebook's own version (a restore) is read as Jupyter opens a file
    (:func:`parse_notebook`); an ``untrusted`` one (a clone) must be valid JSON and a valid
    notebook (:class:`InvalidNotebook`, 422) and loses its trust marks.
    """
    what = what or path
    if is_notebook_path(path):
        if not untrusted:
            return {"type": "notebook", "format": "json", "content": parse_notebook(data, what)}
        try:
            content = json.loads(data)
        except ValueError as e:
            raise InvalidNotebook(f"{what} is not a notebook: it is not JSON ({e})") from e
        nb = check_notebook(content, what)
        strip_trust(nb)
        return {"type": "notebook", "format": "json", "content": nb}
    content, fmt = file_content(data)
    return {"type": "file", "format": fmt, "content": content}
