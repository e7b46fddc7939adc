"""The retention policy (pure logic): restic's ``forget`` rules on synthetic times."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from traitlets import TraitError

from bookstore.retention import (
    Duration,
    Item,
    PolicyError,
    RetentionPolicy,
    apply_policy,
)
from bookstore.settings import BookstoreSettings


def t(text: str) -> datetime:
    """``"2024-01-08 10:00"`` in UTC."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)


def items(*times: str) -> list[Item]:
    """Versions ``v0`` (newest) ... from times given newest first."""
    return [Item(f"v{i}", t(when), 100) for i, when in enumerate(times)]


def verdicts(policy: dict[str, object], versions: list[Item], now: str) -> dict[str, list[str]]:
    """version id -> reasons it was kept; removed versions are left out."""
    decisions = apply_policy(versions, RetentionPolicy.from_dict(policy), t(now))
    assert [d.item.version_id for d in decisions] == [v.version_id for v in versions]
    return {d.item.version_id: d.reasons for d in decisions if d.keep}


NOW = "2024-06-30 12:00"


# --- each rule alone --------------------------------------------------------------------------


def test_keep_last_keeps_the_n_newest() -> None:
    kept = verdicts({"keep_last": 3}, items(*[f"2024-01-0{d} 10:00" for d in range(9, 3, -1)]), NOW)
    assert kept == {"v0": ["last"], "v1": ["last"], "v2": ["last"]}


def test_keep_hourly_counts_hours_that_have_a_version() -> None:
    versions = items(
        "2024-01-08 10:50", "2024-01-08 10:20", "2024-01-08 09:40", "2024-01-08 09:10",
        "2024-01-08 07:30", "2024-01-08 07:00",
    )  # fmt: skip
    # Hour 8 has no version and does not use up one of the two.
    assert verdicts({"keep_hourly": 2}, versions, NOW) == {"v0": ["hourly"], "v2": ["hourly"]}
    assert verdicts({"keep_hourly": 3}, versions, NOW) == {
        "v0": ["hourly"],
        "v2": ["hourly"],
        "v4": ["hourly"],
    }


def test_a_rule_with_periods_left_keeps_the_oldest_version() -> None:
    versions = items("2024-01-08 10:50", "2024-01-08 10:20", "2024-01-08 10:05")
    assert verdicts({"keep_hourly": 5}, versions, NOW) == {
        "v0": ["hourly"],
        "v2": ["hourly (oldest)"],
    }
    # Unlimited (-1) always has periods left.
    assert verdicts({"keep_daily": -1}, items("2024-01-08 10:50", "2024-01-08 09:00"), NOW) == {
        "v0": ["daily"],
        "v1": ["daily (oldest)"],
    }


def test_keep_daily() -> None:
    versions = items("2024-01-03 12:00", "2024-01-03 08:00", "2024-01-02 20:00", "2024-01-01 10:00")
    assert verdicts({"keep_daily": 2}, versions, NOW) == {"v0": ["daily"], "v2": ["daily"]}


def test_keep_weekly_uses_iso_weeks_across_the_year_end() -> None:
    # Mon 2024-12-30 and Thu 2025-01-02 are both in ISO week 2025-W01; Sun 2024-12-29 is
    # in 2024-W52.
    versions = items("2025-01-02 10:00", "2024-12-30 10:00", "2024-12-29 10:00")
    assert verdicts({"keep_weekly": 5}, versions, NOW) == {"v0": ["weekly"], "v2": ["weekly"]}
    # Sunday ends the week: 2024-01-07 (W01) and Monday 2024-01-08 (W02).
    versions = items("2024-01-08 00:30", "2024-01-07 23:30", "2024-01-01 09:00")
    assert verdicts({"keep_weekly": 2}, versions, NOW) == {"v0": ["weekly"], "v1": ["weekly"]}


def test_keep_monthly_and_yearly() -> None:
    versions = items(
        "2024-03-02 10:00", "2024-03-01 10:00", "2024-02-29 10:00", "2023-12-31 10:00",
        "2023-01-01 10:00", "2022-06-01 10:00",
    )  # fmt: skip
    assert verdicts({"keep_monthly": 3}, versions, NOW) == {
        "v0": ["monthly"],
        "v2": ["monthly"],
        "v3": ["monthly"],
    }
    assert verdicts({"keep_yearly": 2}, versions, NOW) == {"v0": ["yearly"], "v3": ["yearly"]}


