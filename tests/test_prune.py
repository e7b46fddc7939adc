"""``bookstore prune``, ``pin``, ``unpin``, ``usage`` and doctor's retention check, on real S3.

S3's ``LastModified`` cannot be set by a client, so these tests read the times S3 gave
the versions and place ``--now`` relative to them; the rules themselves are tested on
synthetic times in tests/test_retention.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from helpers import list_versions
from run_helpers import run, run_json

from bookstore.prune import PruneListener, prune, set_pin
from bookstore.pytest_plugin import settings_for
from bookstore.retention import Item, RetentionPolicy, apply_policy
from bookstore.s3 import DELETE_BATCH_SIZE, S3Store, pin_index_prefix, pin_marker_key
from bookstore.settings import BookstoreSettings
from bookstore.testing import S3Server, TcpProxy


@pytest.fixture
def env(bookstore_cli_env: dict[str, str]) -> Path:
    """Point the command line at the test bucket; returns its Jupyter config directory."""
    return Path(bookstore_cli_env["JUPYTER_CONFIG_DIR"])


def put_versions(s3: Any, bucket: str, key: str, n: int) -> list[str]:
    """Store ``n`` versions of ``key``; returns their ids newest first (as S3 lists them)."""
    for i in range(n):
        s3.put_object(Bucket=bucket, Key=key, Body=f"version {i}".encode())
    return [v["VersionId"] for v in list_versions_in_order(s3, bucket, key)]


def list_versions_in_order(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    """S3's own order (newest first), which breaks ties between equal LastModified."""
    out: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        out.extend(v for v in page.get("Versions", []) if v["Key"] == key)
    return out


def iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def remaining(s3: Any, bucket: str, key: str) -> list[str]:
    return [v["VersionId"] for v in list_versions_in_order(s3, bucket, key)]


# --- dry run and protections ------------------------------------------------------------------


