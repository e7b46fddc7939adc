"""What bookstore stores with every S3 object: its content type and its metadata.

The ``META_*`` names are the ``x-amz-meta-*`` keys; :func:`object_metadata` builds the
metadata of a version (a save, a restore, a publish, a run output) and
:func:`content_type_for` its ``Content-Type``, the same for the archiver, the API and
the command line.
"""

from __future__ import annotations

import mimetypes
import posixpath
from collections.abc import Mapping

#: What a notebook is stored as in S3.
NOTEBOOK_CONTENT_TYPE = "application/x-ipynb+json"
#: What a file of unknown type is stored as.
OCTET_STREAM = "application/octet-stream"

# Metadata stored on every object bookstore writes (as x-amz-meta-*).
META_SHA256 = "sha256"
META_SAVED_AT = "saved-at"
META_USER = "user"
META_PATH = "jupyter-path"
META_SAVE_ID = "save-id"
META_RENAMED_FROM = "renamed-from"
META_DROPPED_SAVES = "dropped-saves"
#: On a version written by a restore: the version it came from.
META_RESTORED_FROM = "restored-from"

# Metadata on every run output object, besides sha256/user/jupyter-path/saved-at.
META_RUN_ID = "run-id"
META_RUN_STATUS = "run-status"
META_SOURCE_VERSION_ID = "source-version-id"
META_SOURCE_SHA256 = "source-sha256"
#: Compact JSON with the rest of the run record (parameters dropped if too large).
META_RUN = "run"


def content_type_for(path: str, model_type: str | None = None, mimetype: str | None = None) -> str:
    """The ``Content-Type`` a file at Jupyter ``path`` is stored with.

    A notebook (``.ipynb``, or a contents model of type ``notebook``) is
    :data:`NOTEBOOK_CONTENT_TYPE`; another file its model's ``mimetype``, else the type
    its name suggests, else :data:`OCTET_STREAM`.
    """
    if model_type == "notebook":
        return NOTEBOOK_CONTENT_TYPE
    if mimetype:
        return mimetype
    if path.endswith(".ipynb"):
        return NOTEBOOK_CONTENT_TYPE
    return mimetypes.guess_type(posixpath.basename(path))[0] or OCTET_STREAM


def object_metadata(
    *,
    sha256: str,
    saved_at: str,
    user: str,
    path: str,
    save_id: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The metadata of a version bookstore writes: who, when, where from, its hash."""
    meta = {META_SHA256: sha256, META_SAVED_AT: saved_at, META_USER: user, META_PATH: path}
    if save_id is not None:
        meta[META_SAVE_ID] = save_id
    if extra:
        meta.update(extra)
    return meta
