"""``bookstore``: version history, publishing and cloning from the command line.

Also reachable as ``jupyter bookstore``. It reads the same settings as the server:
``c.BookstoreSettings`` and ``c.ServerApp.root_dir`` from the Jupyter config files
(``jupyter_notebook_config``, ``jupyter_server_config`` and ``jupyter_bookstore_config``,
``.py`` or ``.json``, in ``JUPYTER_CONFIG_DIR`` and every other Jupyter config directory),
then the ``JPYNB_S3_*`` environment variables, then flags such as
``--BookstoreSettings.s3_bucket=NAME`` or their short forms (``--bucket=NAME``).

Subcommands::

    bookstore versions PATH             versions of a notebook, newest first
    bookstore show PATH [--version ID]  one version (default: the latest)
    bookstore diff PATH A [B]           what changed from version A to B (or the local file)
    bookstore restore PATH --version ID write a version to the local file and archive it
    bookstore publish PATH              copy the local notebook to the published prefix
    bookstore clone KEY [--version ID]  copy an S3 object into the local folder
    bookstore doctor                    check credentials, bucket, versioning, spool, retention
    bookstore run PATH [-p NAME VALUE]  run a published version, archive the output
    bookstore runs PATH                 archived runs of a notebook, newest first
    bookstore prune [PATH] --keep-…     thin out old versions (a dry run unless --yes)
    bookstore pin PATH VERSION          never prune this version (unpin to undo)
    bookstore usage                     bytes and versions per path, growth per day

Jupyter paths are relative to ``--root-dir`` (default: the server's ``root_dir``, else the
current directory). Output is
a table by default and JSON with ``--json``; long operations draw a progress bar on stderr
when it is a terminal. Any failure prints one line to stderr and exits with status 1
(2 for wrong usage).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import posixpath
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar, TextIO

from jupyter_client.jsonutil import json_default
from jupyter_core.application import JupyterApp, base_aliases, base_flags
from traitlets import Bool, Enum, Float, Integer, TraitError, Unicode, default
from traitlets.config import Application
from traitlets.config.loader import ConfigFileNotFound

from ._version import __version__
from .archiver import (
    CORRUPT_DIR,
    ENTRY_SUFFIX,
    Spool,
    list_set_aside,
    new_save_id,
    read_lock_owner,
    read_stats,
    spool_candidates,
    utcnow_iso,
)
from .history import (
    META_RESTORED_FROM,
    HistoryError,
    VersionHistory,
    VersionRecord,
    contents_model,
    is_notebook_path,
    parse_notebook,
    validate_version_id,
)
from .publisher import NOTEBOOK_CONTENT_TYPE, publish_bytes
from .render import cell_changes, human_size, metadata_changed, strip_ansi, text_diff
from .s3 import (
    META_PATH,
    META_SAVE_ID,
    META_SAVED_AT,
    META_SHA256,
    META_USER,
    S3Error,
    S3NotFound,
    S3Refused,
    S3Store,
    S3Unavailable,
)
from .settings import BookstoreSettings, clean_api_path

#: Config files read, lowest priority first; the server reads the first two.
CONFIG_FILES = ("jupyter_notebook_config", "jupyter_server_config", "jupyter_bookstore_config")

#: Where the server's root directory is configured, highest priority first.
ROOT_DIR_SETTINGS = (
    ("ServerApp", "root_dir"),
    ("ServerApp", "notebook_dir"),
    ("NotebookApp", "notebook_dir"),
)

#: ``bookstore --help`` opens with this.
DESCRIPTION = """\
bookstore: Jupyter notebook versions, publishing and cloning on versioned S3.

List, show, diff and restore the versions that the bookstore server extension archived at each
save; publish a notebook; clone any S3 object (any version) into your Jupyter folder; check the
setup. It reads the server's config (c.BookstoreSettings and c.ServerApp.root_dir in
jupyter_server_config.py or .json, in JUPYTER_CONFIG_DIR), then the JPYNB_S3_* environment
variables, then flags.

Usage:
    bookstore SUBCOMMAND [ARGS] [OPTIONS]
    bookstore SUBCOMMAND --help     what it does, its options, examples
"""


def command_help(synopsis: str, text: str, examples: Sequence[str]) -> str:
    """A subcommand's help: its synopsis, what it does, and examples to copy."""
    lines = "\n".join(f"    {e}" for e in examples)
    return f"Usage:\n    {synopsis}\n\n{text}\n\nExamples:\n{lines}\n"


class CommandError(Exception):
    """A failure to report in one line (exit status 1)."""

    status = 1


class UsageError(CommandError):
    """Wrong arguments (exit status 2)."""

    status = 2


# --- output helpers -----------------------------------------------------------------------------


class Progress:
    """A progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def set_total(self, total: int) -> None:
        self.total = total
        self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.05:
            return
        self._last = now
        if self.total:
            width = 30
            filled = min(width, int(width * self.done / self.total))
            bar = "#" * filled + "-" * (width - filled)
            text = f"{self.label} [{bar}] {self.done}/{self.total}"
        else:
            text = f"{self.label} {self.done}…"
        self.stream.write("\r\033[K" + text)
        self.stream.flush()


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain-text table with aligned columns."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def plural(n: int, noun: str) -> str:
    """``1 version``, ``3 versions``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def short_time(record: VersionRecord) -> str:
    """``2024-05-01 14:03:22`` (UTC)."""
    when = record.last_modified
    if when is None:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


