"""Runs: execute a pinned notebook version with papermill, archive the output and provenance.

``bookstore run`` (the command line) and ``POST /api/bookstore/runs/<path>`` (which starts
``bookstore run`` as a subprocess) share this module. A run

1. resolves its source (the newest or a pinned version of the published or workspace
   notebook, or any key of an allowed bucket) and records the resolved version id;
2. executes it with papermill, as a library, parameters injected into the cell tagged
   ``parameters``, into a local output file;
3. stamps ``metadata.bookstore.run`` (run id, source, parameters, kernel, times, status,
   error, host, user, versions) into the notebook before papermill's final write, so the
   archived bytes are exactly what papermill wrote;
4. uploads that file as a new version of ``<runs_prefix>/<path>``, retrying with backoff
   while S3 is unreachable (``upload_timeout``); a file that cannot be uploaded is kept.

Exit codes (:data:`EXIT_CODES`) tell schedulers what happened. Failures are raised as

* :class:`RunError` (``.exit_code``)

  * :class:`RunUsageError` (2): bad arguments or configuration; nothing was run or written
  * :class:`RunS3Unavailable` (4): S3 could not be reached to read the source
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import platform
import posixpath
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .codecs import decode_page_token, encode_page_token
from .errors import BookstoreError, Forbidden
from .metadata import (
    META_RUN,
    META_RUN_ID,
    META_RUN_STATUS,
    META_SHA256,
    META_SOURCE_SHA256,
    META_SOURCE_VERSION_ID,
    META_USER,
    object_metadata,
)
from .s3 import (
    S3Error,
    S3NotFound,
    S3Unavailable,
)
from .settings import jupyter_username
from .threads import in_thread
from .times import isoformat
from .validators import MAX_LIMIT

if TYPE_CHECKING:
    import logging

    from .s3 import S3Store
    from .settings import BookstoreSettings

# --- exit codes -------------------------------------------------------------------------------

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 3
EXIT_S3_UNAVAILABLE = 4

#: Exit code -> meaning, as documented in docs/scheduling.md.
EXIT_CODES: dict[int, str] = {
    EXIT_SUCCEEDED: "the notebook ran to the end; its output is archived",
    EXIT_FAILED: "a cell raised; the output up to the error is archived",
    EXIT_USAGE: "usage or configuration error (bad arguments, unknown path or version, bucket "
    "not allowed, bad parameters, missing kernel); nothing was run or written",
    EXIT_CANCELLED: "stopped by SIGTERM, SIGINT or a timeout; the partial output is archived",
    EXIT_S3_UNAVAILABLE: "S3 could not be reached (to read the source, or to archive the output "
    "within --upload-timeout: the output is kept in a local file, printed)",
}

STATUS_SUCCEEDED = "succeeded"
STATUS_FAILED = "failed"
STATUS_CANCELLED = "cancelled"
STATUS_RUNNING = "running"

_STATUS_EXIT = {
    STATUS_SUCCEEDED: EXIT_SUCCEEDED,
    STATUS_FAILED: EXIT_FAILED,
    STATUS_CANCELLED: EXIT_CANCELLED,
}

#: S3 allows 2 KB of user metadata per object; keep well under it once percent-encoded.
MAX_RUN_METADATA = 1400

#: Seconds a cancelled kernel gets to stop after SIGINT before it is killed.
KILL_GRACE = 10.0


class RunError(BookstoreError):
    """A run that could not be made: ``exit_code`` for ``bookstore run``, ``status`` for
    the runs API (400 unless the cause says otherwise: 403, 404, 415, 422, 429, 502, 503)."""

    status = 400
    exit_code = EXIT_USAGE


class RunUsageError(RunError):
    exit_code = EXIT_USAGE


class RunS3Unavailable(RunError):
    status = 503
    exit_code = EXIT_S3_UNAVAILABLE


class RunCancelled(Exception):
    """Raised in the executing thread to stop before the next cell."""


def new_run_id() -> str:
    """``20240501T140322Z-1a2b3c4d``: sortable by start time, unique."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --- parameters -----------------------------------------------------------------------------


def parse_parameter_value(value: str) -> Any:
    """A ``-p NAME VALUE`` value, typed as papermill types it (int, float, bool, None, str)."""
    from papermill.cli import _resolve_type

    return _resolve_type(value)


