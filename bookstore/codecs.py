"""The opaque strings bookstore hands out and reads back: page tokens and checkpoint ids.

* A *store token* is where :meth:`bookstore.s3.S3Store.list_versions` resumes a listing:
  ``"<key>\\n<version id>"`` (S3's key and version-id markers).
* A *page token* is what the API answers as ``next_token``: any raw token made opaque
  and URL-safe (unpadded URL-safe base64). Reading one back checks that it belongs to
  the listing it is given to.
* A *checkpoint id* is a Jupyter checkpoint id (``[\\w-]+``) naming a version:
  ``v-<S3 version id, escaped>`` for an uploaded version, ``p-<save id>`` for a save
  still in the spool.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import datetime, timezone

from .errors import BadRequest
from .validators import validate_version_id

# --- page tokens ---------------------------------------------------------------------------

#: What to do with a token that does not belong to the listing (the default hint).
RESEND_HINT = "pass back the next_token of the previous page unchanged"


def store_token(key: str, version_id: str | None) -> str:
    """The store's token for a version listing resuming after ``version_id`` of ``key``."""
    return f"{key}\n{version_id or ''}"


def split_store_token(raw: str) -> tuple[str, str]:
    """``(key marker, version-id marker)`` of a store token (the version may be empty)."""
    key, _, version_id = raw.partition("\n")
    return key, version_id


def encode_page_token(raw: str | None) -> str | None:
    """A raw token as an opaque, URL-safe string (None stays None: no next page)."""
    if raw is None:
        return None
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode_page_token(
    token: str | None,
    key: str | None = None,
    *,
    accept: Callable[[str], bool] | None = None,
    hint: str = RESEND_HINT,
) -> str | None:
    """Undo :func:`encode_page_token`, or :class:`BadRequest` for a foreign token.

    The token belongs to the listing when its store token is of ``key``, or when
    ``accept(raw)`` says so. An empty token is None (the first page).
    """
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = None
    ok = raw is not None and (
        (key is None or split_store_token(raw)[0] == key) and (accept is None or accept(raw))
    )
    if not ok or raw is None:
        raise BadRequest(f"page_token is not a next_token of this listing: {hint}")
    return raw


# --- checkpoint ids ------------------------------------------------------------------------

#: Ids of the spool's save entries (:func:`bookstore.spool.new_save_id`).
SAVE_ID_RE = re.compile(r"^[0-9]{20}-[0-9a-f]{6}$")

#: Jupyter's checkpoint ids must match ``[\w-]+``; ours are ``v-<escaped S3 version id>``
#: for uploaded versions and ``p-<save id>`` for saves still in the spool.
CHECKPOINT_VERSION = "v-"
CHECKPOINT_PENDING = "p-"
_CHECKPOINT_SAFE = re.compile(r"[A-Za-z0-9-]")
_CHECKPOINT_ENCODED = re.compile(r"^(?:[A-Za-z0-9-]|_[0-9a-f]{2})+$")
_CHECKPOINT_TOKEN = re.compile(r"_([0-9a-f]{2})|[A-Za-z0-9-]")


def checkpoint_id_for_version(version_id: str) -> str:
    """A Jupyter checkpoint id (``[\\w-]+``) for an S3 version id, reversibly.

    Letters, digits and ``-`` are kept (moto's and SeaweedFS's ids stay readable); every
    other byte becomes ``_xx`` (hex).
    """
    out = []
    for ch in version_id:
        if _CHECKPOINT_SAFE.match(ch):
            out.append(ch)
        else:
            out.extend(f"_{b:02x}" for b in ch.encode("utf-8"))
    return CHECKPOINT_VERSION + "".join(out)


def checkpoint_id_for_save(save_id: str) -> str:
    """The checkpoint id of a save still in the spool."""
    return CHECKPOINT_PENDING + save_id


def save_time(save_id: str) -> datetime | None:
    """When a save was made, from its id (:func:`bookstore.spool.new_save_id`), or None."""
    if not SAVE_ID_RE.match(save_id):
        return None
    try:
        return datetime.fromtimestamp(int(save_id[:20]) / 1e9, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def parse_checkpoint_id(checkpoint_id: str) -> tuple[str, str]:
    """``("version", s3_version_id)`` or ``("save", save_id)``; BadRequest otherwise."""
    kind, _, rest = checkpoint_id.partition("-")
    if kind + "-" == CHECKPOINT_PENDING and SAVE_ID_RE.match(rest):
        return "save", rest
    if kind + "-" == CHECKPOINT_VERSION and _CHECKPOINT_ENCODED.match(rest):
        raw = bytearray()
        for m in _CHECKPOINT_TOKEN.finditer(rest):
            raw.extend(bytes.fromhex(m.group(1)) if m.group(1) else m.group(0).encode("ascii"))
        try:
            version_id = raw.decode("utf-8")
            return "version", validate_version_id(version_id)
        except (UnicodeDecodeError, BadRequest):
            pass
    raise BadRequest(
        f"{checkpoint_id!r} is not a bookstore checkpoint id: list the checkpoints "
        f"(GET /api/contents/<path>/checkpoints) and use one of their ids"
    )
