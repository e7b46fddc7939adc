"""Unit layer of the spool (:mod:`bookstore.spool`) and the uploader's backoff.

Real files in a temporary directory; no server, no S3.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import json
import os
import threading
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bookstore.spool import (
    CORRUPT_DIR,
    DROPPED_SUFFIX,
    ENTRY_SUFFIX,
    TMP_SUFFIX,
    SizeLedger,
    Spool,
    SpoolEntry,
    new_save_id,
    scan_entries,
)
from bookstore.uploader import Uploader


def make_entry(path: str, data: bytes, save_id: str | None = None) -> SpoolEntry:
    return SpoolEntry(
        save_id=save_id or new_save_id(),
        bucket="bucket",
        key=f"workspace/{path}",
        path=path,
        user="user",
        saved_at="2026-01-01T00:00:00.000Z",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


def commit(spool: Spool, path: str, data: bytes, save_id: str | None = None) -> SpoolEntry:
    staged = spool.stage(make_entry(path, data, save_id), data)
    spool.commit(staged)
    return staged.entry


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    s = Spool(str(tmp_path / "spool"))
    os.makedirs(s.directory)
    return s


def names(directory: str) -> list[str]:
    return sorted(os.listdir(directory))


# --- ordering ------------------------------------------------------------------------------


def test_save_ids_sort_in_the_order_they_were_made() -> None:
    ids = [new_save_id() for _ in range(2000)]  # many within one clock tick
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_scan_yields_entries_in_save_order_whatever_order_they_were_written(
    spool: Spool,
) -> None:
    ids = [new_save_id() for _ in range(5)]
    for i in (3, 0, 4, 1, 2):  # committed out of order
        commit(spool, "a.ipynb", f"save {i}".encode(), ids[i])
    found = [e for _f, e in scan_entries(spool.directory)]
    assert [e.save_id for e in found if isinstance(e, SpoolEntry)] == ids


def test_scan_skips_stages_and_other_files(spool: Spool) -> None:
    kept = commit(spool, "a.ipynb", b"kept")
    spool.stage(make_entry("b.ipynb", b"staged"), b"staged")
    Path(spool.directory, "stats.json").write_text("{}")
    assert [e.save_id for _f, e in scan_entries(spool.directory)] == [kept.save_id]  # type: ignore[union-attr]


def test_scan_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert list(scan_entries(str(tmp_path / "nowhere"))) == []


# --- quarantine ----------------------------------------------------------------------------


def test_scan_reports_an_unreadable_entry_without_stopping(spool: Spool) -> None:
    good = commit(spool, "a.ipynb", b"good")
    bad = Path(spool.directory, "00000000000000000001-abcdef" + ENTRY_SUFFIX)
    bad.write_bytes(b"not json\n...")
    found = list(scan_entries(spool.directory))
    assert found[0][0] == str(bad)
    assert isinstance(found[0][1], ValueError)
    assert found[1][1] == good


def test_open_quarantines_unreadable_entries_and_keeps_the_rest(spool: Spool) -> None:
    good = commit(spool, "a.ipynb", b"good")
    bad_name = "00000000000000000001-abcdef" + ENTRY_SUFFIX
    Path(spool.directory, bad_name).write_bytes(b"[1, 2]\n")  # JSON, but not an object
    entries, problems = spool.open()
    assert [e.save_id for e in entries] == [good.save_id]
    assert all(e.recovered for e in entries)
    assert len(problems) == 1, problems
    assert problems[0].startswith(bad_name), problems
    assert names(os.path.join(spool.directory, CORRUPT_DIR)) == [bad_name]
    assert bad_name not in names(spool.directory)


def test_a_damaged_entry_is_refused_then_quarantined(spool: Spool) -> None:
    entry = commit(spool, "a.ipynb", b"the bytes as saved")
    full = spool.entry_path(entry)
    with open(full, "r+b") as f:  # flip the last byte
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(ValueError, match="damaged"):
        spool.read_data(entry)
    spool.quarantine(entry)
    assert not os.path.exists(full)
    assert names(os.path.join(spool.directory, CORRUPT_DIR)) == [os.path.basename(full)]


# --- recovery ------------------------------------------------------------------------------


def test_a_stage_whose_bytes_reached_the_file_is_committed_at_open(
    spool: Spool, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    data = b'{"cells": []}\n'
    (root / "nb.ipynb").write_bytes(data)
    staged = spool.stage(make_entry("nb.ipynb", data), data)  # the server died here
    entries, problems = spool.open(str(root))
    assert problems == []
    assert [e.save_id for e in entries] == [staged.entry.save_id]
    assert names(spool.directory) == [staged.entry.save_id + ENTRY_SUFFIX]


def test_a_stage_whose_disk_write_did_not_happen_is_dropped(spool: Spool, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "nb.ipynb").write_bytes(b"the previous save\n")
    spool.stage(make_entry("nb.ipynb", b"never written"), b"never written")
    entries, _problems = spool.open(str(root))
    assert entries == []
    assert names(spool.directory) == []


def test_a_stage_cut_short_is_dropped_even_if_the_file_matches(
    spool: Spool, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    data = b"complete bytes\n"
    (root / "nb.ipynb").write_bytes(data)
    staged = spool.stage(make_entry("nb.ipynb", data), data)
    assert staged.tmp_path is not None
    with open(staged.tmp_path, "r+b") as f:
        f.truncate(os.path.getsize(staged.tmp_path) - 3)
    entries, _problems = spool.open(str(root))
    assert entries == []
    assert not any(n.endswith((TMP_SUFFIX, ENTRY_SUFFIX)) for n in names(spool.directory))


def test_open_keeps_dropped_counts_of_live_entries_and_removes_orphans(spool: Spool) -> None:
    entry = commit(spool, "a.ipynb", b"kept")
    entry.dropped = 3
    spool.write_dropped(entry)
    Path(spool.directory, "00000000000000000001-abcdef" + DROPPED_SUFFIX).write_text("2")
    entries, _problems = spool.open()
    assert [(e.save_id, e.dropped) for e in entries] == [(entry.save_id, 3)]
    assert names(spool.directory) == [
        entry.save_id + DROPPED_SUFFIX,
        entry.save_id + ENTRY_SUFFIX,
    ]


def test_the_entry_file_is_its_header_line_then_the_bytes(spool: Spool) -> None:
    data = b"line 1\nline 2\n"
    entry = commit(spool, "a.txt", data)
    with open(spool.entry_path(entry), "rb") as f:
        header = json.loads(f.readline())
        assert f.read() == data
    assert header["save_id"] == entry.save_id
    assert header["size"] == len(data)
    assert spool.read_data(entry) == data


def test_the_header_holds_every_field_but_recovered_and_reads_back_equal() -> None:
    entry = make_entry("a.txt", b"bytes")
    entry.extra = {"renamed-from": "old.txt"}
    entry.dropped = 3
    entry.recovered = True
    header = json.loads(entry.header())
    assert set(header) == {f.name for f in dataclasses.fields(SpoolEntry)} - {"recovered"}
    assert SpoolEntry(**header) == dataclasses.replace(entry, recovered=False)


# --- the uploader's backoff ------------------------------------------------------------------


def uploader(initial: float, cap: float, jitter: float) -> Uploader:
    settings: Any = SimpleNamespace(upload_retry_initial_delay=initial, upload_retry_max_delay=cap)
    return Uploader(settings, store=None, log=None, now=lambda: "now", jitter=lambda: jitter)  # type: ignore[arg-type]


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
def test_backoff_doubles_up_to_the_cap_with_half_to_full_jitter(jitter: float) -> None:
    waits = list(itertools.islice(uploader(0.5, 30, jitter).backoff(), 10))
    bases = [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert waits == [pytest.approx(b * (0.5 + jitter / 2)) for b in bases]


def test_the_newest_pending_saves_come_without_copying_the_queue() -> None:
    up = uploader(0.5, 30, 0.5)
    entries = [make_entry("a.ipynb", b"%d" % i) for i in range(5)]
    up._queues[("bucket", "workspace/a.ipynb")] = collections.deque(entries)
    pending = partial(up.pending_entries, "bucket", "workspace/a.ipynb")
    assert pending() == entries
    assert pending(2) == entries[3:]  # oldest first, as the whole list
    assert pending(0) == []
    assert pending(9) == entries
    assert up.pending_entries("bucket", "workspace/other.ipynb", 3) == []


# --- the spool's byte count ------------------------------------------------------------------


def test_the_size_ledger_keeps_its_total_through_every_change() -> None:
    sizes = SizeLedger({"a": 10, "b": 5})
    assert sizes.total == 15
    sizes["c"] = 7
    sizes["a"] = 4  # replaced, not added
    assert sizes.total == 16
    assert sizes.pop("b") == 5
    assert sizes.pop("b") is None  # gone: nothing taken off twice
    assert sizes.pop("zz", 0) == 0
    assert (sizes.total, len(sizes), sizes.get("a"), sizes.get("b")) == (11, 2, 4, 0)


# --- group commit of the directory fsync ---------------------------------------------------


def test_concurrent_commits_share_one_directory_fsync(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one fsync runs, the commits that arrive wait and then share the next one."""
    first_running = threading.Event()
    release = threading.Event()
    fsyncs: list[int] = []
    real_fsync = spool._fsync_dir

    def counting_fsync(directory: str | None = None) -> None:
        fsyncs.append(spool._sync_requested)  # how many commits it may cover
        if len(fsyncs) == 1:
            first_running.set()
            assert release.wait(30)
        real_fsync(directory)

    monkeypatch.setattr(spool, "_fsync_dir", counting_fsync)
    stages = [spool.stage(make_entry(f"nb{i}.ipynb", b"x"), b"x") for i in range(6)]
    first = threading.Thread(target=spool.commit, args=(stages[0],))
    first.start()
    assert first_running.wait(30)
    others = [threading.Thread(target=spool.commit, args=(s,)) for s in stages[1:]]
    for t in others:
        t.start()
    deadline = time.monotonic() + 30
    while spool._sync_requested < 6:  # all five wait behind the running fsync
        assert time.monotonic() < deadline
        time.sleep(0.01)
    release.set()
    for t in [first, *others]:
        t.join(30)
        assert not t.is_alive()
    assert fsyncs == [1, 6]  # the second fsync covered the five renames that waited
    assert len([n for n in names(spool.directory) if n.endswith(ENTRY_SUFFIX)]) == 6


def test_a_failed_directory_fsync_is_not_counted_as_done(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_fsync = spool._fsync_dir

    def failing_once(directory: str | None = None) -> None:
        calls.append("fsync")
        if len(calls) == 1:
            raise OSError("EIO")
        real_fsync(directory)

    monkeypatch.setattr(spool, "_fsync_dir", failing_once)
    staged = spool.stage(make_entry("a.ipynb", b"x"), b"x")
    with pytest.raises(OSError, match="EIO"):
        spool.commit(staged)
    spool.sync_dir()  # the next caller fsyncs again
    assert calls == ["fsync", "fsync"]
