"""Pins against a running prune, on real S3: the race between ``bookstore pin`` and
``bookstore prune --yes`` on the same version.

The guarantee (docs/retention.md): prune reads the pin tags when it plans a path, and
again for each ``DeleteObjects`` batch right before sending it. A version pinned before
that second read is never deleted, however old its plan; an unpin during a prune takes
effect at the next run. The tests pin from another S3 client at the hook prune awaits
between its plan and its delete (:meth:`PruneListener.before_delete`): no sleeps.
"""

from __future__ import annotations

from typing import Any

from helpers import list_versions
from test_retention_server import pin_elsewhere

from bookstore.prune import PruneListener, PruneResult, VersionVerdict, prune
from bookstore.retention import RetentionPolicy
from bookstore.s3 import PIN_TAG, S3Store
from bookstore.settings import BookstoreSettings

KEY = "workspace/race.ipynb"
PATH = "race.ipynb"


def put_versions(s3: Any, bucket: str, key: str, n: int) -> list[str]:
    """``n`` versions of ``key``, one after the other; their ids newest first."""
    for i in range(n):
        s3.put_object(Bucket=bucket, Key=key, Body=f"version {i}".encode())
    return [v["VersionId"] for v in list_versions(s3, bucket, key)]


def remaining(s3: Any, bucket: str, key: str) -> list[str]:
    return [v["VersionId"] for v in list_versions(s3, bucket, key)]


class PinAtTheLastMoment(PruneListener):
    """Pins or unpins a version through another S3 client once the plan is made, when
    the first batch is about to be deleted."""

    def __init__(self, config: dict[str, Any], version_id: str, pinned: bool) -> None:
        self.config = config
        self.version_id = version_id
        self.pinned = pinned
        self.verdicts: dict[str, VersionVerdict] = {}
        self.batches: list[list[tuple[str, str]]] = []
        self.late: list[tuple[str, str]] = []

    def version(self, verdict: VersionVerdict) -> None:
        self.verdicts[verdict.version_id] = verdict

    async def before_delete(self, batch: list[tuple[str, str]]) -> None:
        self.batches.append(batch)
        if len(self.batches) == 1:
            await pin_elsewhere(self.config, PATH, self.version_id, self.pinned)

    def pinned_late(self, key: str, version_id: str) -> None:
        self.late.append((key, version_id))


async def run_prune(
    config: dict[str, Any], listener: PruneListener | None = None, batch_size: int = 1000
) -> PruneResult:
    settings = BookstoreSettings(**config)
    store = S3Store(settings)
    try:
        return await prune(
            store,
            settings,
            RetentionPolicy(last=1),
            dry_run=False,
            listener=listener,
            batch_size=batch_size,
        )
    finally:
        await store.close()


def tagged(s3: Any, bucket: str, version_id: str) -> bool:
    tags = s3.get_object_tagging(Bucket=bucket, Key=KEY, VersionId=version_id)["TagSet"]
    return any(t["Key"] == PIN_TAG for t in tags)


async def test_a_pin_set_after_the_plan_and_before_the_delete_is_honoured(
    s3: Any, s3_bucket: str, bookstore_config: dict[str, Any]
) -> None:
    ids = put_versions(s3, s3_bucket, KEY, 5)
    hook = PinAtTheLastMoment(bookstore_config, ids[2], pinned=True)

    result = await run_prune(bookstore_config, hook)

    # The plan was made without the pin...
    assert not hook.verdicts[ids[2]].keep
    assert (KEY, ids[2]) in hook.batches[0]
    # ...yet the version pinned before the delete survives, and the result says why.
    assert remaining(s3, s3_bucket, KEY) == [ids[0], ids[2]]
    assert tagged(s3, s3_bucket, ids[2])
    assert hook.late == [(KEY, ids[2])]
    assert (result.pinned_late, result.deleted, result.kept, result.removed) == (1, 3, 2, 3)
    assert result.complete
    assert result.to_json()["pinned_late"] == 1


async def test_a_late_pin_in_a_batch_that_waited_for_other_paths_is_honoured(
    s3: Any, s3_bucket: str, bookstore_config: dict[str, Any]
) -> None:
    """A batch gathers removals from several paths and listing pages: the version planned
    first waits longest, and is still read again right before its batch is deleted."""
    ids = put_versions(s3, s3_bucket, KEY, 4)
    for name in ("s1", "s2"):  # listed after race.ipynb: their removals fill the batch
        put_versions(s3, s3_bucket, f"workspace/{name}.ipynb", 3)
    hook = PinAtTheLastMoment(bookstore_config, ids[3], pinned=True)

    result = await run_prune(bookstore_config, hook, batch_size=6)

    assert hook.batches[0][0] == (KEY, ids[1])  # planned first, deleted with the others
    assert (KEY, ids[3]) in hook.batches[0]
    assert remaining(s3, s3_bucket, KEY) == [ids[0], ids[3]]
    for name in ("s1", "s2"):
        assert len(remaining(s3, s3_bucket, f"workspace/{name}.ipynb")) == 1
    assert (result.pinned_late, result.deleted, result.delete_requests) == (1, 6, 2)


async def test_an_unpin_during_a_prune_takes_effect_at_the_next_run(
    s3: Any, s3_bucket: str, bookstore_config: dict[str, Any]
) -> None:
    ids = put_versions(s3, s3_bucket, KEY, 4)
    await pin_elsewhere(bookstore_config, PATH, ids[2])
    hook = PinAtTheLastMoment(bookstore_config, ids[2], pinned=False)

    first = await run_prune(bookstore_config, hook)

    # Kept as the plan said (the pin was there then); never part of a delete batch.
    assert hook.verdicts[ids[2]].reasons == ["pinned"]
    assert all(vid != ids[2] for batch in hook.batches for _, vid in batch)
    assert remaining(s3, s3_bucket, KEY) == [ids[0], ids[2]]
    assert not tagged(s3, s3_bucket, ids[2])
    assert (first.deleted, first.pinned_late) == (2, 0)

    second = await run_prune(bookstore_config)

    assert remaining(s3, s3_bucket, KEY) == [ids[0]]
    assert second.deleted == 1


async def test_a_batch_pinned_whole_during_the_prune_sends_no_delete(
    s3: Any, s3_bucket: str, bookstore_config: dict[str, Any]
) -> None:
    ids = put_versions(s3, s3_bucket, KEY, 2)
    hook = PinAtTheLastMoment(bookstore_config, ids[1], pinned=True)

    result = await run_prune(bookstore_config, hook)

    assert remaining(s3, s3_bucket, KEY) == ids
    assert (result.pinned_late, result.deleted, result.delete_requests) == (1, 0, 0)
    assert (result.kept, result.removed, result.bytes_removed) == (2, 0, 0)