# --- base command -------------------------------------------------------------------------------

common_aliases: dict[str, Any] = {
    **base_aliases,
    "bucket": "BookstoreSettings.s3_bucket",
    "endpoint-url": "BookstoreSettings.s3_endpoint_url",
    "region": "BookstoreSettings.s3_region_name",
    "workspace-prefix": "BookstoreSettings.workspace_prefix",
    "published-prefix": "BookstoreSettings.published_prefix",
    "spool-dir": "BookstoreSettings.spool_dir",
    "root-dir": "BookstoreCommand.root_dir",
}
common_flags: dict[str, Any] = {
    **{k: v for k, v in base_flags.items() if k not in {"generate-config", "y"}},
    "json": ({"BookstoreCommand": {"json_output": True}}, "Print JSON instead of a table."),
}


class BookstoreCommand(JupyterApp):
    """Base of the subcommands: settings, the S3 store, arguments and output."""

    name = "bookstore"
    version = __version__
    classes = [BookstoreSettings]
    aliases = common_aliases
    flags = common_flags
    #: Positional arguments: names shown in the usage line.
    arguments: ClassVar[tuple[str, ...]] = ()
    optional_arguments: ClassVar[tuple[str, ...]] = ()

    json_output = Bool(False, help="Print JSON instead of a table.").tag(config=True)
    root_dir = Unicode(
        "",
        help=(
            "Local folder that Jupyter paths are relative to (restore, publish, clone and "
            "diff against the local file). Default: the server's c.ServerApp.root_dir from "
            "the Jupyter config files, else the current directory."
        ),
    ).tag(config=True)

    @default("root_dir")
    def _root_dir_default(self) -> str:
        """The server's root directory, from the same config files the server reads."""
        for section, name in ROOT_DIR_SETTINGS:
            if section in self.config and name in self.config[section]:
                value = self.config[section][name]
                if isinstance(value, str) and value:
                    return value
        return ""

    def _log_level_default(self) -> int:
        import logging

        return logging.WARNING

    def _find_subcommand(self, name: str) -> str:
        return ""  # no `bookstore-<name>` executables: arguments are paths

    def migrate_config(self) -> None:
        """Never migrate IPython-era config from a command-line tool."""

    def load_config_file(self, suppress_errors: bool = True) -> None:  # type: ignore[override]
        """Read the server's config files (and ``jupyter_bookstore_config``)."""
        paths = self.config_file_paths
        for name in ("jupyter_config", *CONFIG_FILES):
            try:
                Application.load_config_file(self, name, path=paths)
            except ConfigFileNotFound:
                pass
        if self.config_file:
            directory, filename = os.path.split(self.config_file)
            Application.load_config_file(self, filename, path=directory)

    def parse_command_line(self, argv: Any = None) -> None:
        # traitlets reserves --version for printing the release; ours selects a version.
        fixed: list[str] = []
        for arg in list(argv if argv is not None else sys.argv[1:]):
            if arg == "--version":
                fixed.append("--version-id")
            elif arg.startswith("--version="):
                fixed.append("--version-id=" + arg.split("=", 1)[1])
            else:
                fixed.append(arg)
        super().parse_command_line(fixed)

    # --- running --------------------------------------------------------------------------

    def local_path(self, path: str) -> str:
        root = os.path.abspath(os.path.expanduser(self.root_dir or os.getcwd()))
        return os.path.join(root, *path.split("/"))

    def args(self) -> list[str]:
        """The positional arguments; usage error if their number is wrong."""
        args = list(self.extra_args)
        low, high = len(self.arguments), len(self.arguments) + len(self.optional_arguments)
        if not low <= len(args) <= high:
            names = " ".join([*self.arguments, *(f"[{a}]" for a in self.optional_arguments)])
            self.usage_error(f"expected {names}, got {len(args)} argument(s)")
        return args

    def usage_error(self, message: str) -> None:
        raise UsageError(f"{message} (see `bookstore {self.subcommand_name} --help`)")

    def start(self) -> None:
        try:
            args = self.args()
            settings = BookstoreSettings(parent=self)
        except (UsageError, TraitError) as e:
            self.fail(str(e))
            self.exit(getattr(e, "status", 1))
        self.exit(asyncio.run(self._main(settings, args)))

    async def _main(self, settings: BookstoreSettings, args: list[str]) -> int:
        from tornado.web import HTTPError  # not on `bookstore run`'s path

        store = S3Store(settings, log=self.log)
        try:
            await self.run(settings, store, args)
        except CommandError as e:
            self.fail(str(e))
            return e.status
        except (HistoryError, S3Error, TraitError, OSError) as e:
            self.fail(str(e))
            return 1
        except HTTPError as e:
            self.fail(e.log_message or str(e))
            return 1
        finally:
            await store.close()
        return 0

    def fail(self, message: str) -> None:
        """Report a failure in one line on stderr."""
        one_line = " ".join(message.split())
        sys.stderr.write(f"bookstore {self.subcommand_name}: error: {one_line}\n")

    @property
    def subcommand_name(self) -> str:
        return self.name.rsplit("-", 1)[-1]

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        raise NotImplementedError

    # --- helpers ----------------------------------------------------------------------------

    @staticmethod
    def need_bucket(settings: BookstoreSettings) -> None:
        if not settings.s3_bucket:
            raise CommandError(
                "no S3 bucket configured: pass --bucket=NAME, set c.BookstoreSettings.s3_bucket "
                "in jupyter_server_config.py, or the JPYNB_S3_BUCKET environment variable"
            )

    @staticmethod
    def api_path(path: str) -> str:
        try:
            return clean_api_path(path.strip())
        except ValueError as e:
            raise CommandError(f"bad path {path!r}: {e}") from e

    def emit(self, data: Any, text: str) -> None:
        """Print ``data`` as JSON with --json, else ``text``."""
        if self.json_output:
            sys.stdout.write(json.dumps(data, indent=2, default=json_default) + "\n")
        else:
            sys.stdout.write(text)
        sys.stdout.flush()


