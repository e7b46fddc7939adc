"""bookstore: every save of a notebook becomes an immutable version on S3.

Storage, versioning, publishing and cloning of Jupyter notebooks on S3-compatible
object storage, as a jupyter_server 2 extension.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .archive import BookstoreContentsArchiver
from .extension import BookstoreExtension
from .settings import BookstoreSettings

__all__ = [
    "BookstoreContentsArchiver",
    "BookstoreExtension",
    "BookstoreSettings",
    "__version__",
]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "bookstore", "app": BookstoreExtension}]