def load_parameters_file(path: str) -> dict[str, Any]:
    """Parameters from a YAML (or JSON) file holding a mapping; RunUsageError otherwise."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError as e:
        raise RunUsageError(f"parameters file {path} does not exist") from e
    except (OSError, UnicodeDecodeError) as e:
        raise RunUsageError(f"cannot read parameters file {path}: {e}") from e
    except yaml.YAMLError as e:
        raise RunUsageError(f"parameters file {path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise RunUsageError(
            f"parameters file {path} must hold a mapping of parameter names to values, "
            f"e.g. `alpha: 0.5` (got a {type(data).__name__})"
        )
    return data


def check_parameters(parameters: Any) -> dict[str, Any]:
    """Parameters must be a JSON object with identifier names."""
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise RunUsageError(
            f'"parameters" must be an object of names to values (got {type(parameters).__name__})'
        )
    for name in parameters:
        if not isinstance(name, str) or not name.isidentifier():
            raise RunUsageError(f"parameter name {name!r} is not a valid identifier")
    try:
        json.dumps(parameters)
    except (TypeError, ValueError) as e:
        raise RunUsageError(f"parameters must be JSON values: {e}") from e
    return dict(parameters)


# --- kernels ----------------------------------------------------------------------------------


def kernel_names() -> list[str]:
    """Installed kernel names (blocking)."""
    from jupyter_client.kernelspec import KernelSpecManager

    return sorted(KernelSpecManager().find_kernel_specs())


def check_kernel(name: str) -> str:
    """``name`` if that kernel is installed, else RunUsageError naming the ones that are."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel as e:
        raise RunUsageError(
            f"no kernel named {name!r} is installed here (installed: "
            f"{', '.join(kernel_names()) or 'none'}); pass --kernel NAME or install it",
            status=404,
        ) from e
    return name


def notebook_kernel(nb: Any, requested: str | None) -> str:
    """The kernel to use: ``requested``, else the notebook's kernelspec."""
    if requested:
        return requested
    name = (nb.get("metadata", {}).get("kernelspec") or {}).get("name")
    if not name:
        raise RunUsageError(
            "the notebook names no kernel (metadata.kernelspec): pass --kernel NAME",
            status=404,
        )
    return str(name)


# --- what to run ------------------------------------------------------------------------------


@dataclass
class RunSource:
    """The notebook version that is run."""

    bucket: str
    key: str
    prefix: str | None
    version_id: str | None
    sha256: str
    body: bytes = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "prefix": self.prefix,
            "version_id": self.version_id,
            "sha256": self.sha256,
        }


@dataclass
class PreparedRun:
    """What a run executes (:func:`bookstore.services.prepare_run`): the version read, its
    parsed notebook and the kernel to use."""

    source: RunSource
    notebook: Any
    kernel: str


# --- execution --------------------------------------------------------------------------------


class Execution:
    """One papermill execution in a worker thread, cancellable from the event loop."""

    def __init__(self, on_complete: Callable[[Any, BaseException | None], None]) -> None:
        #: Called in the worker thread with (notebook, exception) right before papermill's
        #: final write, to stamp the provenance in.
        self.on_complete = on_complete
        self.cancel_reason: str | None = None
        self.client: Any = None
        self._lock = threading.Lock()

    def cancel(self, reason: str) -> None:
        """Stop after the current cell, interrupting it (SIGINT to the kernel)."""
        with self._lock:
            if self.cancel_reason is None:
                self.cancel_reason = reason
        self._signal_kernel(signal.SIGINT)

    def kill_kernel(self) -> None:
        self._signal_kernel(signal.SIGKILL)

    def _signal_kernel(self, sig: int) -> None:
        km = getattr(self.client, "km", None)
        provisioner = getattr(km, "provisioner", None)
        pid = getattr(provisioner, "pid", None)
        if not pid:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            try:
                os.killpg(os.getpgid(pid), sig)
            except (ProcessLookupError, PermissionError, OSError):
                os.kill(pid, sig)


_ENGINE_NAME = "bookstore"
_engine_lock = threading.Lock()
_engine_registered = False


