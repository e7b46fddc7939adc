"""Retention policies: which versions of a path to keep, with restic's ``forget`` rules.

Pure logic, no I/O: :class:`RetentionPolicy` holds the rules, :class:`PolicyRun` decides
about one path's versions fed to it newest first (one at a time, so a path with a million
versions needs no more memory than one with ten), and :func:`apply_policy` does it for a
list. ``bookstore prune`` (:mod:`bookstore.prune`) adds what a policy never decides alone:
the newest version, pinned versions and the published and runs prefixes are never deleted.

The rules are restic's (``internal/restic/snapshot_policy.go``):

* ``last N`` keeps the N newest versions.
* ``hourly/daily/weekly/monthly/yearly N``: going back from the newest version, keep the
  newest version of each hour (day, ISO week, month, year) that has one, for N such
  periods. Periods without a version do not count. If a rule still has periods left when
  the oldest version is reached, the oldest version is kept too (the longest history).
* ``within DURATION`` keeps every version newer than the reference time minus DURATION.
* ``within_hourly/daily/... DURATION`` keeps the newest version of each period, for the
  periods newer than the reference time minus DURATION.

Two deliberate differences from restic, both documented in ``docs/retention.md``:

* The reference time of the ``within`` rules is *now* (the clock, or ``--now``), where
  restic uses the newest snapshot's time. restic does that so a machine that stopped
  backing up keeps its history; here the newest version of a path is never deleted
  anyway, and measuring from now makes ``--now`` a true preview ("as of next month") and
  "every save of the last week" mean the calendar week.
* Periods are taken in UTC (S3's ``LastModified``), where restic uses the local time zone.

Durations are restic's: a number and a unit, repeated: ``y`` years, ``m`` months, ``d``
days, ``h`` hours (``1y6m``, ``7d``, ``36h``); ``w`` weeks is accepted as 7 days.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

#: Count rules, in restic's order, with the function mapping a time to its period.
COUNT_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
#: Duration rules.
WITHIN_RULES = (
    "within",
    "within_hourly",
    "within_daily",
    "within_weekly",
    "within_monthly",
    "within_yearly",
)
RULES = COUNT_RULES + WITHIN_RULES

_DURATION_RE = re.compile(r"(\d+)([ymwdh])")


class PolicyError(ValueError):
    """A retention policy or duration that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Duration:
    """A restic duration: years, months, days and hours (calendar-aware)."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    @classmethod
    def parse(cls, text: str) -> Duration:
        """``"1y2m3d4h"`` (any subset, in any order; ``w`` = 7 days)."""
        raw = str(text).strip().lower()
        if not raw:
            raise PolicyError("a duration must not be empty: use e.g. 7d, 36h, 1y6m")
        pos = 0
        values = {"y": 0, "m": 0, "d": 0, "h": 0}
        for m in _DURATION_RE.finditer(raw):
            if m.start() != pos:
                break
            pos = m.end()
            n, unit = int(m.group(1)), m.group(2)
            if unit == "w":
                values["d"] += 7 * n
            else:
                values[unit] += n
        if pos != len(raw):
            raise PolicyError(
                f"{text!r} is not a duration: use numbers with the units y (years), m (months), "
                f"d (days), h (hours) or w (weeks), e.g. 7d, 36h, 1y6m"
            )
        return cls(values["y"], values["m"], values["d"], values["h"])

    @property
    def zero(self) -> bool:
        return not (self.years or self.months or self.days or self.hours)

    def before(self, when: datetime) -> datetime:
        """``when`` minus this duration (months and years by the calendar, like Go's AddDate)."""
        total_months = when.month - 1 - self.months - 12 * self.years
        year = when.year + total_months // 12
        month = total_months % 12 + 1
        # Go's AddDate normalises Jan 31 - 1 month to Mar 3 (overflow); clamping to the
        # month's last day is the same to within a few days and never produces an error.
        day = min(when.day, calendar.monthrange(year, month)[1])
        shifted = when.replace(year=year, month=month, day=day)
        return shifted - timedelta(days=self.days, hours=self.hours)

    def __str__(self) -> str:
        parts = [
            f"{n}{u}"
            for n, u in (
                (self.years, "y"),
                (self.months, "m"),
                (self.days, "d"),
                (self.hours, "h"),
            )
            if n
        ]
        return "".join(parts) or "0h"


def _hour(t: datetime, nr: int) -> int:
    return t.year * 1_000_000 + t.month * 10_000 + t.day * 100 + t.hour


def _day(t: datetime, nr: int) -> int:
    return t.year * 10_000 + t.month * 100 + t.day


def _week(t: datetime, nr: int) -> int:
    year, week, _ = t.isocalendar()
    return year * 100 + week


def _month(t: datetime, nr: int) -> int:
    return t.year * 100 + t.month


def _year(t: datetime, nr: int) -> int:
    return t.year


def _always(t: datetime, nr: int) -> int:
    return nr


_PERIOD: dict[str, Callable[[datetime, int], int]] = {
    "last": _always,
    "hourly": _hour,
    "daily": _day,
    "weekly": _week,
    "monthly": _month,
    "yearly": _year,
}


@dataclass(frozen=True)
class RetentionPolicy:
    """Which versions to keep. Counts: 0 = rule off, -1 = unlimited (as in restic)."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration = field(default_factory=Duration)
    within_hourly: Duration = field(default_factory=Duration)
    within_daily: Duration = field(default_factory=Duration)
    within_weekly: Duration = field(default_factory=Duration)
    within_monthly: Duration = field(default_factory=Duration)
    within_yearly: Duration = field(default_factory=Duration)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RetentionPolicy:
        """A policy from ``{"keep_last": 10, "keep_within": "7d", ...}``.

        Names may be given with or without ``keep_`` and with ``-`` for ``_``, so the
        flags' names (``keep-daily``) work as keys too. Unknown names are an error.
        """
        if not isinstance(values, Mapping):
            raise PolicyError(f"a retention policy is a dict of rules (got {values!r})")
        kwargs: dict[str, Any] = {}
        for raw_name, value in values.items():
            name = str(raw_name).replace("-", "_")
            name = name[len("keep_") :] if name.startswith("keep_") else name
            if name not in RULES:
                known = ", ".join(f"keep_{r}" for r in RULES)
                raise PolicyError(f"unknown retention rule {raw_name!r}: use {known}")
            if name in kwargs:
                raise PolicyError(f"retention rule {name!r} given twice")
            if name in COUNT_RULES:
                kwargs[name] = parse_count(value, f"keep_{name}")
            else:
                kwargs[name] = value if isinstance(value, Duration) else Duration.parse(value)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The rules that are on, as ``{"keep_<rule>": value}`` (durations as text)."""
        out: dict[str, Any] = {}
        for name in COUNT_RULES:
            if getattr(self, name):
                out[f"keep_{name}"] = getattr(self, name)
        for name in WITHIN_RULES:
            if not getattr(self, name).zero:
                out[f"keep_{name}"] = str(getattr(self, name))
        return out

    @property
    def empty(self) -> bool:
        return not self.to_dict()

    def describe(self) -> str:
        """One line for humans, e.g. ``keep 10 last, 7 daily; all within 7d of now``."""
        counts = []
        for name in COUNT_RULES:
            n = getattr(self, name)
            if n:
                counts.append(f"{'all' if n == -1 else n} {name}")
        withins = []
        for name in WITHIN_RULES:
            d = getattr(self, name)
            if not d.zero:
                what = "all" if name == "within" else name.split("_", 1)[1]
                withins.append(f"{what} within {d} of now")
        parts = []
        if counts:
            parts.append(", ".join(counts))
        if withins:
            parts.append(", ".join(withins))
        return "keep " + "; ".join(parts) if parts else "no rules (keeps everything)"


def parse_count(value: Any, name: str) -> int:
    """A rule's count: a whole number >= 0, or -1 (or "unlimited") for no limit."""
    if isinstance(value, str) and value.strip().lower() in {"unlimited", "all"}:
        return -1
    if isinstance(value, bool):
        raise PolicyError(f"{name} must be a whole number (got {value!r})")
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise PolicyError(f"{name} must be a whole number (got {value!r})") from None
    if n != value and not isinstance(value, str):
        raise PolicyError(f"{name} must be a whole number (got {value!r})")
    if n < -1:
        raise PolicyError(f"{name} must be >= 0, or -1 for unlimited (got {n})")
    return n


@dataclass
class Item:
    """One version as the policy sees it."""

    version_id: str
    time: datetime
    size: int = 0


@dataclass
class Decision:
    """The verdict on one version: kept (with the rules that kept it) or removed."""

    item: Item
    keep: bool
    reasons: list[str] = field(default_factory=list)


def as_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


class PolicyRun:
    """Applies a policy to one path's versions, fed newest first, one at a time.

    ``decide(item, oldest)`` must be told whether ``item`` is the last (oldest) one; the
    caller looks one version ahead. Deleting a removed version never changes the verdict
    on the others (a removed version leaves every rule's state untouched), so running the
    same policy again after a partial prune removes exactly the rest.
    """

    def __init__(self, policy: RetentionPolicy, now: datetime) -> None:
        if policy.empty:
            raise PolicyError("the retention policy is empty: it would keep every version")
        self.policy = policy
        self.now = as_utc(now)
        self._nr = 0
        self._counts = {name: getattr(policy, name) for name in COUNT_RULES}
        self._last: dict[str, int | None] = {name: None for name in COUNT_RULES}
        self._within_last: dict[str, int | None] = {name: None for name in WITHIN_RULES}
        self._cutoffs = {
            name: getattr(policy, name).before(self.now)
            for name in WITHIN_RULES
            if not getattr(policy, name).zero
        }
        self._previous: datetime | None = None

    def decide(self, item: Item, oldest: bool = False) -> Decision:
        when = as_utc(item.time)
        if self._previous is not None and when > self._previous:
            raise PolicyError(
                f"versions must be given newest first: {item.version_id} ({when.isoformat()}) "
                f"is newer than the version before it ({self._previous.isoformat()})"
            )
        self._previous = when
        nr = self._nr
        self._nr += 1
        reasons: list[str] = []
        cutoff = self._cutoffs.get("within")
        if cutoff is not None and when > cutoff:
            reasons.append(f"within {self.policy.within}")
        for name in COUNT_RULES:
            count = self._counts[name]
            if count == 0:
                continue
            value = _PERIOD[name](when, nr)
            if value != self._last[name]:
                reasons.append(name)
            elif oldest:
                # restic keeps the oldest version while a rule has periods left.
                reasons.append(f"{name} (oldest)")
            else:
                continue
            self._last[name] = value
            if count > 0:
                self._counts[name] = count - 1
        for name, cutoff in self._cutoffs.items():
            if name == "within" or when <= cutoff:
                continue
            period = name.split("_", 1)[1]
            value = _PERIOD[period](when, nr)
            if value != self._within_last[name]:
                self._within_last[name] = value
                reasons.append(f"{period} within {getattr(self.policy, name)}")
        return Decision(item, bool(reasons), reasons)


def apply_policy(items: Iterable[Item], policy: RetentionPolicy, now: datetime) -> list[Decision]:
    """Decide about every version of one path; ``items`` newest first."""
    run = PolicyRun(policy, now)
    return list(decide_all(run, items))


def decide_all(run: PolicyRun, items: Iterable[Item]) -> Iterator[Decision]:
    """Feed ``items`` (newest first) to ``run`` with one item of look-ahead."""
    iterator = iter(items)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield run.decide(current, oldest=False)
        current = following
    yield run.decide(current, oldest=True)
