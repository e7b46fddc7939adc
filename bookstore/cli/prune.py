"""``bookstore prune``, ``pin``, ``unpin`` and ``usage``: retention from the command line.

The work is done by :mod:`bookstore.prune`; these commands parse the flags and print.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any

from jupyter_client.jsonutil import json_default
from traitlets import Bool, Enum, Unicode

from ..prune import (
    PRUNE_PREFIXES,
    PathSummary,
    PruneListener,
    PruneResult,
    VersionVerdict,
    expanded_prefix,
    prune,
    set_pin,
    usage,
)
from ..render import human_size
from ..retention import COUNT_RULES, WITHIN_RULES, PolicyError, RetentionPolicy
from ..s3 import S3NotFound, S3Store
from ..settings import BookstoreSettings
from ..times import human_time, isoformat, parse_time
from ..validators import validate_version_id
from .base import BookstoreCommand, CommandError, UsageError, common_aliases, common_flags
from .output import Progress, table


def _when(value: datetime) -> str:
    return human_time(value)


def parse_now(text: str) -> datetime:
    """``--now``: an ISO 8601 time (``Z`` or an offset; UTC when none)."""
    when = parse_time(text.strip())
    if when is None:
        raise UsageError(f"--now {text!r} is not a time: use ISO 8601, e.g. 2025-06-01T12:00:00Z")
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when


_prefix_help = (
    "Which prefix: workspace (the default), published or runs. The published and runs "
    "prefixes are only ever pruned when named here."
)

_rule_aliases = {
    f"keep-{r.replace('_', '-')}": f"PruneCommand.keep_{r}" for r in COUNT_RULES + WITHIN_RULES
}


def _count_rule(periods: str) -> Unicode:
    return Unicode(
        "", help=f"Keep the newest version of each of the last N {periods} that have one."
    ).tag(config=True)


def _within_rule(period: str) -> Unicode:
    return Unicode("", help=f"Keep one version per {period} within DURATION.").tag(config=True)


class PruneCommand(BookstoreCommand):
    """Thin out old versions under a retention policy (a dry run unless --yes)."""

    name = "bookstore-prune"
    description = (
        "Thin out the versions of PATH, or of every path under the prefix, with restic's "
        "`forget` rules: --keep-last N, --keep-hourly N, --keep-daily N, --keep-weekly N, "
        "--keep-monthly N, --keep-yearly N (-1: unlimited), --keep-within DURATION (e.g. 7d, "
        "36h, 1y6m) and --keep-within-hourly/daily/weekly/monthly/yearly DURATION. Without "
        "flags, c.BookstoreSettings.retention is the policy. Never deleted: the newest "
        "version of a path, pinned versions (bookstore pin), and the published and runs "
        "prefixes unless named with --prefix. A dry run unless --yes. See docs/retention.md."
    )
    optional_arguments = ("PATH",)
    aliases = {
        **common_aliases,
        **_rule_aliases,
        "now": "PruneCommand.now",
        "prefix": "PruneCommand.prefix",
    }
    flags = {
        **common_flags,
        "yes": ({"PruneCommand": {"yes": True}}, "Delete the removed versions (default: dry run)."),
        "dry-run": ({"PruneCommand": {"yes": False}}, "Only show what would be deleted (default)."),
    }

    now = Unicode(
        "",
        help=(
            "Apply the policy as of this time (ISO 8601, e.g. 2025-06-01T00:00:00Z) instead "
            "of the clock: a preview of what a later run would remove. The keep-within rules "
            "count back from it."
        ),
    ).tag(config=True)
    prefix = Enum(list(PRUNE_PREFIXES), "workspace", help=_prefix_help).tag(config=True)
    yes = Bool(False, help="Really delete (without it, a dry run).").tag(config=True)
    keep_last = Unicode("", help="Keep the N newest versions.").tag(config=True)
    keep_hourly = _count_rule("hours")
    keep_daily = _count_rule("days")
    keep_weekly = _count_rule("weeks")
    keep_monthly = _count_rule("months")
    keep_yearly = _count_rule("years")
    keep_within = Unicode("", help="Keep every version newer than now minus DURATION.").tag(
        config=True
    )
    keep_within_hourly = _within_rule("hour")
    keep_within_daily = _within_rule("day")
    keep_within_weekly = _within_rule("week")
    keep_within_monthly = _within_rule("month")
    keep_within_yearly = _within_rule("year")

    def policy(self, settings: BookstoreSettings) -> RetentionPolicy:
        given = {
            f"keep_{r}": getattr(self, f"keep_{r}")
            for r in COUNT_RULES + WITHIN_RULES
            if getattr(self, f"keep_{r}") != ""
        }
        try:
            policy = RetentionPolicy.from_dict(given) if given else settings.retention_policy
        except PolicyError as e:
            raise UsageError(str(e).replace("keep_", "--keep-").replace("_", "-")) from e
        if policy.empty:
            raise UsageError(
                "no retention policy: give --keep-* flags (e.g. --keep-within 7d --keep-daily "
                "30) or set c.BookstoreSettings.retention; see docs/retention.md"
            )
        return policy

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        self.need_bucket(settings)
        policy = self.policy(settings)
        now = parse_now(self.now) if self.now else datetime.now(timezone.utc)
        path = self.api_path(args[0]) if args else None
        base = expanded_prefix(settings, self.prefix)
        where = (
            f"s3://{settings.s3_bucket}/{base}/{path}"
            if path
            else f"s3://{settings.s3_bucket}/{base}/"
        )
        dry_run = not self.yes
        out = sys.stdout
        with Progress("pruning") as progress:
            listener: _Printer
            if self.json_output:
                listener = _JsonPrinter(out, progress)
                out.write(
                    "{"
                    + json.dumps(
                        {
                            "where": where,
                            "prefix": self.prefix,
                            "policy": policy.to_dict(),
                            "now": isoformat(now),
                            "dry_run": dry_run,
                        }
                    )[1:-1]
                    + ', "paths": ['
                )
            else:
                listener = _TextPrinter(out, progress)
                out.write(f"{where}\n{policy.describe()}, as of {_when(now)} UTC\n")
                if dry_run:
                    out.write("Dry run: nothing is deleted. Pass --yes to delete.\n")
            out.flush()
            result = await prune(
                store,
                settings,
                policy,
                now=now,
                prefix=self.prefix,
                path=path,
                dry_run=dry_run,
                listener=listener,
            )
        if self.json_output:
            out.write('], "result": ' + json.dumps(result.to_json(), default=json_default) + "}\n")
        else:
            out.write(_result_text(result, path))
        out.flush()
        if path and result.paths == 0 and result.failure is None:
            raise CommandError(f"no versions of {path!r} under {where}")
        if result.failure is not None:
            raise CommandError(
                f"stopped partway: {result.failure}. {result.deleted} version(s) were deleted "
                f"before that and nothing else changed; run the same command again to finish"
            )
        if result.refused_count:
            first = result.refused[0]
            raise CommandError(
                f"S3 refused to delete {result.refused_count} version(s) ({first['code']}: "
                f"{first['message']}): the bucket may have Object Lock or a policy that denies "
                f"s3:DeleteObjectVersion; see docs/retention.md"
            )


def _result_text(result: PruneResult, path: str | None) -> str:
    lines = [
        "",
        f"Total: {result.paths} path(s), {result.versions} version(s): keep {result.kept}, "
        f"remove {result.removed} ({human_size(result.bytes_removed)}).",
    ]
    if result.dry_run:
        if result.removed:
            lines.append("Dry run: nothing was deleted. Run again with --yes to delete them.")
    else:
        lines.append(
            f"Deleted {result.deleted} version(s) ({human_size(result.bytes_deleted)}) in "
            f"{result.delete_requests} request(s)."
        )
        if result.pinned_late:
            lines.append(
                f"Kept {result.pinned_late} version(s) pinned while the prune ran (after the "
                f"plan above, before their deletion)."
            )
        if result.pins_indexed or result.pins_unindexed:
            lines.append(
                f"Pin index repaired from the tags: {result.pins_indexed} pin(s) added, "
                f"{result.pins_unindexed} removed (set or removed by another tool)."
            )
    return "\n".join(lines) + "\n"


class _Printer(PruneListener):
    def __init__(self, out: Any, progress: Progress) -> None:
        self.out = out
        self.progress = progress

    def deleted(self, count: int, total: int) -> None:
        self.progress.label = f"pruning ({total} deleted)"

    def pinned_late(self, key: str, version_id: str) -> None:
        clear = "\r\033[K" if self.progress.enabled else ""
        self.progress.stream.write(
            f"{clear}kept {key} version {version_id}: pinned while pruning\n"
        )


class _TextPrinter(_Printer):
    """One table per path: the kept versions and why; counts of the removed ones."""

    def __init__(self, out: Any, progress: Progress) -> None:
        super().__init__(out, progress)
        self.kept: list[VersionVerdict] = []

    def path_started(self, key: str, path: str) -> None:
        self.kept = []

    def version(self, verdict: VersionVerdict) -> None:
        self.progress.advance()
        if verdict.keep:
            self.kept.append(verdict)

    def path_done(self, summary: PathSummary) -> None:
        rows = [
            [v.version_id, _when(v.last_modified), human_size(v.size), ", ".join(v.reasons)]
            for v in self.kept
        ]
        self.out.write(
            f"\n{summary.path}: {summary.versions} version(s), keep {summary.kept}, remove "
            f"{summary.removed} ({human_size(summary.bytes_removed)})\n"
        )
        self.out.write(table(rows, ["KEPT VERSION", "SAVED (UTC)", "SIZE", "KEPT BECAUSE"]))
        self.out.flush()
        self.kept = []


class _JsonPrinter(_Printer):
    """Streams ``{"path", "key", "versions": [...], "summary"}`` objects."""

    def __init__(self, out: Any, progress: Progress) -> None:
        super().__init__(out, progress)
        self.first_path = True
        self.first_version = True

    def path_started(self, key: str, path: str) -> None:
        sep = "" if self.first_path else ", "
        self.first_path = False
        self.first_version = True
        self.out.write(
            f'{sep}{{"path": {json.dumps(path)}, "key": {json.dumps(key)}, "versions": ['
        )

    def version(self, verdict: VersionVerdict) -> None:
        self.progress.advance()
        sep = "" if self.first_version else ", "
        self.first_version = False
        self.out.write(sep + json.dumps(verdict.to_json()))

    def path_done(self, summary: PathSummary) -> None:
        self.out.write('], "summary": ' + json.dumps(summary.to_json()) + "}")


class _PinCommand(BookstoreCommand):
    arguments = ("PATH", "VERSION")
    pin = True

    prefix = Enum(list(PRUNE_PREFIXES), "workspace", help="Which prefix.").tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        self.need_bucket(settings)
        path = self.api_path(args[0])
        version_id = validate_version_id(args[1], "VERSION")
        try:
            answer = await set_pin(store, settings, path, version_id, self.pin, self.prefix)
        except S3NotFound as e:
            raise CommandError(
                f"version {version_id} of {path} does not exist under the {self.prefix} prefix "
                f"(list them: bookstore versions {path})"
            ) from e
        verb = "pinned" if self.pin else "unpinned"
        if answer["changed"]:
            text = f"{verb} version {version_id} of {answer['s3_path']}\n"
        else:
            text = f"version {version_id} of {answer['s3_path']} was already {verb}\n"
        self.emit(answer, text)


class PinCommand(_PinCommand):
    """Pin a version: bookstore prune never deletes it."""

    name = "bookstore-pin"
    description = (
        "Pin VERSION of PATH (S3 object tag bookstore-pinned=true): bookstore prune never "
        "deletes it, and the history page and API show it."
    )
    aliases = {**common_aliases, "prefix": "PinCommand.prefix"}


class UnpinCommand(_PinCommand):
    """Unpin a version, so bookstore prune may delete it again."""

    name = "bookstore-unpin"
    description = "Remove the pin of VERSION of PATH, so bookstore prune may delete it again."
    aliases = {**common_aliases, "prefix": "UnpinCommand.prefix"}
    pin = False


class UsageCommand(BookstoreCommand):
    """Bytes and versions per path and in total, and growth per day over the last week."""

    name = "bookstore-usage"
    description = (
        "Report the bytes and version counts per path and in total under the prefix, and "
        "what each of the last 7 days (UTC) added."
    )
    aliases = {**common_aliases, "prefix": "UsageCommand.prefix", "now": "UsageCommand.now"}

    prefix = Enum(list(PRUNE_PREFIXES), "workspace", help="Which prefix to measure.").tag(
        config=True
    )
    now = Unicode("", help="Count the last 7 days back from this time (ISO 8601).").tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        self.need_bucket(settings)
        now = parse_now(self.now) if self.now else None
        with Progress("measuring"):
            report = await usage(store, settings, prefix=self.prefix, now=now)
        rows = [
            [
                p.path,
                p.versions,
                human_size(p.bytes),
                _when(p.newest) if p.newest else "",
            ]
            for p in report.paths
        ]
        text = (
            f"s3://{settings.s3_bucket}/{report.s3_prefix}: {len(report.paths)} path(s), "
            f"{report.versions} version(s), {human_size(report.bytes)}\n"
        )
        if rows:
            text += "\n" + table(rows, ["PATH", "VERSIONS", "SIZE", "NEWEST (UTC)"])
        text += "\nGrowth over the last 7 days (UTC):\n" + table(
            [[d, n, human_size(b)] for d, n, b in report.days], ["DAY", "VERSIONS", "ADDED"]
        )
        text += f"Average: {human_size(int(report.bytes_per_day))} per day.\n"
        if settings.retention_policy.empty:
            text += (
                "No retention policy is set: every version is kept forever. See "
                "docs/retention.md (c.BookstoreSettings.retention, bookstore prune).\n"
            )
        self.emit(report.to_json(), text)
