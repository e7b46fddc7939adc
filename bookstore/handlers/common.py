"""Pieces shared by the handlers that take a body: bounded request bodies, JSON parsing."""

from __future__ import annotations

import json
import re
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..errors import BadRequest, TooLarge

__all__ = [
    "BoundedBodyMixin",
    "dumps",
    "parse_json",
]

#: Deepest nesting of arrays and objects a request body may have. Notebooks need about
#: ten levels plus what their JSON outputs hold; deeper input would exhaust the stack of
#: the recursive code (nbformat, jsonschema) that walks it.
MAX_JSON_DEPTH = 200

_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_json(raw: bytes, what: str = "request body") -> Any:
    """Parse a JSON request body; :class:`BadRequest` (400) saying what is wrong with it.

    Besides malformed JSON this refuses what ``json.loads`` accepts but nothing after it
    can handle: invalid UTF-8, lone surrogates written as ``\\ud800`` escapes (they
    cannot be encoded to store them anywhere), and nesting deeper than
    :data:`MAX_JSON_DEPTH` (``RecursionError`` further on).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"{what} is not valid UTF-8: {e}") from e
    try:
        value = json.loads(text)
    except RecursionError as e:
        raise BadRequest(f"{what} is nested too deeply (limit: {MAX_JSON_DEPTH} levels)") from e
    except ValueError as e:
        raise BadRequest(f"{what} is not valid JSON: {e}") from e
    _check_json_tree(value, what)
    return value


def _check_json_tree(value: Any, what: str) -> None:
    """Depth and lone-surrogate check, iterative so it cannot overflow the stack itself."""
    # Each entry: (node, depth, where) with ``where`` a linked (parent, key) pair, turned
    # into a JSON path only when something is wrong.
    stack: list[tuple[Any, int, Any]] = [(value, 1, None)]
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, str):
            _check_string(node, what, where)
        elif isinstance(node, dict):
            if depth > MAX_JSON_DEPTH:
                _too_deep(what)
            for key, child in node.items():
                _check_string(key, what, where)
                stack.append((child, depth + 1, (where, key)))
        elif isinstance(node, list):
            if depth > MAX_JSON_DEPTH:
                _too_deep(what)
            stack.extend((child, depth + 1, (where, i)) for i, child in enumerate(node))


def _too_deep(what: str) -> None:
    raise BadRequest(f"{what} is nested too deeply (limit: {MAX_JSON_DEPTH} levels)")


def _json_path(where: Any) -> str:
    keys = []
    while where is not None:
        where, key = where
        keys.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    path = "$" + "".join(reversed(keys))
    return path if len(path) <= 200 else path[:200] + "..."


def _check_string(text: str, what: str, where: Any) -> None:
    match = _SURROGATE.search(text)
    if match is None:
        return
    # Paired surrogates become one code point in json.loads, so any match is lone.
    raise BadRequest(
        f"{what} holds a lone surrogate (U+{ord(match.group()):04X}) at "
        f"{_json_path(where)}: JSON strings must be valid Unicode",
    )


@web.stream_request_body
class BoundedBodyMixin(APIHandler):
    """Refuse request bodies over ``max_request_body_size`` before reading them.

    The declared ``Content-Length`` is checked as soon as the headers are in, after
    authentication, so an oversized upload gets 413 without being read. Tornado is told
    the same limit, so a chunked body that grows past it is cut off rather than buffered.
    Handlers then read the collected bytes from ``self.request.body`` as usual.
    """

    _body_chunks: list[bytes]
    _body_size: int = 0
    _body_collected: bool = False

    @property
    def body_limit(self) -> int:
        return int(self.settings["bookstore_settings"].max_request_body_size)

    async def prepare(self) -> None:  # type: ignore[override]  # as APIHandler.prepare
        self._body_chunks = []
        self._body_size = 0
        limit = self.body_limit
        # Never read more than the limit, whatever the outcome of the checks below.
        connection = self.request.connection
        if connection is not None and hasattr(connection, "set_max_body_size"):
            connection.set_max_body_size(limit)
        await super().prepare()  # authentication and XSRF first
        if self._finished:
            return
        declared = self.request.headers.get("Content-Length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError as e:
                raise BadRequest(f"invalid Content-Length header {declared!r}") from e
            if size > limit:
                raise TooLarge(
                    f"request body of {size} bytes is larger than the limit of {limit} bytes "
                    f"(c.BookstoreSettings.max_request_body_size)",
                )

    def body_unread(self) -> bool:
        """Whether part of the request body is still on the wire (we answer before it)."""
        if self._body_collected:
            return False
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit():
            return self._body_size < int(declared)
        # A chunked body is only known to be complete once the handler method has it.
        return "chunked" in self.request.headers.get("Transfer-Encoding", "").lower()

    def finish(self, chunk: Any = None) -> Any:
        """Answer, and say ``Connection: close`` if the request body was never read.

        Tornado drops such a connection after the answer (the rest of the body cannot be
        told from a next request). Without the header a keep-alive client sends its next
        request on it and sees that request fail: after a 403 from authentication or
        XSRF, a 413, or any error raised before the body arrived.
        """
        if not self._headers_written and self.body_unread():
            self.set_header("Connection", "close")
        return super().finish(chunk)

    def data_received(self, chunk: bytes) -> None:
        self._body_size += len(chunk)
        if self._body_size <= self.body_limit:
            self._body_chunks.append(chunk)

    def collect_body(self) -> None:
        """Put the received bytes in ``self.request.body``; 413 if they were over the limit."""
        if self._body_size > self.body_limit:
            raise TooLarge(f"request body is larger than the limit of {self.body_limit} bytes")
        self._body_collected = True
        self.request.body = b"".join(self._body_chunks)
        self._body_chunks = []


def dumps(model: dict[str, Any]) -> str:
    """JSON for a contents model (its dates included), as the contents API writes it."""
    return json.dumps(model, default=json_default)
