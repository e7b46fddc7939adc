"""Publishing: write a notebook's bytes to the published prefix (used by the API and the CLI)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from .s3 import META_PATH, META_SAVED_AT, META_SHA256, META_USER
from .spool import utcnow_iso

if TYPE_CHECKING:
    from .s3 import S3Store
    from .settings import BookstoreSettings

#: What a notebook is stored as in S3.
NOTEBOOK_CONTENT_TYPE = "application/x-ipynb+json"


async def publish_bytes(
    store: S3Store, settings: BookstoreSettings, path: str, data: bytes
) -> dict[str, Any]:
    """Store ``data`` (a serialised notebook) at ``<published prefix>/<path>``.

    ``path`` must already be clean (:func:`bookstore.settings.clean_api_path`). Answers the
    publish API's fields: ``s3_path``, ``versionID``, ``bucket``, ``key``, ``sha256``.
    Raises :class:`bookstore.s3.S3Error` subclasses.
    """
    key = settings.s3_key("published", path)
    sha256 = hashlib.sha256(data).hexdigest()
    metadata = {
        META_SHA256: sha256,
        META_SAVED_AT: utcnow_iso(),
        META_USER: settings.username,
        META_PATH: path,
    }
    result = await store.put_object(key, data, metadata, content_type=NOTEBOOK_CONTENT_TYPE)
    return {
        "s3_path": f"s3://{result.bucket}/{key}",
        "versionID": result.version_id,
        "bucket": result.bucket,
        "key": key,
        "sha256": sha256,
    }