def _register_engine() -> None:
    """papermill's nbclient engine, plus: cancellation between cells, provenance at the end."""
    global _engine_registered
    with _engine_lock:
        if _engine_registered:
            return
        from papermill.clientwrap import PapermillNotebookClient
        from papermill.engines import NBClientEngine, papermill_engines
        from papermill.utils import merge_kwargs, remove_args

        class BookstoreClient(PapermillNotebookClient):
            execution: Execution | None = None

            def execute_cell(self, *args: Any, **kwargs: Any) -> Any:
                if self.execution is not None and self.execution.cancel_reason:
                    raise RunCancelled(self.execution.cancel_reason)
                return super().execute_cell(*args, **kwargs)

        class BookstoreEngine(NBClientEngine):
            @classmethod
            def execute_managed_notebook(
                cls,
                nb_man: Any,
                kernel_name: str,
                log_output: bool = False,
                stdout_file: Any = None,
                stderr_file: Any = None,
                start_timeout: int = 60,
                execution_timeout: float | None = None,
                **kwargs: Any,
            ) -> Any:
                execution: Execution = kwargs.pop("bookstore_execution")
                kwargs = remove_args(["input_path"], **kwargs)
                safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
                final_kwargs = merge_kwargs(
                    safe_kwargs,
                    timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                    startup_timeout=start_timeout,
                    kernel_name=kernel_name,
                    log_output=log_output,
                    stdout_file=stdout_file,
                    stderr_file=stderr_file,
                )
                client = BookstoreClient(nb_man, **final_kwargs)
                client.execution = execution
                execution.client = client
                error: BaseException | None = None
                try:
                    return client.execute()
                except BaseException as e:
                    error = e
                    raise
                finally:
                    # papermill's notebook_complete() writes the notebook right after this.
                    execution.on_complete(nb_man.nb, error)

        papermill_engines.register(_ENGINE_NAME, BookstoreEngine)
        _engine_registered = True


def _papermill_execute(
    input_path: str,
    output_path: str,
    *,
    execution: Execution,
    parameters: dict[str, Any],
    kernel: str,
    cell_timeout: float | None,
    cwd: str | None,
    progress_bar: bool,
) -> None:
    """Run papermill (blocking; in a worker thread). Raises what papermill raises."""
    import papermill

    _register_engine()
    papermill.execute_notebook(
        input_path.replace("{", "{{").replace("}", "}}"),
        output_path.replace("{", "{{").replace("}", "}}"),
        parameters=parameters or None,
        engine_name=_ENGINE_NAME,
        kernel_name=kernel,
        progress_bar=progress_bar,
        cwd=cwd,
        execution_timeout=cell_timeout,
        bookstore_execution=execution,
    )


def first_error(nb: Any) -> tuple[int, dict[str, Any]] | None:
    """(index in the executed notebook, {ename, evalue}) of the first cell that raised."""
    for index, cell in enumerate(nb.get("cells", [])):
        for output in cell.get("outputs", []) or []:
            if output.get("output_type") == "error":
                if output.get("ename") == "SystemExit" and output.get("evalue") in ("", "0"):
                    continue
                return index, {"ename": output.get("ename"), "evalue": output.get("evalue")}
        if cell.get("metadata", {}).get("papermill", {}).get("exception") is True:
            return index, {"ename": "CellExecutionError", "evalue": ""}
    return None


def source_cell_index(nb: Any, index: int) -> int:
    """The index a cell of the executed notebook had in the source (before injected cells)."""
    injected = 0
    for cell in nb.get("cells", [])[:index]:
        if "injected-parameters" in (cell.get("metadata", {}).get("tags") or []):
            injected += 1
    return index - injected


# --- the run ----------------------------------------------------------------------------------


@dataclass
class RunOptions:
    """Everything ``bookstore run`` was asked to do."""

    path: str
    origin: str = "published"
    version_id: str | None = None
    s3_key: str | None = None
    s3_bucket: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    kernel: str | None = None
    cell_timeout: float | None = None
    timeout: float | None = None
    cwd: str | None = None
    upload_timeout: float = 300.0
    output_dir: str = ""
    run_id: str = ""
    progress_bar: bool = False


@dataclass
class RunResult:
    """What a run ended with: its record, exit code, and the local file if it was kept."""

    record: dict[str, Any]
    exit_code: int
    kept_file: str | None = None
    message: str = ""


def default_output_dir() -> str:
    from jupyter_core.paths import jupyter_data_dir

    return os.path.join(jupyter_data_dir(), "bookstore", "runs")


