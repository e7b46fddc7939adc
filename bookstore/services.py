"""What the doors into bookstore share: the REST API, the pages, the CLI and the client.

Each operation is one function here, called by every door, so they cannot drift:

* :func:`publish_notebook`: check a notebook given as JSON, serialise it as the archive
  does, store it under the published prefix (``PUT /api/bookstore/publish``, ``bookstore
  publish``; the client calls the API);
* :func:`clone_target`: where a clone lands: the path asked for or, when a file is
  already there and ``overwrite`` is not given, the first free name ``name-1.ipynb``,
  ``name-2.ipynb``... (``POST /api/bookstore/clone``, the clone pages, ``bookstore clone``,
  ``BookstoreClient.clone``). A folder in the way is a conflict (409);
* :func:`restore_version`: write a version of a file back over it (``POST
  /api/bookstore/versions/<path>``, the history page's restore form, ``bookstore restore``;
  "Revert to checkpoint" saves through :func:`restore_model` too). The doors differ only in
  where the version is written, a :class:`RestoreTarget`: :class:`ContentsRestore` (the
  server: a normal, archived save through the contents manager) or the CLI's local folder;
* :func:`prepare_run` and :func:`start_run`: check and resolve what a run executes (the
  published version, its kernel), then start it (``POST /api/bookstore/runs/<path>``, the
  history page's "Run this version", the labextension's Run command; ``bookstore run``
  prepares through :func:`prepare_run` before it executes). A refusal is a
  :class:`bookstore.runs.RunError`: the API answers its ``status``, the CLI exits with its
  ``exit_code``, and both print the same message.

Nothing here knows about HTTP: failures are :class:`bookstore.errors.BookstoreError`.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import posixpath
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from .errors import BookstoreError, Conflict, NotFound
from .metadata import META_RESTORED_FROM
from .notebooks import check_notebook, file_model, is_notebook_path, notebook_bytes, parse_notebook
from .publisher import publish_bytes
from .runs import (
    PreparedRun,
    RunS3Unavailable,
    RunSource,
    RunUsageError,
    check_kernel,
    check_kernel_name,
    check_parameters,
    notebook_kernel,
)
from .s3 import S3BadRequest, S3Error, S3NotFound, S3Unavailable
from .save_context import archive_metadata
from .streaming import discard, download_into_folder, local_os_path, move_into_place
from .threads import in_thread
from .times import isoformat
from .validators import RESTORABLE_PREFIXES, validate_prefix, validate_version_id


async def ensure_async(value: Any) -> Any:
    """``await`` what a contents manager returned, if it is awaitable (sync and async
    managers alike); jupyter_server's own helper would load the server stack in the CLI."""
    if inspect.isawaitable(value):
        return await value
    return value


if TYPE_CHECKING:
    from .history import VersionHistory
    from .runs import RunManager
    from .s3 import S3Store
    from .settings import BookstoreSettings


def _serialise(content: Any, what: str) -> bytes:
    return notebook_bytes(check_notebook(content, what))


async def publish_notebook(
    store: S3Store,
    settings: BookstoreSettings,
    path: str,
    content: Any,
    what: str = "the published notebook",
) -> dict[str, Any]:
    """Validate ``content`` (nbformat 4 JSON), serialise it and store it at
    ``<published prefix>/<path>``; the publish API's answer (``s3_path``, ``versionID``...).

    ``path`` must be clean (:func:`bookstore.settings.clean_api_path`) and a notebook's.
    Validation runs in a thread (large notebooks take a while).
    """
    data = await in_thread(_serialise, content, what)
    return await publish_bytes(store, settings, path, data)


def free_name(name: str, attempt: int) -> str:
    """``name`` for attempt 0, then ``stem-1.ext``, ``stem-2.ext``... as Jupyter names copies
    (``ContentsManager.increment_filename`` with ``insert="-"``)."""
    if attempt == 0:
        return name
    stem, dot, ext = name.rpartition(".")
    if ext != "ipynb":
        stem, dot, ext = name.partition(".")
    return f"{stem}-{attempt}{dot}{ext}"


async def clone_target(
    target: str,
    *,
    overwrite: bool,
    file_exists: Callable[[str], Awaitable[bool]],
    dir_exists: Callable[[str], Awaitable[bool]],
) -> str:
    """Where a clone asked to land at ``target`` (a Jupyter path) is written.

    ``overwrite`` replaces a file there; otherwise the first free name is used. A folder
    at ``target`` is a :class:`Conflict`. ``file_exists`` and ``dir_exists`` ask the
    destination (the contents manager, or the local folder of the CLI).
    """
    if await dir_exists(target):
        raise Conflict(f"{target!r} is a folder in the Jupyter root")
    if overwrite:
        return target
    parent, name = posixpath.split(target)
    for attempt in itertools.count():
        candidate = posixpath.join(parent, free_name(name, attempt))
        if not await file_exists(candidate) and not await dir_exists(candidate):
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover


# --- restore -------------------------------------------------------------------------------


class RestoreTarget(Protocol):
    """Where :func:`restore_version` writes a version: the door's destination."""

    async def stream(
        self, history: VersionHistory, path: str, version_id: str, prefix: str
    ) -> dict[str, Any] | None:
        """Stream a file other than a notebook from S3 into place and answer the result,
        or None to have the version read into memory and given to :meth:`write`."""

    async def write(
        self, path: str, data: bytes, notebook: dict[str, Any] | None, version_id: str
    ) -> dict[str, Any]:
        """Write ``data`` (``notebook``: its parsed content, for a notebook) at ``path``,
        noted as restored from ``version_id``; the result."""


async def restore_version(
    history: VersionHistory,
    path: str,
    version_id: Any,
    prefix: Any,
    target: RestoreTarget,
    *,
    on_read: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Write version ``version_id`` of ``path`` (under ``prefix``: workspace or published)
    back into the file, through ``target``; ``target``'s result.

    The id and prefix are checked (400), the version read within ``max_read_bytes`` (404
    for a version that does not exist, 413 over the limit) and a notebook parsed as
    Jupyter opens one (422 when it is not one) before anything is written. ``on_read`` is
    called once the version is read (the CLI's progress bar).
    """
    version_id = validate_version_id(version_id)
    prefix = validate_prefix(prefix, RESTORABLE_PREFIXES)
    if not is_notebook_path(path):
        streamed = await target.stream(history, path, version_id, prefix)
        if streamed is not None:
            return streamed
    data = await history.read_bytes(path, version_id, prefix)
    if on_read is not None:
        on_read()
    notebook = None
    if is_notebook_path(path):
        notebook = await in_thread(parse_notebook, data, f"version {version_id} of {path}")
    return await target.write(path, data, notebook, version_id)


async def restore_model(
    contents_mgr: Any, path: str, model: dict[str, Any], *, restored_from: str | None = None
) -> dict[str, Any]:
    """Save ``model`` (from :func:`bookstore.notebooks.file_model`) at ``path``: a normal
    save, archived with ``restored-from`` metadata.

    A notebook keeps the trust its signature earns (as when it is opened), so restoring
    never makes untrusted outputs trusted. Answers the saved model, without content.
    """
    await _need_directory(contents_mgr, path)
    if model["type"] == "notebook":
        contents_mgr.mark_trusted_cells(model["content"], path)
    meta = {META_RESTORED_FROM: restored_from} if restored_from else {}
    with archive_metadata(**meta):
        saved: dict[str, Any] = await ensure_async(contents_mgr.save(model, path))
    return saved


async def _need_directory(contents_mgr: Any, path: str) -> None:
    directory = path.rpartition("/")[0]
    if directory and not await ensure_async(contents_mgr.dir_exists(directory)):
        raise NotFound(f"cannot restore {path}: directory {directory!r} does not exist")


class ContentsRestore:
    """Restore into the Jupyter root through the contents manager (the server's doors).

    A notebook is saved as a normal save (archived, noted ``restored-from``); another file
    streams from S3 to disk and is archived, when the contents manager keeps files on disk
    and archives (``BookstoreContentsArchiver``).
    """

    def __init__(self, contents_manager: Any) -> None:
        self.contents_manager = contents_manager

    async def stream(
        self, history: VersionHistory, path: str, version_id: str, prefix: str
    ) -> dict[str, Any] | None:
        cm = self.contents_manager
        os_path = local_os_path(cm, path)
        if os_path is None or not hasattr(cm, "archive_file"):
            return None
        await _need_directory(cm, path)
        try:
            tmp, _info = await download_into_folder(
                history.store, history.key(path, prefix), os_path, version_id
            )
        except (S3NotFound, S3BadRequest) as e:
            raise NotFound(
                f"version {version_id!r} of {path!r} does not exist under the {prefix} prefix"
            ) from e
        try:
            await move_into_place(tmp, os_path)
        except BaseException:
            await discard(tmp)
            raise
        entry = await cm.archive_file(path, extra={META_RESTORED_FROM: version_id})
        saved = dict(await ensure_async(cm.get(path, content=False)))
        if entry is not None:
            saved["bookstore_save_id"] = entry.save_id
        return saved

    async def write(
        self, path: str, data: bytes, notebook: dict[str, Any] | None, version_id: str
    ) -> dict[str, Any]:
        if notebook is not None:
            model = {"type": "notebook", "format": "json", "content": notebook}
        else:
            model = await in_thread(file_model, path, data)
        return await restore_model(self.contents_manager, path, model, restored_from=version_id)


# --- run -------------------------------------------------------------------------------------


def runnable_path(path: str) -> str:
    """``path`` if it is a notebook's (runs and their listings are of notebooks only), else
    a :class:`bookstore.runs.RunUsageError` (415)."""
    if not is_notebook_path(path):
        raise RunUsageError(f"{path!r} is not a notebook (.ipynb): only notebooks run", status=415)
    return path


def _run_location(
    settings: BookstoreSettings, path: str, origin: str, s3_key: str | None, bucket: str | None
) -> tuple[str, str, str | None, str]:
    """(bucket, key, prefix, how to name it) of what a run reads; 403 when not allowed."""
    if s3_key:
        bucket = bucket or settings.s3_bucket
        allowed = settings.allowed_clone_buckets
        if bucket not in allowed:
            raise RunUsageError(
                f"running from bucket {bucket!r} is not allowed: only "
                f"{', '.join(repr(b) for b in allowed) or 'no bucket'} (s3_bucket and "
                f"c.BookstoreSettings.clone_allowed_buckets)",
                status=403,
            )
        key = s3_key.lstrip("/")
        located: tuple[str, str, str | None, str] = (bucket, key, None, f"s3://{bucket}/{key}")
    else:
        bucket, key = settings.s3_bucket, settings.s3_key(origin, path)
        located = (bucket, key, origin, f"{origin} notebook {path} (s3://{bucket}/{key})")
    reason = settings.unreadable_reason(key, bucket)
    if reason:
        raise RunUsageError(reason, status=403)
    return located


async def prepare_run(
    settings: BookstoreSettings,
    store: S3Store,
    path: str,
    *,
    origin: str = "published",
    version_id: str | None = None,
    s3_key: str | None = None,
    s3_bucket: str | None = None,
    kernel: str | None = None,
    validate: bool = False,
) -> PreparedRun:
    """Check and read what a run of notebook ``path`` executes; writes nothing.

    The newest version under ``origin`` (or ``version_id``; or ``s3_key`` in an allowed
    bucket), which must be a notebook (``validate``: a valid one, else only JSON with
    cells), and the kernel (``kernel``, else the notebook's kernelspec), which must be
    installed. The version id run is always known afterwards. Raises
    :class:`bookstore.runs.RunError` (with its ``status``).
    """
    runnable_path(path)
    if version_id is not None:
        version_id = validate_version_id(version_id)
    bucket, key, prefix, what = _run_location(settings, path, origin, s3_key, s3_bucket)
    try:
        got = await store.get_object(key, version_id, bucket=bucket)
    except (S3NotFound, S3BadRequest) as e:
        if version_id:
            raise RunUsageError(
                f"version {version_id!r} of {what} does not exist: list them with "
                f"`bookstore versions {path} --prefix {origin}` or the history page",
                status=404,
            ) from e
        hint = (
            f": {path!r} has no published version; publish it first (the Publish command, "
            f"or `bookstore publish {path}`)"
            if prefix == "published"
            else ""
        )
        raise RunUsageError(f"there is no {what}{hint}", status=404) from e
    except S3Unavailable as e:
        raise RunS3Unavailable(f"cannot read {what}: {e}") from e
    except S3Error as e:
        raise RunUsageError(f"cannot read {what}: {e}", status=e.status) from e
    source = RunSource(
        bucket=bucket,
        key=key,
        prefix=prefix,
        version_id=got.version_id,
        sha256=hashlib.sha256(got.body).hexdigest(),
        body=got.body,
    )
    where = f"s3://{bucket}/{key}"
    try:
        nb = await in_thread(parse_notebook, got.body, where, validate=validate)
    except BookstoreError as e:
        raise RunUsageError(str(e), status=e.status) from e
    except Exception as e:
        raise RunUsageError(f"{where} is not a notebook: {e}", status=422) from e
    name = notebook_kernel(nb, kernel)
    await in_thread(check_kernel, name)
    return PreparedRun(source, nb, name)


async def start_run(
    manager: RunManager,
    settings: BookstoreSettings,
    store: S3Store,
    path: str,
    *,
    version_id: Any = None,
    parameters: Any = None,
    kernel: Any = None,
) -> dict[str, Any]:
    """Start ``bookstore run`` on a published version of ``path`` in the server (a
    subprocess, pinned to the version resolved now); what the runs API answers (202).

    Checks everything :func:`prepare_run` checks, and the parameters, before starting.
    Raises :class:`bookstore.runs.RunError` (429 when ``max_concurrent_runs`` are running).
    """
    version_id = None if version_id in (None, "") else validate_version_id(version_id)
    parameters = check_parameters(parameters)
    kernel = check_kernel_name(kernel)
    prepared = await prepare_run(
        settings, store, path, version_id=version_id, kernel=kernel, validate=True
    )
    source = prepared.source
    run = await manager.start(path, source.to_json(), parameters, prepared.kernel)
    return {
        "run_id": run.run_id,
        "path": path,
        "status": run.status,
        "source_version_id": source.version_id,
        "kernel": prepared.kernel,
        "parameters": parameters,
        "started": isoformat(run.started),
    }