# --- subcommands --------------------------------------------------------------------------------


class VersionsCommand(BookstoreCommand):
    """List the versions of a file, newest first (saves still in the spool first)."""

    name = "bookstore-versions"
    description = command_help(
        "bookstore versions PATH [--prefix=workspace|published] [--limit=N | --all] [--json]",
        "List the archived versions of the file at Jupyter path PATH (relative to the "
        "server's root_dir), newest first, with their save time (UTC), size, user and sha256. "
        "Saves still waiting in the spool for their upload come first. --prefix=published "
        "lists the published copies instead. Copy a VERSION ID into `bookstore show`, `diff` "
        "or `restore`.",
        [
            "bookstore versions analysis/report.ipynb",
            "bookstore versions analysis/report.ipynb --limit=5",
            "bookstore versions analysis/report.ipynb --prefix=published --json",
        ],
    )
    arguments = ("PATH",)
    aliases = {
        **common_aliases,
        "prefix": "VersionsCommand.prefix",
        "limit": "VersionsCommand.limit",
    }
    flags = {
        **common_flags,
        "all": ({"VersionsCommand": {"limit": 0}}, "List every version (the default)."),
    }

    prefix = Enum(["workspace", "published"], "workspace", help="Which prefix to list.").tag(
        config=True
    )
    limit = Integer(
        0, help="Show at most this many versions, the newest (0, or --all: every one)."
    ).tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        self.need_bucket(settings)
        path = self.api_path(args[0])
        history = VersionHistory(settings, store)
        records: list[VersionRecord] = []
        token: str | None = None
        listing = None
        with Progress("listing versions") as progress:
            while True:
                page_size = 1000 if not self.limit else min(1000, self.limit - len(records) or 1)
                listing = await history.listing(
                    path,
                    prefix=self.prefix,
                    limit=page_size,
                    page_token=token,
                    on_fetched=progress.advance,
                )
                records += listing.versions
                token = listing.next_token
                if not token or (self.limit and len(records) >= self.limit):
                    break
        assert listing is not None
        total = len(records)
        if self.limit and (len(records) > self.limit or token):
            # More exist: count them all (one cheap listing, no metadata requests).
            pending = sum(1 for r in records if r.pending)
            total = pending + await history.count_versions(path, self.prefix)
            records = records[: self.limit]
        data = {
            **listing.to_json(),
            "versions": [r.to_json() for r in records],
            "next_token": None,
            "total": total,
        }
        rows = []
        for r in records:
            flags = []
            if r.is_latest:
                flags.append("latest")
            if r.pending:
                flags.append("pending upload")
            if r.renamed_from:
                flags.append(f"renamed from {r.renamed_from}")
            if r.restored_from:
                flags.append(f"restored from {r.restored_from}")
            rows.append(
                [
                    r.version_id or f"(save {r.save_id})",
                    short_time(r),
                    human_size(r.size),
                    r.user or "",
                    (r.sha256 or "")[:12],
                    ", ".join(flags),
                ]
            )
        if total > len(records):
            head = (
                f"{listing.s3_path}: {len(records)} of {total} versions shown, newest first; "
                f"use --limit=N to see more, or --all\n"
            )
        else:
            head = f"{listing.s3_path}: {plural(total, 'version')}\n"
        text = head + table(rows, ["VERSION ID", "SAVED (UTC)", "SIZE", "USER", "SHA256", "NOTES"])
        self.emit(data, text)