class Runner:
    """Runs one notebook version (:meth:`run`); :meth:`cancel` stops it, from a signal too."""

    def __init__(
        self,
        settings: BookstoreSettings,
        store: S3Store,
        options: RunOptions,
        log: logging.Logger | Any = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.options = options
        self.log = log
        self.run_id = options.run_id or new_run_id()
        self.execution: Execution | None = None
        self._cancel = asyncio.Event()
        self._cancel_reason: str | None = None
        self.record: dict[str, Any] = {}

    def cancel(self, reason: str) -> None:
        """Cancel the run (safe to call from a signal handler on the loop)."""
        if self._cancel_reason is None:
            self._cancel_reason = reason
        self._cancel.set()

    @property
    def output_key(self) -> str:
        return self.settings.s3_key("runs", self.options.path)

    async def check(self) -> None:
        """What only ``bookstore run`` checks before :func:`bookstore.services.prepare_run`:
        a bucket to archive into, the kernel's working directory. Raises RunError."""
        opts = self.options
        if not self.settings.s3_bucket:
            raise RunUsageError(
                "no S3 bucket configured: pass --bucket=NAME, set c.BookstoreSettings.s3_bucket, "
                "or the JPYNB_S3_BUCKET environment variable"
            )
        if opts.cwd and not await in_thread(os.path.isdir, opts.cwd):
            raise RunUsageError(f"--cwd {opts.cwd} is not a directory")

    def _provenance(
        self,
        source: RunSource,
        kernel: str,
        started: datetime,
        finished: datetime | None,
        status: str,
        error: dict[str, Any] | None,
        reason: str | None,
    ) -> dict[str, Any]:
        import papermill

        return {
            "run_id": self.run_id,
            "status": status,
            "path": self.options.path,
            "source": source.to_json(),
            "parameters": self.options.parameters,
            "kernel": kernel,
            "started": isoformat(started),
            "finished": isoformat(finished),
            "duration": round((finished - started).total_seconds(), 3) if finished else None,
            "error": error,
            "cancel_reason": reason,
            "host": platform.node(),
            "user": jupyter_username(),
            "bookstore_version": __version__,
            "papermill_version": papermill.__version__,
        }

    async def run(self, prepared: PreparedRun) -> RunResult:
        """Execute ``prepared`` (from :func:`bookstore.services.prepare_run`) and archive the
        output; never raises for a notebook's own failure."""
        source, kernel = prepared.source, prepared.kernel
        opts = self.options
        out_dir = opts.output_dir or default_output_dir()
        await in_thread(os.makedirs, out_dir, exist_ok=True)
        out_file = os.path.join(out_dir, f"{self.run_id}.ipynb")
        # papermill reads the source from a file, as when it runs alone: handed a notebook
        # object, it would serialize and re-read (and validate) it, and keep the whole source
        # notebook in the output's metadata.papermill.input_path.
        src_file = os.path.join(out_dir, f"{self.run_id}.source.ipynb")
        await in_thread(_write, src_file, source.body)
        src_url = f"s3://{source.bucket}/{source.key}"
        started = utcnow()
        stamped: dict[str, Any] = {}

        def on_complete(executed: Any, exc: BaseException | None) -> None:
            finished = utcnow()
            status, error, reason = self._outcome(executed, exc)
            prov = self._provenance(source, kernel, started, finished, status, error, reason)
            executed.metadata.setdefault("bookstore", {})["run"] = prov
            # Where the source really is (not the local copy, removed after the run).
            executed.metadata.setdefault("papermill", {})["input_path"] = src_url
            stamped.update(prov)

        execution = self.execution = Execution(on_complete)
        if self._cancel_reason:
            execution.cancel(self._cancel_reason)
        self.record = self._provenance(source, kernel, started, None, STATUS_RUNNING, None, None)
        worker = asyncio.ensure_future(
            asyncio.to_thread(  # not run_sync: cancelling must not wait for the cell
                _papermill_execute,
                src_file,
                out_file,
                execution=execution,
                parameters=opts.parameters,
                kernel=kernel,
                cell_timeout=opts.cell_timeout,
                cwd=opts.cwd,
                progress_bar=opts.progress_bar,
            )
        )
        waiter = asyncio.ensure_future(self._cancel.wait())
        try:
            done, _ = await asyncio.wait(
                {worker, waiter}, timeout=opts.timeout or None, return_when=asyncio.FIRST_COMPLETED
            )
            if worker not in done:
                execution.cancel(self._cancel_reason or f"run timeout ({opts.timeout:g} s)")
                await asyncio.wait({worker}, timeout=KILL_GRACE)
                if not worker.done():  # the kernel ignores SIGINT
                    execution.kill_kernel()
            with contextlib.suppress(Exception):
                await worker
        finally:
            waiter.cancel()
            if worker.done():
                await in_thread(_remove, src_file)
        exc = worker.exception() if worker.done() and not worker.cancelled() else None
        if not stamped or not await in_thread(os.path.exists, out_file):
            # papermill stopped before executing anything (e.g. the kernel did not start).
            raise RunUsageError(f"the notebook could not be executed: {exc}") from exc
        self.record = dict(stamped)
        return await self._archive(out_file, source)

    def _outcome(
        self, executed: Any, exc: BaseException | None
    ) -> tuple[str, dict[str, Any] | None, str | None]:
        """(status, error, cancel reason) of a finished execution."""
        reason = self.execution.cancel_reason if self.execution else None
        found = first_error(executed)
        error = None
        if found is not None:
            index, error = found
            error["cell_index"] = source_cell_index(executed, index)
            error["evalue"] = str(error.get("evalue") or "")[:1000]
        if reason:
            return STATUS_CANCELLED, error, reason
        if exc is not None:
            name = type(exc).__name__
            if name == "CellTimeoutError":
                return STATUS_CANCELLED, error, f"cell timeout ({self.options.cell_timeout:g} s)"
            if error is None:
                error = {"cell_index": None, "ename": name, "evalue": str(exc)[:1000]}
            return STATUS_FAILED, error, None
        if error is not None:
            return STATUS_FAILED, error, None
        return STATUS_SUCCEEDED, None, None

    async def _archive(self, out_file: str, source: RunSource) -> RunResult:
        data = await in_thread(_read, out_file)
        sha = hashlib.sha256(data).hexdigest()
        record = self.record
        record.update(
            sha256=sha,
            size=len(data),
            output_key=self.output_key,
            s3_path=f"s3://{self.settings.s3_bucket}/{self.output_key}",
        )
        metadata = run_metadata(record, sha)
        deadline = time.monotonic() + max(0.0, self.options.upload_timeout)
        try:
            version_id = await upload_with_backoff(
                self.store, self.output_key, data, metadata, self.run_id, deadline, self.log
            )
        except S3Error as e:
            record["output_version_id"] = None
            record["local_file"] = out_file
            return RunResult(
                record,
                EXIT_S3_UNAVAILABLE,
                kept_file=out_file,
                message=(
                    f"run {self.run_id} ended {record['status']} but its output could not be "
                    f"archived to s3://{self.settings.s3_bucket}/{self.output_key} within "
                    f"{self.options.upload_timeout:g} s ({e}); the output is kept in {out_file}"
                ),
            )
        record["output_version_id"] = version_id
        await in_thread(_remove, out_file)
        return RunResult(record, _STATUS_EXIT[record["status"]])


def run_metadata(record: Mapping[str, Any], sha256: str) -> dict[str, str]:
    """The S3 metadata of a run output (under S3's 2 KB limit: parameters dropped if needed)."""
    from urllib.parse import quote

    source = record.get("source") or {}
    meta = object_metadata(
        sha256=sha256,
        saved_at=str(record.get("finished") or ""),
        user=str(record.get("user") or ""),
        path=str(record.get("path") or ""),
        extra={
            META_RUN_ID: str(record["run_id"]),
            META_RUN_STATUS: str(record["status"]),
            META_SOURCE_VERSION_ID: str(source.get("version_id") or ""),
            META_SOURCE_SHA256: str(source.get("sha256") or ""),
        },
    )
    compact: dict[str, Any] = {
        "source": {k: source.get(k) for k in ("bucket", "key", "prefix")},
        "parameters": record.get("parameters") or {},
        "kernel": record.get("kernel"),
        "started": record.get("started"),
        "finished": record.get("finished"),
        "duration": record.get("duration"),
        "error": record.get("error"),
        "cancel_reason": record.get("cancel_reason"),
        "host": record.get("host"),
    }

    def size(value: dict[str, Any]) -> int:
        text = json.dumps(value, separators=(",", ":"))
        return len(quote(text, safe="/:@-_.+~ ")) + sum(
            len(k) + len(v) * 3 for k, v in meta.items()
        )

    if size(compact) > MAX_RUN_METADATA:
        compact["parameters"] = {}
        compact["parameters_truncated"] = True
    if size(compact) > MAX_RUN_METADATA and compact.get("error"):
        compact["error"] = {**compact["error"], "evalue": str(compact["error"]["evalue"])[:100]}
    meta[META_RUN] = json.dumps(compact, separators=(",", ":"))
    return meta


async def find_run_version(store: S3Store, key: str, run_id: str) -> str | None:
    """The version of ``key`` carrying ``run_id``, among its newest ones (after a lost answer)."""
    try:
        page = await store.list_versions(key, limit=50)
    except S3NotFound:
        return None
    ids = [v.version_id for v in page.versions]
    metas = await store.version_metadata(key, ids)
    for vid in ids:
        if metas.get(vid, {}).get(META_RUN_ID) == run_id:
            return vid
    return None


async def upload_with_backoff(
    store: S3Store,
    key: str,
    data: bytes,
    metadata: dict[str, str],
    run_id: str,
    deadline: float,
    log: Any = None,
) -> str | None:
    """Upload once; while S3 is unreachable, retry with backoff until ``deadline``.

    A retry first checks whether an earlier attempt was stored after all (its answer lost),
    so a run is archived once.
    """
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        try:
            if attempt > 1:
                found = await find_run_version(store, key, run_id)
                if found:
                    return found
            result = await store.put_object(key, data, metadata, resend=False)
            return result.version_id
        except S3Unavailable as e:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            if log is not None:
                log.warning("bookstore run: S3 unreachable (%s); retrying in %.1f s", e, delay)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 30.0)


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


