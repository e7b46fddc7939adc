"""``bookstore run`` and ``runs``: run a published version, list the archived runs."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from traitlets import Bool, Enum, Float, Integer, TraitError, Unicode

from ..errors import BadRequest
from ..history import (
    validate_version_id,
)
from ..s3 import (
    S3Store,
)
from ..services import prepare_run
from ..settings import BookstoreSettings, clean_api_path
from .base import (
    BookstoreCommand,
    UsageError,
    common_aliases,
    common_flags,
)
from .output import Progress, collect_pages, table


class RunCommand(BookstoreCommand):
    """Run a published notebook version with papermill and archive its output."""

    name = "bookstore-run"
    description = (
        "Run the newest published version of the notebook PATH (or --version-id V, or "
        "--from workspace, or --s3-key KEY) with papermill, parameters from -p NAME VALUE, "
        "-r NAME VALUE and -f params.yaml, and archive the output as a new version of "
        "<runs_prefix>/PATH with its provenance. Exit status: 0 succeeded, 1 the notebook "
        "failed, 2 usage or configuration error, 3 cancelled (SIGTERM, SIGINT, timeout), "
        "4 S3 unavailable (the output is kept in a local file, printed)."
    )
    arguments = ()
    optional_arguments = ("PATH",)
    aliases = {
        **common_aliases,
        "version-id": "RunCommand.version_id",
        "from": "RunCommand.origin",
        "s3-key": "RunCommand.s3_key",
        "s3-bucket": "RunCommand.s3_bucket",
        "kernel": "RunCommand.kernel",
        "k": "RunCommand.kernel",
        "cell-timeout": "RunCommand.cell_timeout",
        "timeout": "RunCommand.timeout",
        "cwd": "RunCommand.cwd",
        "upload-timeout": "RunCommand.upload_timeout",
        "output-dir": "RunCommand.output_dir",
        "run-id": "RunCommand.run_id",
        "runs-prefix": "BookstoreSettings.runs_prefix",
    }
    flags = {
        **common_flags,
        "progress": (
            {"RunCommand": {"progress": True}},
            "Draw the progress bar (default: on a terminal).",
        ),
        "no-progress": ({"RunCommand": {"progress": False}}, "Never draw the progress bar."),
    }

    version_id = Unicode("", help="The version to run (default: the newest).").tag(config=True)
    origin = Enum(
        ["published", "workspace"], "published", help="Which prefix to run PATH from."
    ).tag(config=True)
    s3_key = Unicode("", help="Run this S3 key instead of PATH's published version.").tag(
        config=True
    )
    s3_bucket = Unicode("", help="Bucket of --s3-key (default: s3_bucket; must be allowed).").tag(
        config=True
    )
    kernel = Unicode("", help="Kernel name (default: the notebook's kernelspec).").tag(config=True)
    cell_timeout = Float(
        0.0, help="Cancel the run when one cell runs longer (seconds; 0: never)."
    ).tag(config=True)
    timeout = Float(0.0, help="Cancel the run when it runs longer (seconds; 0: never).").tag(
        config=True
    )
    cwd = Unicode("", help="Working directory of the kernel (default: the current one).").tag(
        config=True
    )
    upload_timeout = Float(
        300.0, help="How long to keep retrying the upload while S3 is unreachable (seconds)."
    ).tag(config=True)
    output_dir = Unicode(
        "",
        help="Where the output waits for its upload (default: <jupyter data dir>/bookstore/runs).",
    ).tag(config=True)
    run_id = Unicode("", help="Use this run id (default: a new one).").tag(config=True)
    progress = Bool(None, allow_none=True, help="Draw the progress bar.").tag(config=True)

    #: Parameters from -p/-r/-f, collected before traitlets parses the rest.
    _parameters: dict[str, Any]
    _parameter_files: list[str]

    def parse_command_line(self, argv: Any = None) -> None:
        args = list(argv if argv is not None else sys.argv[1:])
        rest: list[str] = []
        self._parameters = {}
        self._parameter_files = []
        self._param_error = ""
        i = 0
        while i < len(args):
            arg = args[i]
            if arg in ("-p", "--parameters", "-r", "--parameters-raw"):
                if len(args) - i < 3:
                    self._param_error = f"{arg} needs NAME VALUE"
                    break
                name, value = args[i + 1], args[i + 2]
                raw = arg in ("-r", "--parameters-raw")
                self._parameters[name] = value if raw else _run_param(value)
                i += 3
            elif arg in ("-f", "--parameters-file"):
                if len(args) - i < 2:
                    self._param_error = f"{arg} needs a file name"
                    break
                self._parameter_files.append(args[i + 1])
                i += 2
            elif arg.startswith("--parameters-file="):
                self._parameter_files.append(arg.split("=", 1)[1])
                i += 1
            else:
                rest.append(arg)
                i += 1
        super().parse_command_line(rest)

    def start(self) -> None:
        from ..runs import EXIT_USAGE

        try:
            if getattr(self, "_param_error", ""):
                self.usage_error(self._param_error)
            args = self.args()
            settings = BookstoreSettings(parent=self)
        except (UsageError, TraitError) as e:
            self.fail(str(e))
            self.exit(EXIT_USAGE)
        self.exit(asyncio.run(self._run_main(settings, args)))

    def options(self, settings: BookstoreSettings, args: list[str]) -> Any:
        from ..runs import (
            RunOptions,
            RunUsageError,
            check_parameters,
            load_parameters_file,
            run_key_path,
        )

        parameters: dict[str, Any] = {}
        for path in self._parameter_files:
            parameters.update(load_parameters_file(path))
        parameters.update(getattr(self, "_parameters", {}))
        parameters = check_parameters(parameters)
        if self.s3_key:
            key = self.s3_key.lstrip("/")
            if not key or key.endswith("/"):
                raise RunUsageError(f"--s3-key {self.s3_key!r} must name one object")
            path = args[0] if args else run_key_path(settings, key)
        elif args:
            path = args[0]
        else:
            raise RunUsageError("give the notebook's Jupyter PATH (or --s3-key KEY)")
        if self.s3_bucket and not self.s3_key:
            raise RunUsageError("--s3-bucket goes with --s3-key")
        try:
            path = clean_api_path(path.strip())
        except ValueError as e:
            raise RunUsageError(f"bad path {path!r}: {e}") from e
        version_id = None
        if self.version_id:
            try:
                version_id = validate_version_id(self.version_id, "--version-id")
            except BadRequest as e:
                raise RunUsageError(str(e)) from e
        for name in ("cell_timeout", "timeout", "upload_timeout"):
            if getattr(self, name) < 0:
                raise RunUsageError(f"--{name.replace('_', '-')} must not be negative")
        progress = self.progress
        if progress is None:
            progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
        return RunOptions(
            path=path,
            origin=self.origin,
            version_id=version_id,
            s3_key=self.s3_key.lstrip("/") or None,
            s3_bucket=self.s3_bucket or None,
            parameters=parameters,
            kernel=self.kernel or None,
            cell_timeout=self.cell_timeout or None,
            timeout=self.timeout or None,
            cwd=os.path.abspath(os.path.expanduser(self.cwd)) if self.cwd else None,
            upload_timeout=self.upload_timeout,
            output_dir=os.path.abspath(os.path.expanduser(self.output_dir))
            if self.output_dir
            else "",
            run_id=self.run_id,
            progress_bar=progress,
        )

    async def _run_main(self, settings: BookstoreSettings, args: list[str]) -> int:
        import signal

        from ..runs import RunError, Runner
        from ..s3_threaded import ThreadedS3Store

        # A run makes two S3 calls in a row: botocore's client in threads, no aiohttp to load.
        store = ThreadedS3Store(settings, log=self.log)
        loop = asyncio.get_running_loop()
        runner: Runner | None = None
        handled: list[signal.Signals] = []

        def on_signal(name: str) -> None:
            if runner is not None:
                runner.cancel(name)
            sys.stderr.write(
                f"\nbookstore run: {name}: cancelling, archiving the partial output…\n"
            )

        try:
            options = self.options(settings, args)
            runner = Runner(settings, store, options, log=self.log)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal, signal.Signals(sig).name)
                handled.append(sig)
            await runner.check()
            prepared = await prepare_run(
                settings,
                store,
                options.path,
                origin=options.origin,
                version_id=options.version_id,
                s3_key=options.s3_key,
                s3_bucket=options.s3_bucket,
                kernel=options.kernel,
            )
            result = await runner.run(prepared)
        except RunError as e:
            self.fail(str(e))
            return e.exit_code
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
            await store.close()
        self._report(result)
        return result.exit_code

    def _report(self, result: Any) -> None:
        r = result.record
        lines = [f"run {r['run_id']}: {r['status']}"]
        if r.get("duration") is not None:
            lines[0] += f" in {r['duration']:.1f} s"
        src = r["source"]
        lines.append(f"source: s3://{src['bucket']}/{src['key']} version {src['version_id']}")
        if r.get("error"):
            e = r["error"]
            where = f"cell {e['cell_index']}" if e.get("cell_index") is not None else "the run"
            lines.append(f"error: {where} raised {e['ename']}: {e['evalue']}")
        if r.get("cancel_reason"):
            lines.append(f"cancelled: {r['cancel_reason']}")
        if r.get("output_version_id"):
            lines.append(f"output: {r['s3_path']} version {r['output_version_id']}")
        if result.kept_file:
            self.fail(result.message)
        self.emit(r, "\n".join(lines) + "\n")


class RunsCommand(BookstoreCommand):
    """List the archived runs of a notebook, newest first."""

    name = "bookstore-runs"
    description = "List the archived runs of the notebook PATH, newest first."
    arguments = ("PATH",)
    aliases = {
        **common_aliases,
        "limit": "RunsCommand.limit",
        "runs-prefix": "BookstoreSettings.runs_prefix",
    }

    limit = Integer(0, help="Show at most this many runs (0: all).").tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        from ..runs import list_runs

        self.need_bucket(settings)
        path = self.api_path(args[0])
        listing = None

        async def fetch(size: int, token: str | None) -> tuple[list[dict[str, Any]], str | None]:
            nonlocal listing
            listing = await list_runs(
                settings, store, path, limit=size, page_token=token, on_fetched=progress.advance
            )
            return listing.runs, listing.next_token

        with Progress("listing runs") as progress:
            runs, _ = await collect_pages(fetch, self.limit)
        if self.limit:
            runs = runs[: self.limit]
        assert listing is not None
        data = {**listing.to_json(), "runs": runs, "next_token": None}
        rows = []
        for r in runs:
            params = ", ".join(f"{k}={v!r}" for k, v in (r.get("parameters") or {}).items())
            duration = r.get("duration")
            rows.append(
                [
                    r["run_id"],
                    r["status"],
                    (r.get("started") or "")[:19].replace("T", " "),
                    f"{duration:.1f} s" if isinstance(duration, (int, float)) else "",
                    r.get("source_version_id") or "",
                    r.get("output_version_id") or "",
                    params[:60],
                ]
            )
        text = f"{listing.to_json()['s3_path']}: {len(runs)} run(s)\n" + table(
            rows,
            [
                "RUN ID",
                "STATUS",
                "STARTED (UTC)",
                "DURATION",
                "SOURCE VERSION",
                "OUTPUT VERSION",
                "PARAMETERS",
            ],
        )
        self.emit(data, text)


def _run_param(value: str) -> Any:
    from ..runs import parse_parameter_value

    return parse_parameter_value(value)
