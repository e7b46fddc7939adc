"""Checks of what users give: version ids, prefixes, page sizes.

Each returns the clean value or raises :class:`bookstore.errors.BadRequest` with a
message that says what to give instead; the API, the pages, the CLI and the client all
use these, so they accept the same input.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import BadRequest

PREFIXES = ("workspace", "published", "runs")
#: Prefixes whose versions can be restored into the workspace file.
RESTORABLE_PREFIXES = ("workspace", "published")

#: Largest page of a listing.
MAX_LIMIT = 1000

#: S3 version ids are opaque, URL-ready strings of at most 1,024 bytes. AWS uses letters,
#: digits and ``._`` (its documentation also shows ``+`` and ``/``); moto uses UUIDs and
#: SeaweedFS 32 hex digits. ``null`` is the id of objects written before versioning.
VERSION_ID_RE = re.compile(r"^[A-Za-z0-9._+/=-]{1,1024}$")


def validate_version_id(value: Any, name: str = "version_id") -> str:
    """Return ``value`` if it can be an S3 version id, else raise :class:`BadRequest`."""
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} is missing: give an S3 version id from the versions listing")
    if not VERSION_ID_RE.match(value):
        hint = " (percent-encode '+' as %2B in URLs)" if " " in value else ""
        raise BadRequest(
            f"{name} {value[:80]!r} is not a valid S3 version id: expected up to 1024 "
            f"letters, digits or ._+/=- characters{hint}"
        )
    return value


def optional_version_id(value: Any, name: str = "version_id") -> str | None:
    """None for a missing or empty version id (the latest), else :func:`validate_version_id`."""
    if value is None or value == "":
        return None
    return validate_version_id(value, name)


def validate_prefix(value: Any, allowed: tuple[str, ...] = PREFIXES) -> str:
    """``workspace`` (the default), ``published`` or ``runs`` (or one of ``allowed``)."""
    if value in (None, ""):
        return "workspace"
    if value not in allowed:
        names = ", ".join(repr(p) for p in allowed[:-1]) + f" or {allowed[-1]!r}"
        raise BadRequest(f"prefix must be {names} (got {value!r})")
    return str(value)


def validate_limit(value: Any, default: int = MAX_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """A page size between 1 and ``maximum`` (1000)."""
    if value in (None, ""):
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"limit must be an integer from 1 to {maximum} (got {value!r})") from None
    if not 1 <= limit <= maximum:
        raise BadRequest(f"limit must be from 1 to {maximum} (got {limit})")
    return limit