class ShowCommand(BookstoreCommand):
    """Print one version (default: the latest)."""

    name = "bookstore-show"
    description = command_help(
        "bookstore show PATH [--version=ID] [--prefix=workspace|published] [--raw | --json]",
        "Print one version of the file at Jupyter path PATH: its save time (UTC), size, user "
        "and sha256, then each cell with its text outputs. Without --version, the latest. "
        "--raw writes the stored bytes unchanged, to keep a copy of an old version.",
        [
            "bookstore show analysis/report.ipynb",
            "bookstore show analysis/report.ipynb --version=VERSION_ID",
            "bookstore show analysis/report.ipynb --version=VERSION_ID --raw > old.ipynb",
        ],
    )
    arguments = ("PATH",)
    aliases = {
        **common_aliases,
        "version-id": "ShowCommand.version_id",
        "prefix": "ShowCommand.prefix",
    }
    flags = {
        **common_flags,
        "raw": ({"ShowCommand": {"raw": True}}, "Write the stored bytes, unchanged, to stdout."),
    }

    version_id = Unicode("", help="The version to show (default: the latest).").tag(config=True)
    prefix = Enum(["workspace", "published"], "workspace", help="Which prefix.").tag(config=True)
    raw = Bool(False, help="Write the stored bytes to stdout.").tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        self.need_bucket(settings)
        path = self.api_path(args[0])
        history = VersionHistory(settings, store)
        version_id = self.version_id
        if version_id:
            validate_version_id(version_id, "--version")
        else:
            listing = await history.listing(
                path, prefix=self.prefix, limit=1, include_pending=False
            )
            version_id = listing.versions[0].version_id or ""
        record, result = await history.record(path, version_id, self.prefix)
        if self.raw:
            sys.stdout.buffer.write(result.body)
            sys.stdout.flush()
            return
        model = contents_model(path, result.body, record, result.content_type)
        self.emit(model, self.describe(path, record, model))

    @staticmethod
    def describe(path: str, record: VersionRecord, model: dict[str, Any]) -> str:
        head = [
            ("path", path),
            ("version", record.version_id),
            ("saved", short_time(record)),
            ("size", human_size(record.size)),
            ("user", record.user or ""),
            ("sha256", record.sha256 or ""),
            ("latest", "yes" if record.is_latest else "no"),
        ]
        out = [f"{k:>8}: {v}" for k, v in head]
        if model["type"] == "notebook":
            for i, cell in enumerate(model["content"].get("cells", [])):
                ctype = cell.get("cell_type", "code")
                count = cell.get("execution_count")
                label = f"In [{count if count is not None else ' '}]" if ctype == "code" else ctype
                out.append(f"\n--- cell {i + 1} · {label} ---")
                out.append(str(cell.get("source", "")))
                for output in cell.get("outputs", []) or []:
                    text = output.get("text") or (output.get("data") or {}).get("text/plain")
                    if output.get("output_type") == "error":
                        text = f"{output.get('ename')}: {output.get('evalue')}"
                    if text:
                        text = "".join(text) if isinstance(text, list) else str(text)
                        out.append("│ " + strip_ansi(text).rstrip("\n").replace("\n", "\n│ "))
        elif model["format"] == "text":
            out.append("")
            out.append(model["content"])
        else:
            out.append(f"\n(binary, {human_size(record.size)}: use --raw to write it out)")
        return "\n".join(out).rstrip("\n") + "\n"


class DiffCommand(BookstoreCommand):
    """What changed between two versions, or from a version to the local file."""

    name = "bookstore-diff"
    description = command_help(
        "bookstore diff PATH A [B] [--all] [--prefix=workspace|published] [--json]",
        "What changed, cell by cell, from version A of the notebook at Jupyter path PATH to "
        "version B, or, without B, to the local file under the server's root_dir (--root-dir). "
        "Get the version ids from `bookstore versions PATH`. --all also prints unchanged cells.",
        [
            "bookstore diff analysis/report.ipynb OLD_VERSION_ID",
            "bookstore diff analysis/report.ipynb OLD_VERSION_ID NEW_VERSION_ID",
        ],
    )
    arguments = ("PATH", "A")
    optional_arguments = ("B",)
    aliases = {**common_aliases, "prefix": "DiffCommand.prefix"}
    flags = {
        **common_flags,
        "all": ({"DiffCommand": {"show_unchanged": True}}, "Also show unchanged cells."),
    }

    prefix = Enum(["workspace", "published"], "workspace", help="Which prefix.").tag(config=True)
    show_unchanged = Bool(False, help="Also show unchanged cells.").tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        self.need_bucket(settings)
        path = self.api_path(args[0])
        if not is_notebook_path(path):
            raise CommandError(f"{path} is not a notebook (.ipynb): only notebooks are diffed")
        a = validate_version_id(args[1], "A")
        b = validate_version_id(args[2], "B") if len(args) > 2 else None
        history = VersionHistory(settings, store)
        current = None
        if b is None:
            local = self.local_path(path)
            try:
                data = await asyncio.to_thread(_read_file, local, settings.max_read_bytes)
            except FileNotFoundError as e:
                raise CommandError(f"no local file {local} to compare with: give B") from e
            current = await asyncio.to_thread(parse_notebook, data, local)
        with Progress("reading versions", total=1 if b is None else 2):
            diff = await history.diff(path, a, b, prefix=self.prefix, current=current)
        target = f"version {b}" if b else f"local file {self.local_path(path)}"
        text = f"--- {path} version {a}\n+++ {target}\n"
        if diff.diff is None:  # over a max_diff_* cap
            self.emit(diff.to_json(), text + diff.summary.message + "\n")
            return
        changes = cell_changes(diff.base, diff.remote, diff.diff)
        n_changed = sum(1 for c in changes if c.changed)
        if metadata_changed(diff.diff):
            text += "notebook metadata changed\n"
        text += text_diff(changes, context=self.show_unchanged)
        text += f"{n_changed} cell(s) changed\n"
        self.emit(diff.to_json(), text)