def test_dry_run_is_the_default_and_deletes_nothing(
    env: Path, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = put_versions(s3, s3_bucket, "workspace/nb.ipynb", 6)

    code, out, err = run(capsys, "prune", "--keep-last", "2")

    assert code == 0, err
    assert "Dry run: nothing is deleted" in out
    assert "nb.ipynb: 6 version(s), keep 2, remove 4" in out
    assert f"{ids[0]}" in out
    assert "newest, last" in out
    assert remaining(s3, s3_bucket, "workspace/nb.ipynb") == ids


def test_newest_pinned_and_published_versions_survive(
    env: Path, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = put_versions(s3, s3_bucket, "workspace/nb.ipynb", 6)
    published = put_versions(s3, s3_bucket, "published/nb.ipynb", 3)
    code, out, err = run(capsys, "pin", "nb.ipynb", ids[4])
    assert code == 0, err
    assert f"pinned version {ids[4]}" in out

    # A policy that keeps nothing by itself ("within 1h" of a time two hours later).
    later = iso(datetime.now(timezone.utc) + timedelta(hours=2))
    plan = run_json(capsys, "prune", "--keep-within", "1h", "--now", later, "--yes")

    assert remaining(s3, s3_bucket, "workspace/nb.ipynb") == [ids[0], ids[4]]
    assert remaining(s3, s3_bucket, "published/nb.ipynb") == published
    [path] = plan["paths"]
    reasons = {v["version_id"]: v["reasons"] for v in path["versions"] if v["action"] == "keep"}
    assert reasons == {ids[0]: ["newest"], ids[4]: ["pinned"]}
    assert plan["result"]["deleted"] == 4
    assert plan["result"]["complete"] is True

    # Unpinned, it goes at the next run; the newest version still never does.
    code, out, err = run(capsys, "unpin", "nb.ipynb", ids[4])
    assert code == 0, err
    run_json(capsys, "prune", "--keep-within", "1h", "--now", later, "--yes")
    assert remaining(s3, s3_bucket, "workspace/nb.ipynb") == [ids[0]]


def test_published_prefix_is_pruned_only_when_named(
    env: Path, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    published = put_versions(s3, s3_bucket, "published/nb.ipynb", 4)
    runs = put_versions(s3, s3_bucket, "runs/job.ipynb", 3)

    plan = run_json(capsys, "prune", "--keep-last", "1", "--prefix", "published", "--yes")

    assert plan["result"]["deleted"] == 3
    assert remaining(s3, s3_bucket, "published/nb.ipynb") == published[:1]
    assert remaining(s3, s3_bucket, "runs/job.ipynb") == runs


def test_a_nested_published_prefix_is_skipped_when_pruning_the_workspace(
    env: Path, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    published = put_versions(s3, s3_bucket, "nb/published/a.ipynb", 3)
    mine = put_versions(s3, s3_bucket, "nb/a.ipynb", 3)

    plan = run_json(
        capsys,
        "prune",
        "--keep-last=1",
        "--yes",
        "--workspace-prefix=nb",
        "--published-prefix=nb/published",
    )

    assert [p["path"] for p in plan["paths"]] == ["a.ipynb"]
    assert remaining(s3, s3_bucket, "nb/a.ipynb") == mine[:1]
    assert remaining(s3, s3_bucket, "nb/published/a.ipynb") == published


# --- the policy flags against the real LastModified times ----------------------------------------

POLICIES = [
    ["--keep-last", "3"],
    ["--keep-hourly", "1"],
    ["--keep-hourly", "4"],
    ["--keep-daily", "2"],
    ["--keep-weekly", "1"],
    ["--keep-monthly", "3"],
    ["--keep-yearly", "1"],
    ["--keep-within", "2h"],
    ["--keep-within-hourly", "1d"],
    ["--keep-within-daily", "1d"],
    ["--keep-last", "2", "--keep-daily", "3"],
    ["--keep-last", "1", "--keep-within", "1h", "--keep-monthly", "2"],
]


CASES = [(flags, 3) for flags in POLICIES] + [(["--keep-within", "2h"], 1)]


@pytest.mark.parametrize(
    ("flags", "hours_later"), CASES, ids=lambda c: " ".join(c) if isinstance(c, list) else f"+{c}h"
)
def test_policy_flags_alone_and_combined_with_now(
    env: Path,
    s3: Any,
    s3_bucket: str,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    hours_later: int,
) -> None:
    key = "workspace/dir/nb.ipynb"
    put_versions(s3, s3_bucket, key, 5)
    listed = list_versions_in_order(s3, s3_bucket, key)
    newest = listed[0]["LastModified"]
    now = newest + timedelta(hours=hours_later)
    policy = {flags[i].lstrip("-").replace("-", "_"): flags[i + 1] for i in range(0, len(flags), 2)}
    expected = apply_policy(
        [Item(v["VersionId"], v["LastModified"], v["Size"]) for v in listed],
        RetentionPolicy.from_dict(policy),
        now,
    )
    expected_kept = {d.item.version_id for d in expected if d.keep} | {listed[0]["VersionId"]}

    dry = run_json(capsys, "prune", "dir/nb.ipynb", *flags, "--now", iso(now))
    assert {v["version_id"] for v in dry["paths"][0]["versions"] if v["action"] == "keep"} == (
        expected_kept
    )
    assert len(remaining(s3, s3_bucket, key)) == 5

    done = run_json(capsys, "prune", "dir/nb.ipynb", *flags, "--now", iso(now), "--yes")
    assert set(remaining(s3, s3_bucket, key)) == expected_kept
    assert done["result"]["deleted"] == 5 - len(expected_kept)
    if flags == ["--keep-within", "2h"]:
        # The only rule whose result depends on --now: all kept an hour later, two later not.
        assert len(expected_kept) == (5 if hours_later == 1 else 1)
    if flags == ["--keep-last", "3"]:
        assert len(expected_kept) == 3


def test_bad_flags_and_missing_policy_are_usage_errors(
    env: Path, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    put_versions(s3, s3_bucket, "workspace/nb.ipynb", 2)
    code, _, err = run(capsys, "prune")
    assert code == 2
    assert "no retention policy" in err
    code, _, err = run(capsys, "prune", "--keep-within", "7x")
    assert code == 2
    assert "not a duration" in err
    code, _, err = run(capsys, "prune", "--keep-daily", "-5")
    assert code == 2
    assert "--keep-daily must be >= 0" in err
    code, _, err = run(capsys, "prune", "--keep-last", "1", "--now", "tomorrow")
    assert code == 2
    assert "ISO 8601" in err
    code, _, err = run(capsys, "prune", "other.ipynb", "--keep-last", "1")
    assert code == 1
    assert "no versions of 'other.ipynb'" in err
    assert len(remaining(s3, s3_bucket, "workspace/nb.ipynb")) == 2


def test_the_configured_policy_is_the_default(
    env: Path, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = put_versions(s3, s3_bucket, "workspace/nb.ipynb", 4)
    (env / "jupyter_server_config.json").write_text(
        json.dumps({"BookstoreSettings": {"retention": {"keep_last": 2}}})
    )

    plan = run_json(capsys, "prune", "--yes")

    assert plan["policy"] == {"keep_last": 2}
    assert remaining(s3, s3_bucket, "workspace/nb.ipynb") == ids[:2]


# --- batches, failures ----------------------------------------------------------------------


async def _with_store(
    s3_server: S3Server, bucket: str, tmp_path: Path, use: Callable[[S3Store], Awaitable[Any]]
) -> Any:
    store = S3Store(BookstoreSettings(**settings_for(s3_server, bucket, str(tmp_path / "spool"))))
    try:
        return await use(store)
    finally:
        await store.close()


def test_a_prune_of_more_than_1000_versions_deletes_in_batches_of_1000(
    env: Path, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert DELETE_BATCH_SIZE == 1000  # S3's limit per DeleteObjects
    # 1,004 deletions over four paths: one full batch and one of 4. Each key is written by a
    # thread of its own, one version at a time (moto's server loses versions of one key
    # written concurrently).
    keys = [f"workspace/big-{i}.ipynb" for i in range(4)]
    with concurrent.futures.ThreadPoolExecutor(len(keys)) as pool:
        ids = dict(zip(keys, pool.map(lambda k: put_versions(s3, s3_bucket, k, 252), keys)))

    plan = run_json(capsys, "prune", "--keep-last", "1", "--yes")

    assert plan["result"]["removed"] == plan["result"]["deleted"] == 4 * 251
    assert plan["result"]["delete_requests"] == 2
    for key in keys:
        assert remaining(s3, s3_bucket, key) == ids[key][:1]


def test_deletes_go_in_batches_of_the_batch_size_across_paths(
    s3_server: S3Server, s3: Any, s3_bucket: str, tmp_path: Path
) -> None:
    ids = {name: put_versions(s3, s3_bucket, f"workspace/{name}.ipynb", 5) for name in "abc"}

    result = asyncio.run(
        _with_store(
            s3_server,
            s3_bucket,
            tmp_path,
            lambda store: prune(
                store,
                store.settings,
                RetentionPolicy(last=1),
                dry_run=False,
                batch_size=5,
            ),
        )
    )

    assert result.complete
    assert (result.removed, result.deleted) == (12, 12)
    assert result.delete_requests == 3  # 5 + 5 + 2, batches spanning paths
    for name in "abc":
        assert remaining(s3, s3_bucket, f"workspace/{name}.ipynb") == ids[name][:1]


class _CutAfterFirstBatch(PruneListener):
    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy
        self.batches = 0

    def deleted(self, count: int, total: int) -> None:
        self.batches += 1
        if self.batches == 1:
            self.proxy.cut()


def test_proxy_cut_mid_prune_then_a_rerun_finishes(
    s3_server: S3Server, s3: Any, s3_bucket: str
) -> None:
    for name in ("a", "b", "c"):
        put_versions(s3, s3_bucket, f"workspace/{name}.ipynb", 12)
    before = {n: remaining(s3, s3_bucket, f"workspace/{n}.ipynb") for n in ("a", "b", "c")}
    policy = RetentionPolicy(last=3)

    with TcpProxy(s3_server.host, s3_server.port) as proxy:
        settings = BookstoreSettings(
            s3_bucket=s3_bucket,
            s3_endpoint_url=proxy.url,
            s3_access_key_id=s3_server.access_key_id,
            s3_secret_access_key=s3_server.secret_access_key,
            s3_region_name=s3_server.region_name,
            s3_connect_timeout=1.0,
            s3_read_timeout=5.0,
        )

        async def run_prune(listener: PruneListener | None = None) -> Any:
            store = S3Store(settings)
            try:
                return await prune(
                    store, settings, policy, dry_run=False, listener=listener, batch_size=5
                )
            finally:
                await store.close()

        first = asyncio.run(run_prune(_CutAfterFirstBatch(proxy)))
        assert first.failure is not None
        assert "127.0.0.1" in first.failure
        assert first.deleted == 5
        assert not first.complete
        # Consistent: exactly the reported versions are gone, all kept ones are there.
        after_cut = sum(len(remaining(s3, s3_bucket, f"workspace/{n}.ipynb")) for n in before)
        assert after_cut == 36 - 5

        proxy.restore()
        second = asyncio.run(run_prune())

    assert second.complete, second.failure
    assert second.deleted == 27 - 5
    for name, ids in before.items():
        assert remaining(s3, s3_bucket, f"workspace/{name}.ipynb") == ids[:3]


def test_the_command_line_reports_an_unreachable_s3_and_how_to_finish(
    env: Path,
    s3_server: S3Server,
    s3: Any,
    s3_bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    put_versions(s3, s3_bucket, "workspace/nb.ipynb", 3)
    with TcpProxy(s3_server.host, s3_server.port) as proxy:
        proxy.cut()
        code, _out, err = run(
            capsys,
            "prune",
            "--keep-last=1",
            "--yes",
            f"--endpoint-url={proxy.url}",
            "--BookstoreSettings.s3_connect_timeout=1",
        )
    assert code == 1
    assert "stopped partway" in err
    assert "run the same command again to finish" in err
    assert len(remaining(s3, s3_bucket, "workspace/nb.ipynb")) == 3


# --- pin, usage, doctor --------------------------------------------------------------------------


def test_pin_of_a_missing_version_says_so(
    env: Path, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = put_versions(s3, s3_bucket, "workspace/nb.ipynb", 1)
    code, _, err = run(capsys, "pin", "nb.ipynb", "0" * 32)
    assert code == 1
    assert "does not exist" in err
    code, out, err = run(capsys, "pin", "nb.ipynb", ids[0], "--json")
    assert code == 0
    assert json.loads(out)["changed"] is True
    code, out, err = run(capsys, "pin", "nb.ipynb", ids[0])
    assert code == 0
    assert "already pinned" in out
    tags = s3.get_object_tagging(Bucket=s3_bucket, Key="workspace/nb.ipynb", VersionId=ids[0])
    assert {"Key": "bookstore-pinned", "Value": "true"} in tags["TagSet"]


def store_for(s3_server: S3Server, bucket: str) -> S3Store:
    """A store with its own S3 client: another process, as far as S3 can tell."""
    return S3Store(
        BookstoreSettings(
            s3_bucket=bucket,
            s3_endpoint_url=s3_server.endpoint_url,
            s3_access_key_id=s3_server.access_key_id,
            s3_secret_access_key=s3_server.secret_access_key,
            s3_region_name=s3_server.region_name,
        )
    )


def tagged(s3: Any, bucket: str, key: str, version_id: str) -> bool:
    tags = s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=version_id)["TagSet"]
    return {"Key": "bookstore-pinned", "Value": "true"} in tags


def test_a_pin_set_by_tagging_alone_is_protected_and_prune_indexes_it(
    env: Path, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str], s3_server: S3Server
) -> None:
    key = "workspace/nb.ipynb"
    ids = put_versions(s3, s3_bucket, key, 5)
    # Another tool tags ids[3] (no index marker); bookstore pins ids[2], then the tag is
    # removed behind its back (a stale marker).
    s3.put_object_tagging(
        Bucket=s3_bucket,
        Key=key,
        VersionId=ids[3],
        Tagging={"TagSet": [{"Key": "bookstore-pinned", "Value": "true"}]},
    )
    assert run(capsys, "pin", "nb.ipynb", ids[2])[0] == 0
    s3.delete_object_tagging(Bucket=s3_bucket, Key=key, VersionId=ids[2])

    async def index() -> set[str]:
        store = store_for(s3_server, s3_bucket)
        try:
            return await store.pin_index(key)
        finally:
            await store.close()

    assert asyncio.run(index()) == {ids[2]}

    later = iso(datetime.now(timezone.utc) + timedelta(hours=2))
    dry = run_json(capsys, "prune", "--keep-within", "1h", "--now", later)
    assert dry["result"]["pins_indexed"] == 0  # a dry run writes nothing
    plan = run_json(capsys, "prune", "--keep-within", "1h", "--now", later, "--yes")

    # The tag decides, never the index: ids[3] survives, ids[2] goes.
    assert remaining(s3, s3_bucket, key) == [ids[0], ids[3]]
    assert plan["result"]["pins_indexed"] == 1
    assert plan["result"]["pins_unindexed"] == 1
    # ...and listings now show the pin the other tool set.
    assert asyncio.run(index()) == {ids[3]}


def test_concurrent_pins_and_unpins_of_two_versions_lose_neither(
    env: Path, s3: Any, s3_bucket: str, s3_server: S3Server
) -> None:
    key = "workspace/nb.ipynb"
    ids = put_versions(s3, s3_bucket, key, 4)
    settings = BookstoreSettings(s3_bucket=s3_bucket)

    async def go() -> tuple[set[str], set[str]]:
        one, two = store_for(s3_server, s3_bucket), store_for(s3_server, s3_bucket)
        try:
            await asyncio.gather(
                set_pin(one, settings, "nb.ipynb", ids[1], True),
                set_pin(two, settings, "nb.ipynb", ids[2], True),
            )
            after_pins = await one.pin_index(key)
            await asyncio.gather(
                set_pin(one, settings, "nb.ipynb", ids[1], False),
                set_pin(two, settings, "nb.ipynb", ids[3], True),
            )
            return after_pins, await two.pinned_versions(key, ids)
        finally:
            await one.close()
            await two.close()

    after_pins, after_swap = asyncio.run(go())

    assert after_pins == {ids[1], ids[2]}
    assert after_swap == {ids[2], ids[3]}
    assert [tagged(s3, s3_bucket, key, v) for v in ids] == [False, False, True, True]
    # Unpinning removes the marker and its versions: nothing is left behind.
    markers = s3.list_object_versions(Bucket=s3_bucket, Prefix=pin_index_prefix(key))
    left = [m["Key"] for m in [*markers.get("Versions", []), *markers.get("DeleteMarkers", [])]]
    assert sorted(left) == sorted(pin_marker_key(key, v) for v in (ids[2], ids[3]))


def test_pin_index_keys_keep_paths_apart_and_fit_s3() -> None:
    assert pin_marker_key("workspace/a.ipynb", "x/y+z=") == (
        ".bookstore-pins/workspace/a.ipynb/x%2Fy%2Bz%3D"
    )
    # A directory named like a notebook: its markers are in a sub-directory, not listed.
    assert "/" not in pin_marker_key("w/a.ipynb", "a/b")[len(pin_index_prefix("w/a.ipynb")) :]
    long_key = "workspace/" + "d/" * 450 + "nb.ipynb"
    marker = pin_marker_key(long_key, "v" * 36)
    assert len(marker.encode()) <= 1024
    assert marker.startswith(".bookstore-pins/.sha256/")
    assert pin_index_prefix(long_key) != pin_index_prefix(long_key + "x")


def test_usage_reports_paths_totals_and_growth_per_day(
    env: Path, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    put_versions(s3, s3_bucket, "workspace/a.ipynb", 3)
    put_versions(s3, s3_bucket, "workspace/sub/b.ipynb", 2)
    put_versions(s3, s3_bucket, "published/a.ipynb", 2)
    sizes = {
        key: sum(v["Size"] for v in list_versions(s3, s3_bucket, key))
        for key in ("workspace/a.ipynb", "workspace/sub/b.ipynb")
    }
    newest = list_versions(s3, s3_bucket, "workspace/a.ipynb")[0]["LastModified"]

    report = run_json(capsys, "usage", "--now", iso(newest + timedelta(minutes=1)))

    assert [(p["path"], p["versions"], p["bytes"]) for p in report["paths"]] == [
        ("a.ipynb", 3, sizes["workspace/a.ipynb"]),
        ("sub/b.ipynb", 2, sizes["workspace/sub/b.ipynb"]),
    ]
    assert report["total"] == {"paths": 2, "versions": 5, "bytes": sum(sizes.values())}
    assert len(report["growth"]) == 7
    assert report["growth"][-1]["versions"] == 5
    assert sum(d["bytes"] for d in report["growth"]) == sum(sizes.values())

    # Eight days later, the week added nothing.
    report = run_json(capsys, "usage", "--now", iso(newest + timedelta(days=8)))
    assert sum(d["versions"] for d in report["growth"]) == 0

    code, out, err = run(capsys, "usage")
    assert code == 0, err
    assert "2 path(s), 5 version(s)" in out
    assert "No retention policy is set" in out


def test_doctor_warns_when_no_policy_is_set_and_the_workspace_grows_fast(
    env: Path, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    put_versions(s3, s3_bucket, "workspace/a.ipynb", 20)

    report = run_json(capsys, "doctor", "--fast-growth=1")
    [check] = [c for c in report["checks"] if c["check"] == "retention"]
    assert check["status"] == "WARN"
    assert "no policy set" in check["detail"]
    assert "c.BookstoreSettings.retention" in check["fix"]

    report = run_json(capsys, "doctor")  # 100 MB/day by default: this is slow growth
    [check] = [c for c in report["checks"] if c["check"] == "retention"]
    assert check["status"] == "INFO"

    (env / "jupyter_server_config.json").write_text(
        json.dumps({"BookstoreSettings": {"retention": {"keep_daily": 30}}})
    )
    report = run_json(capsys, "doctor", "--fast-growth=1")
    [check] = [c for c in report["checks"] if c["check"] == "retention"]
    assert check["status"] == "OK"
    assert "30 daily" in check["detail"]