def test_keep_within_counts_back_from_now() -> None:
    versions = items("2024-06-29 12:00", "2024-06-23 13:00", "2024-06-23 12:00", "2024-06-20 00:00")
    # Strictly newer than now - 7d (2024-06-23 12:00), like restic.
    assert verdicts({"keep_within": "7d"}, versions, NOW) == {
        "v0": ["within 7d"],
        "v1": ["within 7d"],
    }


def test_keep_within_reference_is_now_not_the_newest_version() -> None:
    # restic would keep all three (they are within 7d of the newest); bookstore measures
    # from now, so --now a month later previews what ages out (the newest version is
    # protected by prune, not by the policy).
    versions = items("2024-01-03 10:00", "2024-01-02 10:00", "2024-01-01 10:00")
    assert verdicts({"keep_within": "7d"}, versions, "2024-01-04 00:00") == {
        "v0": ["within 7d"],
        "v1": ["within 7d"],
        "v2": ["within 7d"],
    }
    assert verdicts({"keep_within": "7d"}, versions, "2024-02-04 00:00") == {}


def test_keep_within_months_is_calendar_aware() -> None:
    # 2024-03-31 minus one month is 2024-02-29 (clamped to the month's last day).
    versions = items("2024-03-01 00:00", "2024-02-29 00:01", "2024-02-28 23:59")
    assert verdicts({"keep_within": "1m"}, versions, "2024-03-31 00:00") == {
        "v0": ["within 1m"],
        "v1": ["within 1m"],
    }


def test_keep_within_daily_keeps_one_per_day_inside_the_window() -> None:
    versions = items(
        "2024-06-30 11:00", "2024-06-30 09:00", "2024-06-29 22:00", "2024-06-29 10:00",
        "2024-06-25 10:00",
    )  # fmt: skip
    assert verdicts({"keep_within_daily": "3d"}, versions, NOW) == {
        "v0": ["daily within 3d"],
        "v2": ["daily within 3d"],
    }


def test_keep_within_hourly_weekly_monthly_yearly() -> None:
    versions = items("2024-06-30 11:30", "2024-06-30 11:10", "2024-06-30 10:10", "2024-05-01 10:00")
    assert verdicts({"keep_within_hourly": "2h"}, versions, NOW) == {
        "v0": ["hourly within 2h"],
        "v2": ["hourly within 2h"],
    }
    assert verdicts({"keep_within_weekly": "1w"}, versions, NOW) == {"v0": ["weekly within 7d"]}
    assert verdicts({"keep_within_monthly": "1y"}, versions, NOW) == {
        "v0": ["monthly within 1y"],
        "v3": ["monthly within 1y"],
    }
    assert verdicts({"keep_within_yearly": "1y"}, versions, NOW) == {"v0": ["yearly within 1y"]}


# --- combined -----------------------------------------------------------------------------


def test_rules_combine_and_every_reason_is_reported() -> None:
    versions = items("2024-06-30 11:00", "2024-06-30 09:00", "2024-06-29 10:00", "2024-06-28 10:00")
    assert verdicts({"keep_last": 1, "keep_daily": 2}, versions, NOW) == {
        "v0": ["last", "daily"],
        "v2": ["daily"],
    }
    assert verdicts({"keep_within": "1d", "keep_daily": 3, "keep_monthly": 1}, versions, NOW) == {
        "v0": ["within 1d", "daily", "monthly"],
        "v1": ["within 1d"],
        "v2": ["daily"],
        "v3": ["daily"],
    }


def test_the_issue_example_every_save_for_a_week_hourly_for_a_month_daily_for_a_year() -> None:
    policy = {"keep_within": "7d", "keep_within_hourly": "1m", "keep_within_daily": "1y"}
    now = t("2024-06-30 12:00")
    # One save every 10 minutes, 8 hours a day, for 400 days.
    versions = []
    for day in range(400):
        for minute in range(470, -1, -10):
            versions.append(now - timedelta(days=day, hours=12) + timedelta(minutes=minute))
    versions.sort(reverse=True)
    decisions = apply_policy(
        [Item(f"v{i}", w) for i, w in enumerate(versions)], RetentionPolicy.from_dict(policy), now
    )
    kept = [d.item.time for d in decisions if d.keep]
    week = [w for w in kept if w > now - timedelta(days=7)]
    assert len(week) == 7 * 48  # every save of the last week
    month = [w for w in kept if now - timedelta(days=30) < w <= now - timedelta(days=7)]
    assert len(month) == 23 * 8  # one per hour with saves (8 a day) for the rest of the month
    year = [w for w in kept if w <= t("2024-05-30 12:00")]
    assert len({w.date() for w in year}) == len(year)  # at most one per day before that
    assert min(kept) > t("2023-06-30 12:00")  # nothing older than a year


