"""``bookstore versions``, ``show``, ``diff`` and ``restore``: a file's history."""

from __future__ import annotations

import hashlib
import sys
from typing import Any

from traitlets import Bool, Enum, Integer, Unicode

from ..history import (
    META_RESTORED_FROM,
    VersionHistory,
    VersionRecord,
    contents_model,
    is_notebook_path,
    parse_notebook,
    validate_version_id,
)
from ..metadata import content_type_for, object_metadata
from ..render import cell_changes, human_size, metadata_changed, strip_ansi, text_diff
from ..s3 import PutResult, S3Store
from ..services import restore_version
from ..settings import BookstoreSettings
from ..spool import (
    new_save_id,
)
from ..threads import in_thread
from ..times import utcnow_iso
from .base import (
    BookstoreCommand,
    CommandError,
    command_help,
    common_aliases,
    common_flags,
)
from .files import read_local_file, write_local_file
from .output import Progress, collect_pages, plural, short_time, table


class LocalRestore:
    """:class:`bookstore.services.RestoreTarget` of ``bookstore restore``: the local file
    (atomically), then, unless ``upload`` is off, the newest workspace version at once."""

    def __init__(
        self, settings: BookstoreSettings, store: S3Store, local: str, *, upload: bool
    ) -> None:
        self.settings = settings
        self.store = store
        self.local = local
        self.upload = upload
        self.data = b""
        self.result: PutResult | None = None

    async def stream(self, *args: Any) -> None:
        return None  # the CLI reads the version (within max_read_bytes), then writes it

    async def write(
        self, path: str, data: bytes, notebook: dict[str, Any] | None, version_id: str
    ) -> dict[str, Any]:
        self.data = data
        await in_thread(write_local_file, self.local, data)
        if self.upload:
            metadata = object_metadata(
                sha256=hashlib.sha256(data).hexdigest(),
                saved_at=utcnow_iso(),
                user=self.settings.username,
                path=path,
                save_id=new_save_id(),
                extra={META_RESTORED_FROM: version_id},
            )
            self.result = await self.store.put_object(
                self.settings.s3_key("workspace", path),
                data,
                metadata,
                content_type=content_type_for(path),
            )
        return {"local_path": self.local}


# --- subcommands --------------------------------------------------------------------------------


class HistoryCommand(BookstoreCommand):
    """Base of the commands on one file's history: its prefix, its :class:`VersionHistory`."""

    prefix = Enum(
        ["workspace", "published"], "workspace", help="Which prefix: workspace or published."
    ).tag(config=True)

    def history_of(
        self, settings: BookstoreSettings, store: S3Store, args: list[str]
    ) -> tuple[str, VersionHistory]:
        """The Jupyter path given (``args[0]``) and the version history to read it from."""
        self.need_bucket(settings)
        return self.api_path(args[0]), VersionHistory(settings, store)


class VersionsCommand(HistoryCommand):
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

    limit = Integer(
        0, help="Show at most this many versions, the newest (0, or --all: every one)."
    ).tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        path, history = self.history_of(settings, store, args)
        listing = None

        async def fetch(size: int, token: str | None) -> tuple[list[VersionRecord], str | None]:
            nonlocal listing
            listing = await history.listing(
                path,
                prefix=self.prefix,
                limit=size,
                page_token=token,
                on_fetched=progress.advance,
            )
            return listing.versions, listing.next_token

        with Progress("listing versions") as progress:
            records, token = await collect_pages(fetch, self.limit)
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


class ShowCommand(HistoryCommand):
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
    raw = Bool(False, help="Write the stored bytes to stdout.").tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        path, history = self.history_of(settings, store, args)
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


class DiffCommand(HistoryCommand):
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

    show_unchanged = Bool(False, help="Also show unchanged cells.").tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        path, history = self.history_of(settings, store, args)
        if not is_notebook_path(path):
            raise CommandError(f"{path} is not a notebook (.ipynb): only notebooks are diffed")
        a = validate_version_id(args[1], "A")
        b = validate_version_id(args[2], "B") if len(args) > 2 else None
        current = None
        if b is None:
            local = self.local_path(path)
            try:
                data = await in_thread(read_local_file, local, settings.max_read_bytes)
            except FileNotFoundError as e:
                raise CommandError(f"no local file {local} to compare with: give B") from e
            current = await in_thread(parse_notebook, data, local)
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


class RestoreCommand(HistoryCommand):
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
    local_only = Bool(False, help="Only write the local file.").tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        path, history = self.history_of(settings, store, args)
        if not self.version_id:
            self.usage_error("give the version to restore: --version ID")
        version_id = validate_version_id(self.version_id, "--version")
        local = self.local_path(path)
        target = LocalRestore(settings, store, local, upload=not self.local_only)
        with Progress("restoring", total=2) as progress:
            await restore_version(
                history, path, version_id, self.prefix, target, on_read=progress.advance
            )
            progress.advance()
        data, result = target.data, target.result
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
