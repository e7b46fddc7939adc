"""Times as bookstore writes and shows them: ISO 8601 in UTC, and the short human form."""

from __future__ import annotations

from datetime import datetime, timezone


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive time is taken to be UTC already."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def isoformat(value: datetime | str | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, milliseconds precision (a string is kept as it is)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utcnow_iso() -> str:
    """Now, as :func:`isoformat` writes it (the ``saved-at`` of a save)."""
    return isoformat(datetime.now(timezone.utc)) or ""


def parse_time(value: str | datetime | None) -> datetime | None:
    """A datetime from an ISO 8601 string (``Z`` allowed), or None."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_time(value: datetime | str | None, suffix: str = "", *, empty: str = "") -> str:
    """``2024-05-01 14:03:22`` (UTC) plus ``suffix``; ``empty`` when there is no time."""
    when = parse_time(value)
    if when is None:
        return empty
    return utc(when).strftime("%Y-%m-%d %H:%M:%S") + suffix
