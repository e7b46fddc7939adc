"""The S3 store: one long-lived aiobotocore client per server, and the few S3 calls we make.

Errors are translated (:func:`translate_error`) into a small hierarchy, part of
:mod:`bookstore.errors`, so that handlers can answer with the right status and the
archiver can tell "retry later" from "S3 refused us"::

    S3Error
    ├── S3Unavailable   S3 cannot be reached or is overloaded (network, timeouts, 5xx)  -> 503
    ├── S3Refused       S3 answered but refused (credentials, access denied, no bucket) -> 502
    ├── S3NotFound      the key or version does not exist                               -> 404
    ├── S3BadRequest    S3 rejected an argument we passed (e.g. a malformed version id) -> 400
    └── ObjectTooLarge  the object is larger than ``max_read_bytes``; not read        -> 413

``S3Error.retryable`` tells the archiver whether trying again later can succeed: an
outage, a refusal (credentials and policies get fixed) or throttling can; a request S3
rejects for what it is (a key over 1,024 bytes, metadata over 2 KB, a body over 5 GB, any
other 4xx that is not throttling or a timeout) cannot, and is set aside instead.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote, unquote

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from .codecs import split_store_token, store_token
from .errors import (
    ObjectTooLarge,
    S3BadRequest,
    S3Error,
    S3NotFound,
    S3Refused,
    S3Unavailable,
)
from .metadata import (  # noqa: F401  (their former home: kept importable from here)
    META_DROPPED_SAVES,
    META_PATH,
    META_RENAMED_FROM,
    META_SAVE_ID,
    META_SAVED_AT,
    META_SHA256,
    META_USER,
    NOTEBOOK_CONTENT_TYPE,
)
from .signing import HashedBody
from .signing import install as install_signer

if TYPE_CHECKING:
    from aiobotocore.session import AioSession

    from .settings import BookstoreSettings


#: S3's limits on one PUT: key length (UTF-8 bytes), user metadata (keys and values, UTF-8
#: bytes) and body size. Checked before an upload is attempted.
MAX_KEY_BYTES = 1024
MAX_METADATA_BYTES = 2048
MAX_PUT_BYTES = 5 * 1024**3

#: S3 object tag marking a version that ``bookstore prune`` never deletes.
PIN_TAG = "bookstore-pinned"
_PIN_TAG_VALUE = {"Key": PIN_TAG, "Value": "true"}
#: The pin index, read by listings instead of every version's tags: one small marker
#: object per pinned version, ``<PIN_INDEX_PREFIX>/<key>/<version id, percent-encoded>``.
PIN_INDEX_PREFIX = ".bookstore-pins"
#: Most LIST pages (of 1,000 markers) read from one key's pin index.
MAX_PIN_INDEX_PAGES = 10

_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}
_REFUSED_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "AllAccessDisabled",
    "InvalidToken",
    "ExpiredToken",
    "403",
    "AccountProblem",
}
# Set while a put_object() must not be re-sent by botocore (see _refuse_blind_resend).
_no_resend: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "bookstore_no_resend", default=False
)


def _refuse_blind_resend(caught_exception: BaseException | None = None, **kwargs: Any) -> None:
    """``needs-retry`` hook: end the call on a connection error instead of re-sending.

    After a reset or a timeout S3 may have stored the upload and only its answer was lost;
    re-sending would store it twice. The archiver retries on its own, checking first.
    """
    if caught_exception is not None and _no_resend.get():
        raise caught_exception


_BAD_REQUEST_CODES = {
    "InvalidArgument",
    "InvalidVersionId",
    "400",
    "BadRequest",
    "KeyTooLongError",
    "MetadataTooLarge",
    "EntityTooLarge",
    "InvalidRequest",
    "InvalidObjectName",
    "InvalidURI",
    "MalformedXML",
    "InvalidDigest",
    "BadDigest",
}
# 4xx answers that say "later", not "never": timeouts, throttling, clock skew, conflicts.
_RETRYABLE_4XX_CODES = {
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "OperationAborted",
    "PriorRequestNotComplete",
}
_RETRYABLE_4XX_STATUSES = {401, 403, 404, 408, 409, 423, 425, 429}

#: Most parts in a multipart upload (S3's limit): big files get bigger parts.
MAX_PARTS = 10_000
#: How many version metadata entries :class:`S3Store` keeps in memory (about 0.5 KB each).
VERSION_METADATA_CACHE_SIZE = 50_000
#: Default number of concurrent HEAD requests made by :meth:`S3Store.version_metadata`.
VERSION_METADATA_CONCURRENCY = 16
#: How many first pages of version listings :meth:`S3Store.list_versions_cached` keeps.
LISTING_CACHE_SIZE = 64
#: Seconds a cached listing may be reused (it is checked against the latest version first).
LISTING_CACHE_TTL = 60.0
#: Versions listed to catch up a cached listing with the versions added since.
LISTING_INCREMENT = 25
#: Most keys per DeleteObjects request (S3's limit).
DELETE_BATCH_SIZE = 1000


async def gather_or_cancel(coros: Iterable[Awaitable[Any]]) -> list[Any]:
    """Await all of ``coros`` at once and return their results in order; if one fails (or
    we are cancelled), cancel the rest and wait for them before raising, so no request
    outlives its caller (``asyncio.gather`` leaves the others running)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def pin_index_prefix(key: str) -> str:
    """Where the pin index markers of ``key``'s versions are (a directory of their own:
    listed with a ``/`` delimiter, so ``a.ipynb/b.ipynb``'s markers are not ``a.ipynb``'s).

    A key too long to fit there with a version id under S3's 1,024-byte limit is
    replaced by its sha256.
    """
    prefix = f"{PIN_INDEX_PREFIX}/{key}/"
    if len(prefix.encode()) > MAX_KEY_BYTES - 200:
        prefix = f"{PIN_INDEX_PREFIX}/.sha256/{hashlib.sha256(key.encode()).hexdigest()}/"
    return prefix


def pin_marker_key(key: str, version_id: str) -> str:
    """The pin index marker of one version (its id percent-encoded: it may hold a ``/``)."""
    return pin_index_prefix(key) + quote(version_id, safe="")