# --- listing ----------------------------------------------------------------------------------


def run_from_metadata(
    path: str,
    version_id: str | None,
    last_modified: datetime | None,
    size: int | None,
    meta: Mapping[str, str],
) -> dict[str, Any]:
    """A run record (the REST ``Run``) from an output version's S3 metadata."""
    try:
        extra = json.loads(meta.get(META_RUN) or "{}")
        if not isinstance(extra, dict):
            extra = {}
    except ValueError:
        extra = {}
    source = dict(extra.get("source") or {})
    source["version_id"] = meta.get(META_SOURCE_VERSION_ID) or None
    source["sha256"] = meta.get(META_SOURCE_SHA256) or None
    source.setdefault("bucket", None)
    source.setdefault("key", None)
    source.setdefault("prefix", None)
    run: dict[str, Any] = {
        "run_id": meta.get(META_RUN_ID) or version_id or "",
        "status": meta.get(META_RUN_STATUS) or "unknown",
        "path": path,
        "source": source,
        "source_version_id": source["version_id"],
        "parameters": extra.get("parameters") or {},
        "kernel": extra.get("kernel"),
        "started": extra.get("started"),
        "finished": extra.get("finished") or isoformat(last_modified),
        "duration": extra.get("duration"),
        "output_version_id": version_id,
        "last_modified": isoformat(last_modified),
        "size": size,
        "sha256": meta.get(META_SHA256) or None,
        "user": meta.get(META_USER) or None,
        "host": extra.get("host"),
        "error": extra.get("error"),
        "cancel_reason": extra.get("cancel_reason"),
    }
    if extra.get("parameters_truncated"):
        run["parameters_truncated"] = True
    return run


