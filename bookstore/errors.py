"""Bookstore's errors: one tree, each error carrying the HTTP status that fits it.

Everything bookstore raises for a request it cannot serve derives from
:class:`BookstoreError`. Its ``status`` is the HTTP status the server answers with (the
API handlers map it once, in :class:`bookstore.handlers.base.BookstoreErrorMixin`), and
its message says what to fix. Nothing here imports tornado, so the command line, the
client and the archiver use the same errors::

    BookstoreError                        500 unless a subclass says otherwise
    ├── BadRequest (ValueError)           400 malformed input: an id, a prefix, a body
    ├── Forbidden (PermissionError)       403 not allowed (readable_prefixes, permissions)
    ├── NotFound                          404 no such path, version, folder or file
    ├── Conflict                          409 the target is in the way (a folder)
    ├── TooLarge                          413 a body or file over a limit
    ├── NotANotebook                      415 a notebook operation on another kind of file
    ├── InvalidNotebook                   422 bytes or JSON that are not a valid notebook
    ├── TooManyRequests                   429 too many runs at once
    └── S3Error                           502 S3 failed; ``retryable`` and ``code``
        ├── S3Unavailable                 503 unreachable, timed out, overloaded, 5xx
        ├── S3Refused                     502 credentials, access denied, no bucket
        ├── S3NotFound                    404 the key or version does not exist
        ├── S3BadRequest                  400 S3 rejected an argument we passed
        └── ObjectTooLarge                413 over ``max_read_bytes``; not read

``HistoryError`` is the former name of the base, kept for imports. The in-notebook client
(:mod:`bookstore.client`) raises this tree too: its ``BookstoreNotFound`` is a
:class:`NotFound`, its ``BookstoreS3Error`` an :class:`S3Error`, and so on. So are the
refusals of a run (:class:`bookstore.runs.RunError`, with ``status`` and ``exit_code``).
"""

from __future__ import annotations


class BookstoreError(Exception):
    """A request bookstore cannot serve; ``status`` is the HTTP status to answer with."""

    status = 500

    def __init__(self, message: str = "", *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        return str(self)


#: The former name of :class:`BookstoreError` (the history module's base error).
HistoryError = BookstoreError


class BadRequest(BookstoreError, ValueError):
    status = 400


class Forbidden(BookstoreError, PermissionError):
    status = 403


class NotFound(BookstoreError):
    status = 404


class Conflict(BookstoreError):
    status = 409


class TooLarge(BookstoreError):
    status = 413


class NotANotebook(BookstoreError):
    status = 415


class InvalidNotebook(BookstoreError):
    status = 422


class TooManyRequests(BookstoreError):
    status = 429


class S3Error(BookstoreError):
    """Base class of bookstore's S3 errors; ``str()`` says what happened.

    S3's own status is never the answer's: each subclass says which of ours fits.
    """

    status = 502
    #: Whether the same request can succeed later (see :mod:`bookstore.s3`).
    retryable = True

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class S3Unavailable(S3Error):
    """S3 could not be reached, timed out, or answered with a server error."""

    status = 503


class S3Refused(S3Error):
    """S3 answered but refused the request: credentials, permissions, missing bucket."""

    status = 502


class S3NotFound(S3Error):
    """The requested key or version does not exist."""

    status = 404


class S3BadRequest(S3Error):
    """S3 rejected the request for what it is (malformed version id, key or metadata too
    long, body too large...): sending it again cannot succeed."""

    status = 400
    retryable = False


class ObjectTooLarge(S3Error):
    """The object is larger than we agree to read (``BookstoreSettings.max_read_bytes``)."""

    status = 413

    def __init__(self, message: str, *, size: int | None = None, limit: int = 0) -> None:
        super().__init__(message, code="TooLarge")
        self.size = size
        self.limit = limit


def http_status(e: BaseException) -> int:
    """The HTTP status for ``e``: its own for a bookstore error, else 500."""
    return e.status if isinstance(e, BookstoreError) else 500