def too_large(what: str, size: int | None, limit: int) -> ObjectTooLarge:
    """The error for an object over the read limit, saying which setting to raise."""
    from .render import human_size

    seen = f"{size} bytes ({human_size(size)})" if size is not None else "more than that"
    return ObjectTooLarge(
        f"{what}: the object is {seen}, over the read limit of {limit} bytes "
        f"({human_size(limit)}); raise c.BookstoreSettings.max_read_bytes to read it",
        size=size,
        limit=limit,
    )


#: Bytes read from S3 at a time when streaming an object to a file.
DOWNLOAD_CHUNK = 1024 * 1024


def translate_error(exc: BaseException, what: str) -> S3Error:
    """Map a botocore/aiohttp exception to an :class:`S3Error` saying what failed."""
    if isinstance(exc, S3Error):
        return exc
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = err.get("Message") or code or "no message"
        text = f"{what}: S3 answered {code or status}: {message}"
        if code in _NOT_FOUND_CODES or (status == 404 and code != "NoSuchBucket"):
            return S3NotFound(text, code=code)
        if code in _RETRYABLE_4XX_CODES or status in {408, 429}:
            return S3Unavailable(text, code=code)
        if code in _REFUSED_CODES or status in {401, 403}:
            return S3Refused(text, code=code)
        if code in _BAD_REQUEST_CODES or status == 400:
            return S3BadRequest(text, code=code)
        if status >= 500 or code in {"ServiceUnavailable", "InternalError"}:
            return S3Unavailable(text, code=code)
        if 400 <= status < 500 and status not in _RETRYABLE_4XX_STATUSES:
            return S3BadRequest(text, code=code)  # 405, 411, 413, 414, 431...
        return S3Refused(text, code=code)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return S3Refused(
            f"{what}: no usable S3 credentials (set c.BookstoreSettings.s3_access_key_id "
            f"and s3_secret_access_key, or the JPYNB_S3_* / AWS_* environment variables)",
            code="NoCredentials",
        )
    if isinstance(exc, (BotoConnectionError, HTTPClientError, OSError, asyncio.TimeoutError)):
        return S3Unavailable(f"{what}: S3 is unreachable: {exc}", code="Unreachable")
    if isinstance(exc, BotoCoreError):
        return S3Unavailable(f"{what}: {exc}", code=type(exc).__name__)
    # aiohttp (aiobotocore's HTTP client) is not imported for a check: a process that never
    # loaded it (``bookstore run``'s threaded client) cannot have raised one of its errors.
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientError):
        return S3Unavailable(f"{what}: S3 is unreachable: {exc}", code="Unreachable")
    return S3Error(f"{what}: {type(exc).__name__}: {exc}")


def _read_part(f: BinaryIO, size: int, digest: Any, signed: bool) -> tuple[HashedBody, str]:
    """Read up to ``size`` bytes, add them to ``digest``; the body and its base64 MD5.

    In a worker thread. With ``signed`` (plain HTTP: botocore signs the payload) the body
    carries its SHA-256 too, so that signing it hashes nothing on the event loop
    (:mod:`.signing`); over HTTPS the Content-MD5 stands in for it.
    """
    data = f.read(size)
    digest.update(data)
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode("ascii")
    return HashedBody(data, hashlib.sha256(data).hexdigest() if signed else None), md5


def _check_body(f: BinaryIO, size: int, read: int, digest: Any, sha256: str, key: str) -> None:
    """``ValueError`` unless exactly ``size`` bytes with the expected SHA-256 were read."""
    if read != size or f.read(1) or digest.hexdigest() != sha256:
        raise ValueError(
            f"the bytes to upload to {key} are damaged (size or sha256 do not match what was saved)"
        )


def _read_whole(
    open_body: Callable[[], BinaryIO], size: int, sha256: str, key: str, signed: bool
) -> tuple[HashedBody, str]:
    """A single PUT's body, opened, read and checked (blocking); with its base64 MD5."""
    with open_body() as f:
        data = f.read(size)
        _check_body(f, size, len(data), hashlib.sha256(data), sha256, key)
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode("ascii")
    # Checked: the body's SHA-256 is ``sha256``, what signing it needs (plain HTTP).
    return HashedBody(data, sha256 if signed else None), md5


def _flush_and_sync(f: Any) -> None:
    f.flush()
    os.fsync(f.fileno())


_ENCODED_WORD_PREFIX = "=?UTF-8?B?"
_ENCODED_WORD_SUFFIX = "?="
_SAFE = "/:@-_.+~ "


def encode_metadata_value(value: str) -> str:
    """S3 metadata must be ASCII: the shorter of percent-encoding and an RFC 2047 word.

    Percent-encoding (what bookstore always wrote) keeps ASCII paths readable, but costs 9
    characters per CJK character; ``=?UTF-8?B?<base64>?=`` costs 4. Percent-encoding never
    produces ``=?``, so :func:`decode_metadata_value` tells the two apart.
    """
    percent = quote(value, safe=_SAFE)
    if percent == value:
        return value
    raw = value.encode("utf-8", "surrogatepass")
    word = _ENCODED_WORD_PREFIX + base64.b64encode(raw).decode("ascii") + _ENCODED_WORD_SUFFIX
    return word if len(word) < len(percent) else percent


def decode_metadata_value(value: str) -> str:
    if value.startswith(_ENCODED_WORD_PREFIX) and value.endswith(_ENCODED_WORD_SUFFIX):
        inner = value[len(_ENCODED_WORD_PREFIX) : -len(_ENCODED_WORD_SUFFIX)]
        try:
            return base64.b64decode(inner, validate=True).decode("utf-8")
        except ValueError:
            return value
    return unquote(value)


def encode_metadata(meta: Mapping[str, str]) -> dict[str, str]:
    """Encode metadata values for S3 (see :func:`encode_metadata_value`)."""
    return {k: encode_metadata_value(str(v)) for k, v in meta.items()}


def decode_metadata(meta: Mapping[str, str] | None) -> dict[str, str]:
    return {k.lower(): decode_metadata_value(v) for k, v in (meta or {}).items()}


def metadata_bytes(encoded: Mapping[str, str]) -> int:
    """Size of user metadata the way S3 counts it: UTF-8 bytes of every key and value."""
    return sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in encoded.items())


#: Metadata values that may be shortened to fit: the path is also in the key itself.
_SHORTENABLE = (META_PATH, META_RENAMED_FROM)