class RestoreCommand(BookstoreCommand):
    """Write a version to the local file and archive it as the newest version."""

    name = "bookstore-restore"
    description = command_help(
        "bookstore restore PATH --version=ID [--prefix=workspace|published] [--local-only]",
        "Write version ID of the file at Jupyter path PATH over the local file (under the "
        "server's root_dir, or --root-dir), and archive it at once as the newest workspace "
        "version, noted 'restored from ID' in `bookstore versions`. Nothing older is lost: "
        "the version you replaced stays in the history. With --local-only the file is only "
        "written; the server archives it at its next save.",
        [
            "bookstore versions analysis/report.ipynb --limit=5",
            "bookstore restore analysis/report.ipynb --version=VERSION_ID",
        ],
    )
    arguments = ("PATH",)
    aliases = {
        **common_aliases,
        "version-id": "RestoreCommand.version_id",
        "prefix": "RestoreCommand.prefix",
    }
    flags = {
        **common_flags,
        "local-only": (
            {"RestoreCommand": {"local_only": True}},
            "Only write the local file; do not upload it.",
        ),
    }

    version_id = Unicode("", help="The version to restore (required).").tag(config=True)
    prefix = Enum(["workspace", "published"], "workspace", help="Which prefix.").tag(config=True)
    local_only = Bool(False, help="Only write the local file.").tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        self.need_bucket(settings)
        path = self.api_path(args[0])
        if not self.version_id:
            self.usage_error("give the version to restore: --version ID")
        version_id = validate_version_id(self.version_id, "--version")
        history = VersionHistory(settings, store)
        with Progress("restoring", total=2) as progress:
            data = await history.read_bytes(path, version_id, self.prefix)
            progress.advance()
            if is_notebook_path(path):
                await asyncio.to_thread(parse_notebook, data, f"version {version_id}")
            local = self.local_path(path)
            await asyncio.to_thread(_write_file, local, data)
            result = None
            if not self.local_only:
                key = settings.s3_key("workspace", path)
                metadata = {
                    META_SHA256: hashlib.sha256(data).hexdigest(),
                    META_SAVED_AT: utcnow_iso(),
                    META_USER: settings.username,
                    META_PATH: path,
                    META_SAVE_ID: new_save_id(),
                    META_RESTORED_FROM: version_id,
                }
                content_type = NOTEBOOK_CONTENT_TYPE if is_notebook_path(path) else None
                result = await store.put_object(
                    key, data, metadata, content_type=content_type or "application/octet-stream"
                )
            progress.advance()
        data_out = {
            "path": path,
            "local_path": local,
            "restored_from": version_id,
            "prefix": self.prefix,
            "version_id": result.version_id if result else None,
            "s3_path": f"s3://{result.bucket}/{result.key}" if result else None,
            "size": len(data),
        }
        text = f"restored {path} from {self.prefix} version {version_id} into {local}\n"
        if result:
            text += (
                f"archived as version {result.version_id} of s3://{result.bucket}/{result.key}\n"
            )
        self.emit(data_out, text)


class PublishCommand(BookstoreCommand):
    """Copy the local notebook to the published prefix."""

    name = "bookstore-publish"
    description = command_help(
        "bookstore publish PATH [--json]",
        "Check the local notebook at Jupyter path PATH (under the server's root_dir, or "
        "--root-dir) and copy it to the published prefix. Prints its s3:// path and version "
        "id: others clone exactly that version with `bookstore clone KEY --version=ID` or the "
        "server's /bookstore/clone page.",
        ["bookstore publish analysis/report.ipynb"],
    )
    arguments = ("PATH",)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        self.need_bucket(settings)
        path = self.api_path(args[0])
        if not is_notebook_path(path):
            raise CommandError(f"{path} is not a notebook (.ipynb): only notebooks are published")
        local = self.local_path(path)
        try:
            raw = await asyncio.to_thread(_read_file, local)
        except FileNotFoundError as e:
            raise CommandError(f"no such file: {local}") from e
        from .handlers.common import check_notebook, notebook_bytes

        try:
            content = json.loads(raw)
        except ValueError as e:
            raise CommandError(f"{local} is not a notebook: {e}") from e
        nb = await asyncio.to_thread(check_notebook, content, local)
        data = notebook_bytes(nb)
        with Progress("uploading", total=1) as progress:
            answer = await publish_bytes(store, settings, path, data)
            progress.advance()
        self.emit(
            answer,
            f"published {path} to {answer['s3_path']} (version {answer['versionID']})\n",
        )