@dataclass
class RunListing:
    path: str
    bucket: str
    key: str
    runs: list[dict[str, Any]]
    next_token: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "s3_path": f"s3://{self.bucket}/{self.key}",
            "runs": self.runs,
            "next_token": self.next_token,
        }


async def list_runs(
    settings: BookstoreSettings,
    store: S3Store,
    path: str,
    *,
    limit: int = MAX_LIMIT,
    page_token: str | None = None,
    on_fetched: Callable[[int], None] | None = None,
) -> RunListing:
    """One page of the archived runs of ``path``, newest first (none: an empty list)."""
    key = settings.s3_key("runs", path)
    reason = settings.unreadable_reason(key)
    if reason:
        raise Forbidden(reason)
    raw = decode_page_token(page_token, key)
    if raw is None:
        page = await store.list_versions_cached(key, limit=limit)
    else:
        page = await store.list_versions(key, limit=limit, page_token=raw)
    metas: dict[str, dict[str, str]] = {}
    if page.versions:
        metas = await store.version_metadata(
            key, [v.version_id for v in page.versions], on_fetched=on_fetched
        )
    runs = [
        run_from_metadata(path, v.version_id, v.last_modified, v.size, metas.get(v.version_id, {}))
        for v in page.versions
    ]
    return RunListing(path, settings.s3_bucket, key, runs, encode_page_token(page.next_token))