def fit_metadata(meta: Mapping[str, str]) -> dict[str, str]:
    """``meta`` made to fit S3's 2 KB once encoded, or :class:`S3BadRequest` if it cannot.

    Long paths (``jupyter-path``, ``renamed-from``) are cut to fit and end with
    ``…#<first 16 hex digits of the full value's sha256>``; the full path of a version is
    its key. Nothing else is ever shortened.
    """
    out = {str(k): str(v) for k, v in meta.items()}
    for name in _SHORTENABLE:
        excess = metadata_bytes(encode_metadata(out)) - MAX_METADATA_BYTES
        if excess <= 0:
            return out
        value = out.get(name)
        if not value:
            continue
        out[name] = _shorten(value, len(encode_metadata_value(value)) - excess)
    size = metadata_bytes(encode_metadata(out))
    if size > MAX_METADATA_BYTES:
        raise S3BadRequest(
            f"the S3 metadata would be {size} bytes, over S3's limit of {MAX_METADATA_BYTES}",
            code="MetadataTooLarge",
        )
    return out


def _shorten(value: str, budget: int) -> str:
    """The longest prefix of ``value`` + ``…#hash`` whose encoding fits ``budget`` chars."""
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    suffix = "…#" + digest
    lo, hi = 0, len(value)
    while lo < hi:  # binary search on the prefix length
        mid = (lo + hi + 1) // 2
        if len(encode_metadata_value(value[:mid] + suffix)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return value[:lo] + suffix


def check_upload(key: str, size: int, metadata: Mapping[str, str]) -> dict[str, str]:
    """What S3 would refuse in a PUT, checked before sending it: raise :class:`S3BadRequest`.

    Returns the metadata to send (long paths shortened, see :func:`fit_metadata`).
    """
    key_bytes = len(key.encode("utf-8", "surrogatepass"))
    if key_bytes > MAX_KEY_BYTES:
        raise S3BadRequest(
            f"the S3 key is {key_bytes} bytes long, over S3's limit of {MAX_KEY_BYTES}: "
            f"use a shorter file name or folder path",
            code="KeyTooLongError",
        )
    if size > MAX_PUT_BYTES:
        raise S3BadRequest(
            f"the file is {size} bytes, over S3's limit of {MAX_PUT_BYTES} for one upload",
            code="EntityTooLarge",
        )
    return fit_metadata(metadata)


@dataclass
class PutResult:
    bucket: str
    key: str
    version_id: str | None
    etag: str | None = None


@dataclass
class ObjectVersion:
    key: str
    version_id: str
    last_modified: datetime
    size: int
    is_latest: bool
    etag: str | None = None


@dataclass
class VersionPage:
    versions: list[ObjectVersion]
    next_token: str | None


@dataclass
class GetResult:
    body: bytes
    version_id: str | None
    last_modified: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


@dataclass
class ObjectInfo:
    """What :meth:`S3Store.download_to_temp` learned about the object it wrote to disk."""

    size: int
    version_id: str | None
    last_modified: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


@dataclass
class DeleteResult:
    """What one DeleteObjects request did: versions deleted and versions refused."""

    deleted: list[tuple[str, str]] = field(default_factory=list)
    #: ``(key, version_id, code, message)`` for each version S3 refused to delete.
    errors: list[tuple[str, str, str, str]] = field(default_factory=list)


@dataclass
class _CachedListing:
    latest: str
    page: VersionPage
    at: float


_loaders: dict[str | None, Any] = {}
_loaders_lock = threading.Lock()


def botocore_loader(data_path: str | None = None) -> Any:
    """botocore's data loader for ``data_path`` (``AWS_DATA_PATH``), one per process.

    A botocore session parses S3's service model and endpoint rules (about 1 MB of JSON) into a
    loader of its own: 0.2 s of CPU for every session. Sessions that share this loader parse
    them once per process, whatever the number of clients (the command line, a test run's
    servers and clients).
    """
    with _loaders_lock:
        loader = _loaders.get(data_path)
        if loader is None:
            from botocore.loaders import create_loader

            loader = _loaders[data_path] = create_loader(data_path)
        return loader


def share_loader(session: Any) -> Any:
    """``session`` (botocore's or aiobotocore's), reading through :func:`botocore_loader`."""
    session.register_component(
        "data_loader", botocore_loader(session.get_config_variable("data_path"))
    )
    return session


def new_session() -> AioSession:
    """An aiobotocore session on the process's shared :func:`botocore_loader`."""
    from aiobotocore.session import get_session

    return share_loader(get_session())


def _load_s3_model(loader: Any) -> None:
    """Parse what creating an S3 client reads, so that a thread does it, not the event loop.

    Best effort: whatever a botocore release names differently is parsed by the client
    creation itself, as without this step.
    """
    with contextlib.suppress(Exception):
        loader.load_data("sdk-default-configuration")
        loader.load_service_model("s3", "service-2")
        loader.load_service_model("s3", "endpoint-rule-set-1")
        loader.load_data("partitions")
        loader.load_data("_retry")
        loader.load_data("endpoints")


def with_s3_model(session: Any) -> Any:
    """``session`` (botocore's or aiobotocore's) on the shared loader, with S3's model
    parsed into it: blocking, for a worker thread."""
    share_loader(session)
    _load_s3_model(session.get_component("data_loader"))
    return session


class S3Store:
    """Holds the server's single aiobotocore S3 client and makes bookstore's S3 calls.

    The client is opened once, on first use or at extension start, kept in an
    ``AsyncExitStack`` and closed by :meth:`close` when the extension stops.
    """

    def __init__(self, settings: BookstoreSettings, log: Any = None) -> None:
        self.settings = settings
        self.log = log
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._closed = False
        # Metadata of object versions, which never change: (bucket, key, version_id) -> meta.
        self._version_meta: OrderedDict[tuple[str, str, str], dict[str, str]] = OrderedDict()
        # First pages of listings, reused while the key's latest version is the same.
        self._listings: OrderedDict[tuple[str, str, int], _CachedListing] = OrderedDict()
        # Multipart uploads that failed and could not be aborted yet: (bucket, key, id).
        self._unaborted: set[tuple[str, str, str]] = set()

    @property
    def bucket(self) -> str:
        return self.settings.s3_bucket

    def _client_kwargs(self, config_class: type | None = None) -> dict[str, Any]:
        """``create_client`` arguments; ``config_class``: botocore's ``Config`` or (default)
        aiobotocore's ``AioConfig``."""
        if config_class is None:
            from aiobotocore.config import AioConfig

            config_class = AioConfig
        s = self.settings
        kwargs: dict[str, Any] = {"region_name": s.s3_region_name}
        if s.s3_endpoint_url:
            kwargs["endpoint_url"] = s.s3_endpoint_url
        if s.s3_access_key_id:
            kwargs["aws_access_key_id"] = s.s3_access_key_id
        if s.s3_secret_access_key:
            kwargs["aws_secret_access_key"] = s.s3_secret_access_key
        kwargs["config"] = config_class(
            connect_timeout=s.s3_connect_timeout,
            read_timeout=s.s3_read_timeout,
            # The archiver retries on its own schedule; keep botocore's retries short.
            retries={"max_attempts": 2, "mode": "standard"},
            # S3-compatible servers differ in their support of the newer default
            # checksums; only send them when an operation requires them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"} if s.s3_endpoint_url else {},
            max_pool_connections=max(10, s.max_concurrent_uploads * 2),
        )
        return kwargs

    @property
    def _signs_payloads(self) -> bool:
        """Whether botocore signs upload bodies: over plain HTTP (HTTPS has Content-MD5)."""
        return not (self.settings.s3_endpoint_url or "https:").startswith("https:")

    async def client(self) -> Any:
        """The long-lived client, created on first use."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                if self._closed:
                    raise S3Unavailable("the S3 client is closed: the server is stopping")
                stack = contextlib.AsyncExitStack()
                self._client = await self._open_client(stack)
                for op in ("PutObject", "CompleteMultipartUpload"):
                    self._client.meta.events.register(f"needs-retry.s3.{op}", _refuse_blind_resend)
                install_signer(self._client)
                self._stack = stack
        return self._client

    async def _open_client(self, stack: contextlib.AsyncExitStack) -> Any:
        """Create the client (aiobotocore's), closed with ``stack``."""
        # Importing aiobotocore and aiohttp, and parsing S3's model, take a fraction of a
        # second of CPU the first time: in a worker thread, not on the event loop.
        session = await asyncio.to_thread(lambda: with_s3_model(new_session()))
        return await stack.enter_async_context(session.create_client("s3", **self._client_kwargs()))

    async def close(self) -> None:
        """Close the client; later calls raise :class:`S3Unavailable`."""
        async with self._lock:
            self._closed = True
            stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # --- calls ---------------------------------------------------------------------------

    async def put_object(
        self,
        key: str,
        body: bytes | HashedBody,
        metadata: Mapping[str, str] | None = None,
        *,
        bucket: str | None = None,
        content_type: str = NOTEBOOK_CONTENT_TYPE,
        resend: bool = True,
        storage_class: str = "",
        content_md5: str | None = None,
    ) -> PutResult:
        """Store a new version of ``key`` (``content_md5``: base64, checked by S3).

        ``resend=False``: if the connection fails mid-request, raise S3Unavailable rather
        than let botocore send it again (the caller checks whether S3 got it, then retries).
        """
        bucket = bucket or self.bucket
        what = f"uploading s3://{bucket}/{key}"
        try:
            metadata = check_upload(key, len(body), metadata or {})
        except S3BadRequest as e:
            raise S3BadRequest(f"{what}: {e}", code=e.code) from e
        token = _no_resend.set(not resend)
        try:
            client = await self.client()
            extra = {"StorageClass": storage_class} if storage_class else {}
            if content_md5:
                extra["ContentMD5"] = content_md5
            resp = await client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                Metadata=encode_metadata(metadata),
                **extra,
            )
        except Exception as e:
            raise translate_error(e, what) from e
        finally:
            _no_resend.reset(token)
        if resp.get("VersionId"):
            self.remember_version_metadata(bucket, key, resp["VersionId"], metadata)
        return PutResult(bucket, key, resp.get("VersionId"), resp.get("ETag"))

    async def upload_file(
        self,
        key: str,
        open_body: Callable[[], BinaryIO],
        size: int,
        sha256: str,
        metadata: Mapping[str, str] | None = None,
        *,
        bucket: str | None = None,
        content_type: str = "application/x-ipynb+json",
        storage_class: str = "",
    ) -> PutResult:
        """Store a new version of ``key`` from a file, streamed; never re-sent blindly.

        ``open_body`` opens the file at the start of the ``size`` bytes to send (in a
        thread), whose SHA-256 must be ``sha256``. Up to ``multipart_threshold`` bytes go
        in one PUT, more in a multipart upload of parts of that size: at most one part is
        in memory, and each part carries its Content-MD5. Bytes that do not match
        ``sha256`` or ``size`` raise ``ValueError`` before anything is stored. A failed
        multipart upload is aborted, now or before the next upload if S3 is unreachable,
        so no incomplete upload is left behind.
        """
        bucket = bucket or self.bucket
        what = f"uploading s3://{bucket}/{key}"
        try:
            metadata = check_upload(key, size, metadata or {})
        except S3BadRequest as e:
            raise S3BadRequest(f"{what}: {e}", code=e.code) from e
        await self._abort_leftovers()
        part_size = max(int(self.settings.multipart_threshold), -(-size // MAX_PARTS))
        loop = asyncio.get_running_loop()
        if size <= self.settings.multipart_threshold:
            # Open, read, hash and check in one trip to a worker thread.
            data, md5 = await loop.run_in_executor(
                None, _read_whole, open_body, size, sha256, key, self._signs_payloads
            )
            return await self.put_object(
                key,
                data,
                metadata,
                bucket=bucket,
                content_type=content_type,
                resend=False,
                storage_class=storage_class,
                content_md5=md5,
            )
        f = await loop.run_in_executor(None, open_body)
        try:
            return await self._upload_parts(
                bucket, key, f, size, sha256, part_size, metadata, content_type, storage_class
            )
        finally:
            await loop.run_in_executor(None, f.close)

    async def _upload_parts(
        self,
        bucket: str,
        key: str,
        f: BinaryIO,
        size: int,
        sha256: str,
        part_size: int,
        metadata: dict[str, str],
        content_type: str,
        storage_class: str,
    ) -> PutResult:
        what = f"uploading s3://{bucket}/{key} in parts"
        loop = asyncio.get_running_loop()
        extra = {"StorageClass": storage_class} if storage_class else {}
        try:
            client = await self.client()
            created = await client.create_multipart_upload(
                Bucket=bucket,
                Key=key,
                ContentType=content_type,
                Metadata=encode_metadata(metadata),
                **extra,
            )
        except Exception as e:
            raise translate_error(e, what) from e
        upload_id = created["UploadId"]
        try:
            digest = hashlib.sha256()
            parts: list[dict[str, Any]] = []
            sent = 0
            while sent < size:
                want = min(part_size, size - sent)
                data, md5 = await loop.run_in_executor(
                    None, _read_part, f, want, digest, self._signs_payloads
                )
                if len(data) != want:  # cut short: raises
                    _check_body(f, size, sent + len(data), digest, sha256, key)
                number = len(parts) + 1
                try:  # a part sent twice replaces itself: botocore may retry it
                    resp = await client.upload_part(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                        ContentMD5=md5,
                    )
                except Exception as e:
                    raise translate_error(e, f"{what} (part {number})") from e
                del data
                parts.append({"PartNumber": number, "ETag": resp["ETag"]})
                sent += want
            await loop.run_in_executor(None, _check_body, f, size, sent, digest, sha256, key)
            token = _no_resend.set(True)
            try:
                resp = await client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            except Exception as e:
                raise translate_error(e, what) from e
            finally:
                _no_resend.reset(token)
        except BaseException:
            await asyncio.shield(self._abort(bucket, key, upload_id))
            raise
        if resp.get("VersionId"):
            self.remember_version_metadata(bucket, key, resp["VersionId"], metadata)
        return PutResult(bucket, key, resp.get("VersionId"), resp.get("ETag"))

    async def _abort(self, bucket: str, key: str, upload_id: str) -> bool:
        """Abort a multipart upload; if S3 cannot be asked now, remember to do it later."""
        try:
            client = await self.client()
            await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception as e:
            error = translate_error(e, f"aborting the multipart upload of s3://{bucket}/{key}")
            if not isinstance(error, S3NotFound):  # NoSuchUpload: completed or gone
                self._unaborted.add((bucket, key, upload_id))
                if self.log is not None:
                    self.log.debug("bookstore: %s (will retry)", error)
                return False
        self._unaborted.discard((bucket, key, upload_id))
        return True

    async def _abort_leftovers(self) -> None:
        """Abort the failed multipart uploads S3 could not be told about before."""
        for bucket, key, upload_id in list(self._unaborted):
            await self._abort(bucket, key, upload_id)

    def read_limit(self, max_bytes: int | None) -> int:
        """``max_bytes``, or ``BookstoreSettings.max_read_bytes`` when it is None."""
        return int(self.settings.max_read_bytes if max_bytes is None else max_bytes)

    async def get_object(
        self,
        key: str,
        version_id: str | None = None,
        *,
        bucket: str | None = None,
        max_bytes: int | None = None,
    ) -> GetResult:
        """Read an object (or one version of it) into memory.

        Objects over ``max_bytes`` (default ``BookstoreSettings.max_read_bytes``) raise
        :class:`ObjectTooLarge`: the size S3 announces with the answer is checked before
        the body is read, so no second request is needed and nothing big is buffered.
        """
        bucket = bucket or self.bucket
        limit = self.read_limit(max_bytes)
        what = f"reading s3://{bucket}/{key}" + (f" version {version_id}" if version_id else "")
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            client = await self.client()
            resp = await client.get_object(**kwargs)
            async with resp["Body"] as stream:
                size = resp.get("ContentLength")
                if size is not None and int(size) > limit:
                    raise too_large(what, int(size), limit)
                if size is not None:
                    body = await stream.read()
                else:  # no length (allowed, never seen from S3): stop once past the limit
                    parts: list[bytes] = []
                    seen = 0
                    while chunk := await stream.read(DOWNLOAD_CHUNK):
                        seen += len(chunk)
                        if seen > limit:
                            raise too_large(what, None, limit)
                        parts.append(chunk)
                    body = b"".join(parts)
        except Exception as e:
            raise translate_error(e, what) from e
        return GetResult(
            body=body,
            version_id=resp.get("VersionId"),
            last_modified=resp.get("LastModified"),
            metadata=decode_metadata(resp.get("Metadata")),
            content_type=resp.get("ContentType"),
        )

    async def download_to_temp(
        self,
        key: str,
        directory: str,
        version_id: str | None = None,
        *,
        bucket: str | None = None,
        max_bytes: int | None = None,
        prefix: str = ".bookstore-",
    ) -> tuple[str, ObjectInfo]:
        """Stream an object into a new hidden temporary file in ``directory``.

        Returns the temporary file's path (the caller moves it into place with
        ``os.replace``, which is atomic because it is in the same directory, or removes
        it) and what S3 said about the object. The body goes to disk
        :data:`DOWNLOAD_CHUNK` bytes at a time, so memory does not grow with the object.
        Over ``max_bytes`` (default ``max_read_bytes``): :class:`ObjectTooLarge`, checked
        before anything is written; on any failure the temporary file is removed.
        """
        from anyio.to_thread import run_sync

        bucket = bucket or self.bucket
        limit = self.read_limit(max_bytes)
        what = f"reading s3://{bucket}/{key}" + (f" version {version_id}" if version_id else "")
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            kwargs["VersionId"] = version_id
        tmp: str | None = None
        f: Any = None
        try:
            client = await self.client()
            resp = await client.get_object(**kwargs)
            async with resp["Body"] as stream:
                size = resp.get("ContentLength")
                if size is not None and int(size) > limit:
                    raise too_large(what, int(size), limit)
                fd, tmp = await run_sync(
                    lambda: tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".part")
                )
                f = os.fdopen(fd, "wb")
                written = 0
                while True:
                    chunk = await stream.read(DOWNLOAD_CHUNK)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > limit:
                        raise too_large(what, None, limit)
                    await run_sync(f.write, chunk)
                await run_sync(_flush_and_sync, f)
        except BaseException as e:
            if f is not None:
                f.close()
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            if isinstance(e, Exception):
                raise translate_error(e, what) from e
            raise
        f.close()
        assert tmp is not None  # written above, or an exception was raised
        info = ObjectInfo(
            size=written,
            version_id=resp.get("VersionId"),
            last_modified=resp.get("LastModified"),
            metadata=decode_metadata(resp.get("Metadata")),
            content_type=resp.get("ContentType"),
        )
        return tmp, info

    async def head_object(
        self, key: str, version_id: str | None = None, *, bucket: str | None = None
    ) -> dict[str, Any]:
        bucket = bucket or self.bucket
        what = f"reading s3://{bucket}/{key}" + (f" version {version_id}" if version_id else "")
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            client = await self.client()
            resp: dict[str, Any] = await client.head_object(**kwargs)
        except Exception as e:
            raise translate_error(e, what) from e
        resp["Metadata"] = decode_metadata(resp.get("Metadata"))
        return resp

    async def list_versions(
        self,
        key: str,
        *,
        limit: int = 1000,
        page_token: str | None = None,
        bucket: str | None = None,
    ) -> VersionPage:
        """Versions of exactly ``key``, newest first, one page of at most ``limit``.

        ``page_token`` is the opaque ``next_token`` of the previous page.
        """
        bucket = bucket or self.bucket
        what = f"listing versions of s3://{bucket}/{key}"
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": key, "MaxKeys": min(limit, 1000)}
        if page_token:
            key_marker, version_marker = split_store_token(page_token)
            kwargs["KeyMarker"] = key_marker
            if version_marker:
                kwargs["VersionIdMarker"] = version_marker
        versions: list[ObjectVersion] = []
        try:
            client = await self.client()
            while True:
                resp = await client.list_object_versions(**kwargs)
                for v in resp.get("Versions", []):
                    if v["Key"] != key:
                        continue
                    versions.append(
                        ObjectVersion(
                            key=v["Key"],
                            version_id=v["VersionId"],
                            last_modified=v["LastModified"],
                            size=int(v.get("Size", 0)),
                            is_latest=bool(v.get("IsLatest")),
                            etag=v.get("ETag"),
                        )
                    )
                truncated = resp.get("IsTruncated")
                next_key = resp.get("NextKeyMarker")
                next_version = resp.get("NextVersionIdMarker")
                # Keys sharing our prefix but longer ("a.ipynb.bak") sort after ours:
                # once the listing moves past our key there is nothing more for us.
                if not truncated or (next_key is not None and next_key != key):
                    next_token = None
                    break
                if len(versions) >= limit:
                    next_token = store_token(next_key, next_version)
                    break
                kwargs["KeyMarker"] = next_key
                if next_version:
                    kwargs["VersionIdMarker"] = next_version
        except Exception as e:
            raise translate_error(e, what) from e
        # S3 lists newest first; some compatible servers don't guarantee it.
        versions.sort(key=lambda v: (v.is_latest, v.last_modified), reverse=True)
        return VersionPage(versions[:limit], next_token)

    async def copy_object(
        self,
        src_key: str,
        dst_key: str,
        *,
        src_version_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PutResult:
        what = f"copying s3://{self.bucket}/{src_key} to {dst_key}"
        source: dict[str, str] = {"Bucket": self.bucket, "Key": src_key}
        if src_version_id:
            source["VersionId"] = src_version_id
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": dst_key, "CopySource": source}
        if metadata is not None:
            try:
                kwargs["Metadata"] = encode_metadata(fit_metadata(metadata))
            except S3BadRequest as e:
                raise S3BadRequest(f"{what}: {e}", code=e.code) from e
            kwargs["MetadataDirective"] = "REPLACE"
        try:
            client = await self.client()
            resp = await client.copy_object(**kwargs)
        except Exception as e:
            raise translate_error(e, what) from e
        return PutResult(self.bucket, dst_key, resp.get("VersionId"))

    async def bucket_versioning(self, bucket: str | None = None) -> str | None:
        """The bucket's versioning status: 'Enabled', 'Suspended' or None (never enabled)."""
        bucket = bucket or self.bucket
        try:
            client = await self.client()
            resp = await client.get_bucket_versioning(Bucket=bucket)
        except Exception as e:
            raise translate_error(e, f"reading versioning of bucket {bucket}") from e
        status = resp.get("Status")
        return str(status) if status else None

    async def check_bucket(self, bucket: str | None = None) -> None:
        """Raise an :class:`S3Error` if the bucket is unreachable, missing or refused."""
        bucket = bucket or self.bucket
        try:
            client = await self.client()
            await client.head_bucket(Bucket=bucket)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchBucket", "NotFound"}:
                raise S3Refused(f"bucket {bucket!r} does not exist", code="NoSuchBucket") from e
            raise translate_error(e, f"checking bucket {bucket}") from e
        except Exception as e:
            raise translate_error(e, f"checking bucket {bucket}") from e

    # --- version metadata (immutable, cached) ---------------------------------------------

    def remember_version_metadata(
        self, bucket: str, key: str, version_id: str, metadata: Mapping[str, str]
    ) -> None:
        """Cache the metadata of one object version (versions never change, so never stale)."""
        cache = self._version_meta
        cache[(bucket, key, version_id)] = {str(k).lower(): str(v) for k, v in metadata.items()}
        cache.move_to_end((bucket, key, version_id))
        while len(cache) > VERSION_METADATA_CACHE_SIZE:
            cache.popitem(last=False)

    def cached_version_metadata(
        self, key: str, version_id: str, *, bucket: str | None = None
    ) -> dict[str, str] | None:
        """The cached metadata of a version, or None when it has not been seen yet."""
        return self._version_meta.get((bucket or self.bucket, key, version_id))

    async def version_metadata(
        self,
        key: str,
        version_ids: Iterable[str],
        *,
        bucket: str | None = None,
        concurrency: int = VERSION_METADATA_CONCURRENCY,
        on_fetched: Callable[[int], None] | None = None,
    ) -> dict[str, dict[str, str]]:
        """The user metadata of several versions of ``key``, by version id.

        Listing versions does not return metadata, so each version not seen before costs a
        HEAD request; they run ``concurrency`` at a time and their answers are cached (so
        are the versions this store uploaded). A version deleted meanwhile maps to ``{}``.
        ``on_fetched(n)`` is called after each HEAD, for progress bars.
        """
        bucket = bucket or self.bucket
        result: dict[str, dict[str, str]] = {}
        missing: list[str] = []
        for vid in version_ids:
            cached = self._version_meta.get((bucket, key, vid))
            if cached is not None:
                self._version_meta.move_to_end((bucket, key, vid))
                result[vid] = cached
            elif vid not in result:
                missing.append(vid)
        if not missing:
            return result
        semaphore = asyncio.Semaphore(max(1, concurrency))

        async def fetch(vid: str) -> None:
            async with semaphore:
                try:
                    head = await self.head_object(key, vid, bucket=bucket)
                except S3NotFound:
                    result[vid] = {}
                else:
                    meta = head.get("Metadata") or {}
                    self.remember_version_metadata(bucket, key, vid, meta)
                    result[vid] = dict(meta)
            if on_fetched is not None:
                on_fetched(1)

        await gather_or_cancel(fetch(vid) for vid in missing)
        return result

    async def list_versions_cached(
        self,
        key: str,
        *,
        limit: int = 1000,
        bucket: str | None = None,
        max_age: float = LISTING_CACHE_TTL,
    ) -> VersionPage:
        """The first page of :meth:`list_versions`, reusing the last answer where it holds.

        A new version of a key always becomes its latest one. So a HEAD of the key tells
        whether versions were added since the cached page: if not, the page is reused (one
        small request instead of a listing; 1,000 versions are ~400 KB of XML); if so, a
        short listing of the newest versions is put in front of the cached page. Versions
        deleted behind our back show up again for at most ``max_age`` seconds.
        """
        bucket = bucket or self.bucket
        cache_key = (bucket, key, limit)
        cached = self._listings.get(cache_key)
        page: VersionPage | None = None
        if cached is not None and time.monotonic() - cached.at < max_age:
            try:
                latest = (await self.head_object(key, bucket=bucket)).get("VersionId")
            except S3NotFound:  # deleted: a delete marker is the latest
                latest = None
            if latest is not None and latest == cached.latest:
                self._listings.move_to_end(cache_key)
                return VersionPage(list(cached.page.versions), cached.page.next_token)
            if latest is not None:
                page = await self._prepend_new_versions(key, bucket, limit, cached)
        if page is None:
            page = await self.list_versions(key, limit=limit, bucket=bucket)
            stamp = time.monotonic()
        else:
            stamp = cached.at if cached is not None else time.monotonic()
        newest = page.versions[0] if page.versions else None
        if newest is not None and newest.is_latest:
            self._listings[cache_key] = _CachedListing(newest.version_id, page, stamp)
            self._listings.move_to_end(cache_key)
            while len(self._listings) > LISTING_CACHE_SIZE:
                self._listings.popitem(last=False)
        else:
            self._listings.pop(cache_key, None)
        return VersionPage(list(page.versions), page.next_token)

    async def _prepend_new_versions(
        self, key: str, bucket: str, limit: int, cached: _CachedListing
    ) -> VersionPage | None:
        """The cached page with the versions added since in front; None if too many were."""
        recent = await self.list_versions(key, limit=min(limit, LISTING_INCREMENT), bucket=bucket)
        ids = [v.version_id for v in recent.versions]
        if cached.latest not in ids:
            return None
        added = recent.versions[: ids.index(cached.latest)]
        older = [replace(v, is_latest=False) for v in cached.page.versions]
        merged = added + older
        if len(merged) > limit:
            merged = merged[:limit]
            return VersionPage(merged, f"{key}\n{merged[-1].version_id}")
        return VersionPage(merged, cached.page.next_token)

    # --- whole-prefix listing, deletes and pins (retention) -------------------------------

    async def iter_prefix_versions(
        self, prefix: str, *, bucket: str | None = None, page_size: int = 1000
    ) -> AsyncIterator[ObjectVersion]:
        """Every object version under ``prefix``, streamed one listing page at a time.

        Keys come in S3's order (lexical), each key's versions newest first. Delete
        markers are skipped. Only one page is held in memory, whatever the prefix holds.
        """
        bucket = bucket or self.bucket
        what = f"listing versions under s3://{bucket}/{prefix}"
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
        while True:
            try:
                client = await self.client()
                resp = await client.list_object_versions(**kwargs)
            except Exception as e:
                raise translate_error(e, what) from e
            for v in resp.get("Versions", []):
                yield ObjectVersion(
                    key=v["Key"],
                    version_id=v["VersionId"],
                    last_modified=v["LastModified"],
                    size=int(v.get("Size", 0)),
                    is_latest=bool(v.get("IsLatest")),
                    etag=v.get("ETag"),
                )
            if not resp.get("IsTruncated"):
                return
            kwargs["KeyMarker"] = resp.get("NextKeyMarker", "")
            if resp.get("NextVersionIdMarker"):
                kwargs["VersionIdMarker"] = resp["NextVersionIdMarker"]
            else:
                kwargs.pop("VersionIdMarker", None)

    async def delete_versions(
        self, versions: Iterable[tuple[str, str]], *, bucket: str | None = None
    ) -> DeleteResult:
        """Delete object versions ``(key, version_id)`` with one DeleteObjects request.

        At most :data:`DELETE_BATCH_SIZE` per call. Deleting a version that is already
        gone succeeds, so a request can be repeated safely. Versions S3 refuses (Object
        Lock, a bucket policy) come back in ``errors``; the request itself failing raises.
        """
        bucket = bucket or self.bucket
        objects = [{"Key": k, "VersionId": vid} for k, vid in versions]
        if len(objects) > DELETE_BATCH_SIZE:
            raise ValueError(f"at most {DELETE_BATCH_SIZE} versions per DeleteObjects request")
        result = DeleteResult()
        if not objects:
            return result
        what = f"deleting {len(objects)} version(s) from s3://{bucket}"
        try:
            client = await self.client()
            resp = await client.delete_objects(
                Bucket=bucket, Delete={"Objects": objects, "Quiet": False}
            )
        except Exception as e:
            raise translate_error(e, what) from e
        for d in resp.get("Deleted", []):
            result.deleted.append((d["Key"], d.get("VersionId", "")))
            self._version_meta.pop((bucket, d["Key"], d.get("VersionId", "")), None)
        for err in resp.get("Errors", []):
            result.errors.append(
                (
                    err.get("Key", ""),
                    err.get("VersionId", ""),
                    str(err.get("Code", "")),
                    str(err.get("Message", "")),
                )
            )
        # Listings cached for these keys may show deleted versions: drop them.
        keys = {k for k, _ in result.deleted}
        for cache_key in [c for c in self._listings if c[0] == bucket and c[1] in keys]:
            self._listings.pop(cache_key, None)
        return result

    async def _tags(self, key: str, version_id: str, bucket: str) -> list[dict[str, str]]:
        what = f"reading the tags of s3://{bucket}/{key} version {version_id}"
        try:
            client = await self.client()
            resp = await client.get_object_tagging(Bucket=bucket, Key=key, VersionId=version_id)
        except Exception as e:
            raise translate_error(e, what) from e
        return list(resp.get("TagSet", []))

    async def is_pinned(self, key: str, version_id: str, *, bucket: str | None = None) -> bool:
        """Whether the version carries the pin tag: always asks S3 (the tag is the truth)."""
        bucket = bucket or self.bucket
        tags = await self._tags(key, version_id, bucket)
        return any(t.get("Key") == PIN_TAG for t in tags)

    async def set_pinned(
        self, key: str, version_id: str, pinned: bool, *, bucket: str | None = None
    ) -> bool:
        """Add or remove the pin tag (keeping the version's other tags) and its pin index
        marker; True if the tag changed.

        Pinning writes the tag, then the marker; unpinning removes the marker, then the
        tag. Each then reads back the other half, so that a pin and an unpin of the same
        version racing each other never leave a marker without its tag (a listing showing
        a pin that prune would not honour).
        """
        bucket = bucket or self.bucket
        tags = await self._tags(key, version_id, bucket)
        others = [t for t in tags if t.get("Key") != PIN_TAG]
        was = len(others) != len(tags)
        marker = pin_marker_key(key, version_id)
        if pinned:
            if not was:
                await self._put_tags(key, version_id, bucket, [*others, _PIN_TAG_VALUE])
            await self.index_pin(key, version_id, bucket=bucket)
            if not await self.is_pinned(key, version_id, bucket=bucket):
                await self._drop_pin_marker(bucket, marker)
                raise S3Error(
                    f"pinning s3://{bucket}/{key} version {version_id}: another client unpinned "
                    "it at the same time; it is not pinned (pin it again)",
                    code="PinConflict",
                )
        else:
            await self._drop_pin_marker(bucket, marker)
            if was:
                await self._put_tags(key, version_id, bucket, others)
            if await self._pin_marker_exists(bucket, marker):
                await self._drop_pin_marker(bucket, marker)  # a concurrent pin's, now untagged
        return was != pinned

    async def _put_tags(
        self, key: str, version_id: str, bucket: str, tags: list[dict[str, str]]
    ) -> None:
        what = f"changing the tags of s3://{bucket}/{key} version {version_id}"
        try:
            client = await self.client()
            if tags:
                await client.put_object_tagging(
                    Bucket=bucket, Key=key, VersionId=version_id, Tagging={"TagSet": tags}
                )
            else:
                await client.delete_object_tagging(Bucket=bucket, Key=key, VersionId=version_id)
        except Exception as e:
            raise translate_error(e, what) from e

    async def index_pin(self, key: str, version_id: str, *, bucket: str | None = None) -> bool:
        """Write the pin index marker of a version (not its tag); True if it was missing.

        Created only if absent (``If-None-Match: *``), so repeating it adds no object
        version to the versioned bucket.
        """
        bucket = bucket or self.bucket
        marker = pin_marker_key(key, version_id)
        body = json.dumps({"key": key, "version_id": version_id}).encode()
        what = f"writing the pin index marker s3://{bucket}/{marker}"
        try:
            client = await self.client()
            await client.put_object(
                Bucket=bucket,
                Key=marker,
                Body=body,
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in {"PreconditionFailed", "412"}:
                return False
            raise translate_error(e, what) from e
        except Exception as e:
            raise translate_error(e, what) from e
        return True

    async def unindex_pin(self, key: str, version_id: str, *, bucket: str | None = None) -> None:
        """Remove the pin index marker of a version (not its tag)."""
        bucket = bucket or self.bucket
        await self._drop_pin_marker(bucket, pin_marker_key(key, version_id))

    async def _pin_marker_exists(self, bucket: str, marker: str) -> bool:
        try:
            await self.head_object(marker, bucket=bucket)
        except S3NotFound:
            return False
        return True

    async def _drop_pin_marker(self, bucket: str, marker: str) -> None:
        """Delete every version of a marker (and its delete markers), leaving nothing."""
        what = f"removing the pin index marker s3://{bucket}/{marker}"
        try:
            client = await self.client()
            resp = await client.list_object_versions(Bucket=bucket, Prefix=marker, MaxKeys=100)
            objects = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in [*resp.get("Versions", []), *resp.get("DeleteMarkers", [])]
                if v.get("Key") == marker
            ]
            if objects:
                answer = await client.delete_objects(
                    Bucket=bucket, Delete={"Objects": objects, "Quiet": True}
                )
                if answer.get("Errors"):
                    err = answer["Errors"][0]
                    raise S3Refused(
                        f"{what}: S3 refused: {err.get('Code')} {err.get('Message', '')}",
                        code=str(err.get("Code", "")),
                    )
        except S3Error:
            raise
        except Exception as e:
            raise translate_error(e, what) from e

    async def pin_index(self, key: str, *, bucket: str | None = None) -> set[str]:
        """The version ids the pin index lists for ``key``: one LIST request per 1,000 pins.

        The index is what listings show; prune never relies on it (it reads the tag).
        """
        bucket = bucket or self.bucket
        prefix = pin_index_prefix(key)
        what = f"reading the pin index of s3://{bucket}/{key}"
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/"}
        found: set[str] = set()
        try:
            client = await self.client()
            for _ in range(MAX_PIN_INDEX_PAGES):
                resp = await client.list_objects_v2(**kwargs)
                for obj in resp.get("Contents", []):
                    found.add(unquote(obj["Key"][len(prefix) :]))
                if not resp.get("IsTruncated") or not resp.get("NextContinuationToken"):
                    break
                kwargs["ContinuationToken"] = resp["NextContinuationToken"]
        except Exception as e:
            raise translate_error(e, what) from e
        return found

    async def pinned_versions(
        self, key: str, version_ids: Iterable[str], *, bucket: str | None = None
    ) -> set[str]:
        """Which of these versions the pin index lists, for listings: one request for a
        whole page of versions (not one per version)."""
        wanted = set(version_ids)
        if not wanted:
            return set()
        return wanted & await self.pin_index(key, bucket=bucket)