class CloneCommand(BookstoreCommand):
    """Copy an S3 object (any version) into the local folder."""

    name = "bookstore-clone"
    description = command_help(
        "bookstore clone KEY [--version=ID] [--to=PATH] [--force] [--source-bucket=BUCKET]",
        "Copy the S3 object s3://BUCKET/KEY (the configured bucket unless --source-bucket; "
        "any version with --version) into the local folder (the server's root_dir, or "
        "--root-dir) as PATH (default: the key's file name). Never overwrites an existing "
        "file unless --force.",
        [
            "bookstore clone published/alice/report.ipynb",
            "bookstore clone published/alice/report.ipynb --version=VERSION_ID --to=copy.ipynb",
        ],
    )
    arguments = ("KEY",)
    aliases = {
        **common_aliases,
        "version-id": "CloneCommand.version_id",
        "source-bucket": "CloneCommand.source_bucket",
        "to": "CloneCommand.target",
    }
    flags = {
        **common_flags,
        "force": ({"CloneCommand": {"force": True}}, "Overwrite the local file if it exists."),
    }

    version_id = Unicode("", help="The version to clone (default: the latest).").tag(config=True)
    source_bucket = Unicode("", help="Bucket to clone from (default: s3_bucket).").tag(config=True)
    target = Unicode("", help="Local Jupyter path to write (default: the key's name).").tag(
        config=True
    )
    force = Bool(False, help="Overwrite the local file if it exists.").tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        key = args[0].lstrip("/")
        if not key:
            self.usage_error("give the S3 key to clone, e.g. published/report.ipynb")
        bucket = self.source_bucket or settings.s3_bucket
        if not bucket:
            self.need_bucket(settings)
        version_id = validate_version_id(self.version_id, "--version") if self.version_id else None
        target = self.api_path(self.target or posixpath.basename(key))
        local = self.local_path(target)
        if not self.force and await asyncio.to_thread(os.path.exists, local):
            raise CommandError(f"{local} exists: pass --force to overwrite it, or --to NEW_PATH")
        directory = os.path.dirname(local) or "."
        await asyncio.to_thread(os.makedirs, directory, exist_ok=True)
        # Streamed into a temporary file next to the target, checked, then moved there.
        with Progress("downloading", total=1) as progress:
            try:
                tmp, info = await store.download_to_temp(key, directory, version_id, bucket=bucket)
            except S3NotFound as e:
                raise CommandError(
                    f"s3://{bucket}/{key}"
                    + (f" version {version_id}" if version_id else "")
                    + " does not exist"
                ) from e
            progress.advance()
        try:
            if is_notebook_path(target):
                data = await asyncio.to_thread(_read_file, tmp)
                await asyncio.to_thread(parse_notebook, data, f"s3://{bucket}/{key}")
                del data
            await asyncio.to_thread(_move_into_place, tmp, local)
        except BaseException:
            await asyncio.to_thread(_remove_quietly, tmp)
            raise
        self.emit(
            {
                "path": target,
                "local_path": local,
                "bucket": bucket,
                "key": key,
                "version_id": info.version_id,
                "size": info.size,
            },
            f"cloned s3://{bucket}/{key} (version {info.version_id}) to {local}\n",
        )


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
        from .runs import EXIT_USAGE

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
        from .runs import (
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
            except HistoryError as e:
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

        from .runs import RunError, Runner

        store = S3Store(settings, log=self.log)
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
            result = await runner.run()
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
        from .runs import list_runs

        self.need_bucket(settings)
        path = self.api_path(args[0])
        runs: list[dict[str, Any]] = []
        token: str | None = None
        listing = None
        with Progress("listing runs") as progress:
            while True:
                size = 1000 if not self.limit else min(1000, self.limit - len(runs) or 1)
                listing = await list_runs(
                    settings, store, path, limit=size, page_token=token, on_fetched=progress.advance
                )
                runs += listing.runs
                token = listing.next_token
                if not token or (self.limit and len(runs) >= self.limit):
                    break
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
    from .runs import parse_parameter_value

    return parse_parameter_value(value)


class DoctorCommand(BookstoreCommand):
    """Check the configuration, credentials, bucket, versioning and spool; say what to fix."""

    name = "bookstore-doctor"
    description = command_help(
        "bookstore doctor [--json] [--fast-growth=BYTES]",
        "Check what the server would use: the config files read, the bucket setting, the "
        "credentials (never printed), that the bucket is reachable, that versioning is on, "
        "the retention policy (warns when none is set and the workspace grows fast), and the "
        "spool directory (writable, saves waiting and how old); say what to fix. "
        "Exits with status 1 if a check fails.",
        ["bookstore doctor", "JUPYTER_CONFIG_DIR=/srv/jupyter/config bookstore doctor"],
    )
    aliases = {**common_aliases, "fast-growth": "DoctorCommand.fast_growth"}

    fast_growth = Integer(
        100 * 1024 * 1024,
        help=(
            "Warn when no retention policy is set and the workspace grew more than this "
            "many bytes per day over the last week."
        ),
    ).tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        checks: list[dict[str, str]] = []

        def add(name: str, status: str, detail: str, fix: str = "") -> None:
            checks.append({"check": name, "status": status, "detail": detail, "fix": fix})

        files = self.loaded_config_files
        config_dir = self.config_dir
        add(
            "config",
            "INFO",
            ", ".join(files) if files else f"no config file found (config dir {config_dir})",
            ""
            if files
            else f"write jupyter_server_config.py in {config_dir}, or set "
            "JUPYTER_CONFIG_DIR to the server's config directory",
        )
        root = self.root_dir or os.getcwd()
        add("root dir", "INFO", f"{root} (local paths are relative to it)")
        with Progress("checking", total=6) as progress:
            await self._check_s3(settings, store, add)
            progress.advance(4)
            if checks and checks[-1]["check"] == "prefixes":  # the bucket is usable
                from .prune import retention_check

                try:
                    add(
                        "retention",
                        *await retention_check(store, settings, fast_growth=self.fast_growth),
                    )
                except S3Error as e:
                    add("retention", "WARN", f"cannot measure the workspace: {e}", "")
            progress.advance()
            await asyncio.to_thread(self._check_spool, settings, add)
            progress.advance()
        ok = all(c["status"] != "FAIL" for c in checks)
        rows = [[c["status"], c["check"], c["detail"]] for c in checks]
        text = table(rows, ["STATUS", "CHECK", "DETAIL"])
        fixes = [f"- {c['check']}: {c['fix']}" for c in checks if c["fix"]]
        if fixes:
            text += "\nTo fix:\n" + "\n".join(fixes) + "\n"
        text += "\nAll good.\n" if ok else "\nProblems found.\n"
        self.emit({"ok": ok, "checks": checks}, text)
        if not ok:
            raise CommandError("some checks failed (see above)")

    async def _check_s3(self, settings: BookstoreSettings, store: S3Store, add: Any) -> None:
        endpoint = settings.s3_endpoint_url or "AWS S3"
        add("endpoint", "INFO", f"{endpoint} (region {settings.s3_region_name})")
        if not settings.s3_bucket:
            add(
                "bucket",
                "FAIL",
                "no bucket configured",
                "set c.BookstoreSettings.s3_bucket in jupyter_server_config.py, or "
                "JPYNB_S3_BUCKET, or pass --bucket=NAME",
            )
            return
        if settings.s3_access_key_id and settings.s3_secret_access_key:
            key_id = settings.s3_access_key_id
            shown = f"…{key_id[-4:]}" if len(key_id) > 8 else "(set)"
            add("credentials", "OK", f"access key id {shown} from bookstore settings")
        else:
            method = await _default_credentials_method()
            if method is None:
                add(
                    "credentials",
                    "FAIL",
                    "none found",
                    "set c.BookstoreSettings.s3_access_key_id / s3_secret_access_key, "
                    "JPYNB_S3_ACCESS_KEY_ID / JPYNB_S3_SECRET_ACCESS_KEY, or an AWS profile",
                )
                return
            add("credentials", "OK", f"from botocore's default chain ({method})")
        try:
            await store.check_bucket()
        except S3Unavailable as e:
            add("bucket", "FAIL", str(e), f"check s3_endpoint_url ({endpoint}) and the network")
            return
        except S3Refused as e:
            if e.code == "NoSuchBucket":
                fix = (
                    f"create it: aws s3api create-bucket --bucket {settings.s3_bucket}, then "
                    f"enable versioning"
                )
            else:
                fix = "check the access key, the secret and the bucket policy"
            add("bucket", "FAIL", str(e), fix)
            return
        except S3Error as e:
            add("bucket", "FAIL", str(e), "check the S3 settings")
            return
        add("bucket", "OK", f"s3://{settings.s3_bucket} is reachable with these credentials")
        try:
            status = await store.bucket_versioning()
        except S3Error as e:
            add("versioning", "FAIL", str(e), "allow s3:GetBucketVersioning on the bucket")
            return
        if status == "Enabled":
            add("versioning", "OK", "enabled: every save is kept as a version")
        else:
            add(
                "versioning",
                "FAIL",
                f"{status or 'never enabled'}: each save overwrites the previous one",
                f"aws s3api put-bucket-versioning --bucket {settings.s3_bucket} "
                f"--versioning-configuration Status=Enabled",
            )
        add("prefixes", "INFO", f"workspace {settings.workspace}/, published {settings.published}/")

    @staticmethod
    def _check_lock(directory: str, add: Any) -> None:
        """Who holds a spool's lock, from what its holder wrote (without taking it)."""
        owner = read_lock_owner(directory)
        if not owner:
            add("spool lock", "INFO", f"{directory}: free (no server is using it)")
            return
        pid, host = owner.get("pid"), owner.get("host")
        where = f"pid {pid} on {host}, since {owner.get('since')}"
        if host != socket.gethostname() or not isinstance(pid, int):
            add("spool lock", "INFO", f"{directory}: held by {where}")
        elif _pid_alive(pid):
            add("spool lock", "OK", f"{directory}: held by the running server {where}")
        else:
            add(
                "spool lock",
                "WARN",
                f"{directory}: its server ({where}) is gone",
                "start a server: it adopts what the gone one left",
            )

    @staticmethod
    def _check_spool(settings: BookstoreSettings, add: Any) -> None:
        spool = settings.spool_dir
        if not os.path.isdir(spool):
            parent = os.path.dirname(spool)
            while parent and not os.path.isdir(parent):
                parent = os.path.dirname(parent)
            if parent and os.access(parent, os.W_OK):
                add("spool", "OK", f"{spool} does not exist yet; the server creates it")
            else:
                add(
                    "spool",
                    "FAIL",
                    f"{spool} does not exist and cannot be created",
                    "set c.BookstoreSettings.spool_dir (or BOOKSTORE_SPOOL_DIR) to a writable "
                    "directory",
                )
            return
        try:
            fd, probe = tempfile.mkstemp(dir=spool, prefix=".doctor-")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            add(
                "spool",
                "FAIL",
                f"{spool} is not writable: {e}",
                "fix its permissions or set c.BookstoreSettings.spool_dir elsewhere",
            )
            return
        add("spool", "OK", f"{spool} is writable")
        # Servers sharing spool_dir use siblings (<spool>-2 ...): report them all.
        spools = [d for d in spool_candidates(spool) if os.path.isdir(d)]
        entries = []
        corrupt = 0
        set_aside: list[dict[str, Any]] = []
        dropped = 0
        for directory in spools:
            DoctorCommand._check_lock(directory, add)
            for name in sorted(os.listdir(directory)):
                if name.endswith(ENTRY_SUFFIX):
                    try:
                        entries.append(Spool.read_header(os.path.join(directory, name)))
                    except (OSError, ValueError, TypeError):
                        continue
            corrupt_dir = os.path.join(directory, CORRUPT_DIR)
            corrupt += len(os.listdir(corrupt_dir)) if os.path.isdir(corrupt_dir) else 0
            set_aside.extend(list_set_aside(directory))
            dropped += int(read_stats(directory).get("dropped_saves", 0))
        entries.sort(key=lambda e: e.save_id)
        if dropped:
            add(
                "dropped",
                "WARN",
                f"{dropped} save(s) were dropped from the archive (kept on disk) because the "
                f"spool reached max_spool_bytes or min_free_disk_bytes",
                "keep S3 reachable, or raise c.BookstoreSettings.max_spool_bytes; each "
                "version's dropped-saves metadata says how many are missing before it",
            )
        for info in set_aside:
            add(
                "set aside",
                "WARN",
                f"{info.get('path')}: {info.get('reason')} (kept at "
                f"{info.get('kept_at') or 'nowhere: the disk was full'})",
                "S3 will never accept this save as it is: see docs/limits.md to recover it; "
                "delete the .entry and .json once done",
            )
        if entries:
            oldest = entries[0].saved_at
            age = _age_seconds(oldest)
            detail = f"{len(entries)} save(s) waiting for upload, oldest saved {oldest}"
            if age is not None and age > 3600:
                add(
                    "pending",
                    "WARN",
                    detail,
                    "uploads are not draining: is the server running? see GET /api/bookstore "
                    "and the server log for the S3 error",
                )
            else:
                add("pending", "OK", detail)
        else:
            add("pending", "OK", "no saves waiting for upload")
        if corrupt:
            add(
                "corrupt",
                "WARN",
                f"{corrupt} unreadable entr(y/ies) set aside in {corrupt_dir}",
                "inspect them; they are never uploaded or deleted automatically",
            )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _age_seconds(iso: str) -> float | None:
    from .history import parse_time

    when = parse_time(iso)
    if when is None:
        return None
    return (datetime.now(timezone.utc) - when).total_seconds()


async def _default_credentials_method() -> str | None:
    from aiobotocore.session import get_session

    try:
        creds = await get_session().get_credentials()
    except Exception:
        return None
    if creds is None:
        return None
    return str(getattr(creds, "method", "found"))


def _read_file(path: str, max_bytes: int | None = None) -> bytes:
    """A local file's bytes; over ``max_bytes`` a CommandError naming the setting."""
    with open(path, "rb") as f:
        if max_bytes is None:
            return f.read()
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise CommandError(
            f"{path} is larger than the read limit of {max_bytes} bytes; raise "
            f"c.BookstoreSettings.max_read_bytes (--BookstoreSettings.max_read_bytes=N) to read it"
        )
    return data


def _move_into_place(tmp: str, path: str) -> None:
    """Give ``tmp`` the mode ``path`` has (or a new file's), then rename it over ``path``."""
    if os.path.exists(path):
        os.chmod(tmp, os.stat(path).st_mode & 0o7777)
    else:
        os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _write_file(path: str, data: bytes) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bookstore-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


SUBCOMMANDS: dict[str, type[BookstoreCommand]] = {
    "versions": VersionsCommand,
    "show": ShowCommand,
    "diff": DiffCommand,
    "restore": RestoreCommand,
    "publish": PublishCommand,
    "clone": CloneCommand,
    "doctor": DoctorCommand,
    "run": RunCommand,
    "runs": RunsCommand,
}

#: Subcommands of other modules, which build on this one: imported when used.
LAZY_SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "prune": (
        "bookstore.cli_prune.PruneCommand",
        "Thin out old versions under a retention policy (a dry run unless --yes).",
    ),
    "pin": ("bookstore.cli_prune.PinCommand", "Pin a version: bookstore prune never deletes it."),
    "unpin": (
        "bookstore.cli_prune.UnpinCommand",
        "Unpin a version, so bookstore prune may delete it again.",
    ),
    "usage": (
        "bookstore.cli_prune.UsageCommand",
        "Bytes and versions per path and in total, and growth per day over the last week.",
    ),
}