def test_removing_the_removed_versions_changes_nothing_on_a_rerun() -> None:
    """A prune stopped partway finishes on a rerun: deletions never change the verdicts."""
    rng = random.Random(13)
    rules = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"]
    for _ in range(200):
        policy_dict: dict[str, object] = {
            r: rng.choice([-1, 1, 2, 3, 5]) for r in rng.sample(rules, rng.randint(1, 3))
        }
        if rng.random() < 0.3:
            policy_dict["keep_within"] = rng.choice(["2h", "3d", "1m"])
        policy = RetentionPolicy.from_dict(policy_dict)
        now = t("2024-06-30 12:00")
        times = sorted(
            (now - timedelta(minutes=rng.randint(0, 60 * 24 * 400)) for _ in range(60)),
            reverse=True,
        )
        versions = [Item(f"v{i}", w) for i, w in enumerate(times)]
        first = apply_policy(versions, policy, now)
        kept = [d.item for d in first if d.keep]
        removed = [d.item for d in first if not d.keep]
        # Delete an arbitrary part of what was removed, then run again.
        survivors = [v for v in versions if v in kept or rng.random() < 0.5]
        second = apply_policy(survivors, policy, now)
        assert [d.item for d in second if d.keep] == kept, policy_dict
        assert {d.item.version_id for d in second if not d.keep} <= {v.version_id for v in removed}


# --- input checks -------------------------------------------------------------------------------


def test_versions_must_come_newest_first() -> None:
    with pytest.raises(PolicyError, match="newest first"):
        apply_policy(
            items("2024-01-01 10:00", "2024-01-02 10:00"),
            RetentionPolicy(last=1),
            t(NOW),
        )


def test_an_empty_policy_is_refused() -> None:
    with pytest.raises(PolicyError, match="empty"):
        apply_policy(items("2024-01-01 10:00"), RetentionPolicy(), t(NOW))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1y2m3d4h", Duration(1, 2, 3, 4)),
        ("36h", Duration(hours=36)),
        ("2w", Duration(days=14)),
        ("7D", Duration(days=7)),
    ],
)
def test_durations_parse(text: str, expected: Duration) -> None:
    assert Duration.parse(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "1.5d", "-1d", "7d "])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    if text == "7d ":
        assert Duration.parse(text) == Duration(days=7)  # surrounding spaces are fine
        return
    with pytest.raises(PolicyError, match="duration"):
        Duration.parse(text)


def test_policy_names_match_the_flags_with_or_without_keep() -> None:
    policy = RetentionPolicy.from_dict({"keep-daily": 7, "hourly": "24", "keep_within": "7d"})
    assert policy.to_dict() == {"keep_hourly": 24, "keep_daily": 7, "keep_within": "7d"}
    assert RetentionPolicy.from_dict({"keep_yearly": "unlimited"}).yearly == -1


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"keep_forever": 1}, "unknown retention rule"),
        ({"keep_last": -2}, ">= 0"),
        ({"keep_last": True}, "whole number"),
        ({"keep_last": 1.5}, "whole number"),
        ({"keep_daily": "many"}, "whole number"),
        ({"keep_within": "soon"}, "not a duration"),
        ({"daily": 1, "keep_daily": 2}, "twice"),
    ],
)
def test_bad_policies_are_refused_with_what_to_fix(policy: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        RetentionPolicy.from_dict(policy)


def test_settings_validate_and_normalise_the_retention_policy() -> None:
    settings = BookstoreSettings(retention={"keep-daily": "7", "within": "1w"})
    assert settings.retention == {"keep_daily": 7, "keep_within": "7d"}
    assert settings.retention_policy == RetentionPolicy.from_dict({"daily": 7, "within": "7d"})
    assert BookstoreSettings().retention_policy.empty
    assert BookstoreSettings().skip_identical_saves is True
    with pytest.raises(TraitError, match="retention: unknown retention rule 'keep_always'"):
        BookstoreSettings(retention={"keep_always": 1})