def run_key_path(settings: BookstoreSettings, key: str) -> str:
    """The Jupyter path a key is run as when only ``--s3-key`` is given."""
    for prefix in (settings.published, settings.workspace):
        if key.startswith(prefix + "/"):
            return key[len(prefix) + 1 :]
    return posixpath.normpath(key.lstrip("/"))


# --- runs started from Jupyter ----------------------------------------------------------------

#: Runs this server could not make, kept (in memory) to be listed with their message.
MAX_REMEMBERED_ERRORS = 100
#: The tail of a run subprocess's stderr kept for its error message.
STDERR_TAIL = 8192
#: How long a stopping server waits for its cancelled runs to archive their partial output.
STOP_TIMEOUT = 30.0

_KERNEL_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def check_kernel_name(name: Any) -> str | None:
    if name is None or name == "":
        return None
    if not isinstance(name, str) or not _KERNEL_NAME_RE.match(name):
        raise RunUsageError(f"kernel {name!r} is not a kernel name (letters, digits, ._-)")
    return name


@dataclass
class ActiveRun:
    """A ``bookstore run`` subprocess started by this server."""

    run_id: str
    path: str
    source: dict[str, Any]
    parameters: dict[str, Any]
    kernel: str
    started: datetime
    status: str = STATUS_RUNNING
    message: str | None = None
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "path": self.path,
            "source": self.source,
            "source_version_id": self.source.get("version_id"),
            "parameters": self.parameters,
            "kernel": self.kernel,
            "started": isoformat(self.started),
            "finished": None,
            "duration": None,
            "output_version_id": None,
            "last_modified": None,
            "size": None,
            "sha256": None,
            "user": jupyter_username(),
            "host": platform.node(),
            "error": None,
            "cancel_reason": None,
            "message": self.message,
        }


class TooManyRuns(RunError):
    """``max_concurrent_runs`` runs are executing already."""

    status = 429