class BookstoreApp(JupyterApp):
    """``bookstore``: the entry point, dispatching to the subcommands."""

    name = "bookstore"
    version = __version__
    description = DESCRIPTION
    # `bookstore --help-all` lists every server option: `jupyter server --help-all` cannot
    # (Jupyter prints it before it loads any extension).
    classes = [BookstoreSettings]
    examples = """
    bookstore versions analysis/report.ipynb --limit=5
    bookstore diff analysis/report.ipynb VERSION_ID
    bookstore restore analysis/report.ipynb --version=VERSION_ID
    JUPYTER_CONFIG_DIR=.demo/jupyter/config bookstore doctor
    """
    subcommands = {
        **{
            name: (cls, (cls.__doc__ or "").strip().splitlines()[0])
            for name, cls in SUBCOMMANDS.items()
        },
        **LAZY_SUBCOMMANDS,
    }

    def _find_subcommand(self, name: str) -> str:
        return ""

    def migrate_config(self) -> None:
        pass

    def start(self) -> None:
        if self.subapp is None:
            self.print_subcommands()
            sys.stderr.write("bookstore: give a subcommand, e.g. `bookstore versions PATH`\n")
            self.exit(2)
        super().start()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit status."""
    from jupyter_core.application import NoStart

    app = BookstoreApp()
    try:
        app.initialize(list(argv) if argv is not None else None)
        app.start()
    except NoStart:
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        apps: list[type[JupyterApp]] = [*SUBCOMMANDS.values(), BookstoreApp]
        retention = sys.modules.get("bookstore.cli_prune")
        if retention is not None:
            apps += list(retention.SUBCOMMANDS.values())
        for cls in apps:
            cls.clear_instance()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
