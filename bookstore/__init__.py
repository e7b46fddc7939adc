"""bookstore: every save of a notebook becomes an immutable version on S3.

Storage, versioning, publishing and cloning of Jupyter notebooks on S3-compatible
object storage, as a jupyter_server 2 extension.

The server-side names are imported lazily, so that ``from bookstore.client import
BookstoreClient`` works in a kernel environment that has only the standard library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .archive import BookstoreContentsArchiver
    from .extension import BookstoreExtension
    from .settings import BookstoreSettings

__all__ = [
    "BookstoreContentsArchiver",
    "BookstoreExtension",
    "BookstoreSettings",
    "__version__",
]

_LAZY = {
    "BookstoreContentsArchiver": "bookstore.archive",
    "BookstoreExtension": "bookstore.extension",
    "BookstoreSettings": "bookstore.settings",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bookstore' has no attribute {name!r}")


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .extension import BookstoreExtension

    return [{"module": "bookstore", "app": BookstoreExtension}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The prebuilt JupyterLab / Notebook 7 extension (for ``jupyter labextension develop``)."""
    return [{"src": "labextension", "dest": "jupyterlab-bookstore"}]