class RunManager:
    """The ``bookstore run`` subprocesses of one server: started, watched, cancelled on stop."""

    def __init__(self, settings: BookstoreSettings, root_dir: str, log: Any) -> None:
        self.settings = settings
        self.root_dir = root_dir
        self.log = log
        self.active: dict[str, ActiveRun] = {}
        self.errors: deque[ActiveRun] = deque(maxlen=MAX_REMEMBERED_ERRORS)
        self._stopping = False

    def runs_of(self, path: str) -> list[dict[str, Any]]:
        """Running runs of ``path`` and the ones that could not be made, newest first."""
        mine = [r for r in [*self.active.values(), *self.errors] if r.path == path]
        mine.sort(key=lambda r: r.started, reverse=True)
        return [r.to_json() for r in mine]

    def _argv(self, run: ActiveRun, params_file: str | None, cwd: str) -> list[str]:
        s = self.settings
        argv = [
            sys.executable,
            "-m",
            "bookstore.cli",
            "run",
            run.path,
            f"--version-id={run.source['version_id']}",
            f"--run-id={run.run_id}",
            f"--kernel={run.kernel}",
            f"--cwd={cwd}",
            "--json",
            "--no-progress",
            f"--BookstoreSettings.s3_bucket={s.s3_bucket}",
            f"--BookstoreSettings.s3_region_name={s.s3_region_name}",
            f"--BookstoreSettings.workspace_prefix={s.workspace_prefix}",
            f"--BookstoreSettings.published_prefix={s.published_prefix}",
            f"--BookstoreSettings.runs_prefix={s.runs_prefix}",
            f"--BookstoreSettings.s3_connect_timeout={s.s3_connect_timeout}",
            f"--BookstoreSettings.s3_read_timeout={s.s3_read_timeout}",
        ]
        if s.s3_endpoint_url:
            argv.append(f"--BookstoreSettings.s3_endpoint_url={s.s3_endpoint_url}")
        if params_file:
            argv.append(f"--parameters-file={params_file}")
        return argv

    def _env(self) -> dict[str, str]:
        """The server's environment, plus its credentials (never on the command line)."""
        from .settings import ENV_ACCESS_KEY_ID, ENV_SECRET_ACCESS_KEY

        env = dict(os.environ)
        if self.settings.s3_access_key_id:
            env[ENV_ACCESS_KEY_ID] = self.settings.s3_access_key_id
        if self.settings.s3_secret_access_key:
            env[ENV_SECRET_ACCESS_KEY] = self.settings.s3_secret_access_key
        return env

    def _cwd(self, path: str) -> str:
        folder = os.path.join(self.root_dir, *posixpath.dirname(path).split("/"))
        return folder if os.path.isdir(folder) else self.root_dir

    async def start(
        self, path: str, source: dict[str, Any], parameters: dict[str, Any], kernel: str
    ) -> ActiveRun:
        """Start ``bookstore run`` for a resolved source version; TooManyRuns at the cap."""
        if self._stopping:
            raise TooManyRuns("the server is stopping: no new runs")
        if len(self.active) >= self.settings.max_concurrent_runs:
            raise TooManyRuns(
                f"{len(self.active)} run(s) are executing, the most this server allows "
                f"(c.BookstoreSettings.max_concurrent_runs = {self.settings.max_concurrent_runs})"
                f": retry when one finishes"
            )
        run = ActiveRun(new_run_id(), path, source, parameters, kernel, utcnow())
        self.active[run.run_id] = run  # counted at once, before any await
        try:
            params_file = None
            if parameters:
                params_file = await in_thread(_write_params, parameters)
            cwd = await in_thread(self._cwd, path)
            run.process = await asyncio.create_subprocess_exec(
                *self._argv(run, params_file, cwd),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env(),
                start_new_session=True,  # Ctrl-C on the server's terminal is the server's
            )
        except BaseException:
            self.active.pop(run.run_id, None)
            raise
        run.task = asyncio.ensure_future(self._watch(run, params_file))
        self.log.info(
            "bookstore: started run %s of %s version %s (pid %s)",
            run.run_id,
            path,
            source.get("version_id"),
            run.process.pid,
        )
        return run

    async def _watch(self, run: ActiveRun, params_file: str | None) -> None:
        proc = run.process
        assert proc is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            _out, err = await asyncio.gather(
                _read_bounded(proc.stdout, 1 << 20), _read_tail(proc.stderr, STDERR_TAIL)
            )
            code = await proc.wait()
        finally:
            if params_file:
                await in_thread(_remove, params_file)
            self.active.pop(run.run_id, None)
        if code in (EXIT_SUCCEEDED, EXIT_FAILED, EXIT_CANCELLED):
            self.log.info("bookstore: run %s of %s archived (exit %s)", run.run_id, run.path, code)
            return
        lines = [ln for ln in err.decode("utf-8", "replace").splitlines() if "error:" in ln]
        run.status = "error"
        run.message = (lines[-1] if lines else f"bookstore run exited with status {code}")[:2000]
        self.errors.append(run)
        self.log.warning("bookstore: run %s of %s: %s", run.run_id, run.path, run.message)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM every run (they archive as cancelled), wait, then kill what is left."""
        self._stopping = True
        runs = list(self.active.values())
        for run in runs:
            if run.process is not None and run.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    run.process.send_signal(signal.SIGTERM)
        tasks = [r.task for r in runs if r.task is not None]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=timeout)
        for run in runs:
            if run.process is not None and run.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    run.process.kill()
        if pending:
            await asyncio.wait(pending, timeout=5)
        for task in pending:
            task.cancel()


def _write_params(parameters: dict[str, Any]) -> str:
    import tempfile

    fd, path = tempfile.mkstemp(prefix="bookstore-run-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(parameters, f)
    return path


async def _read_bounded(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Read a stream to its end, keeping at most ``limit`` bytes (the rest is drained)."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return bytes(kept)


async def _read_tail(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Read a stream to its end, keeping its last ``limit`` bytes."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        kept += chunk
        del kept[:-limit]
    return bytes(kept)
