"""Diffs have a bounded cost: over ``max_diff_*`` the diff API and page answer a summary."""

from __future__ import annotations

import json
from typing import Any

import nbdime
import nbformat
import pytest
from helpers import notebook
from history_helpers import get_json

from bookstore.history import DiffCaps, diff_notebooks, summarize_cells


def cells_nb(sources: list[str]) -> Any:
    nb = notebook("")
    nb["cells"] = [dict(nb["cells"][0], id=f"c{i}", source=s) for i, s in enumerate(sources)]
    return nbformat.from_dict(nb)


def put(s3: Any, bucket: str, key: str, nb: Any) -> str:
    body = json.dumps(nb).encode()
    return str(s3.put_object(Bucket=bucket, Key=key, Body=body)["VersionId"])


# --- pure logic ------------------------------------------------------------------------------


def test_summary_compares_cells_by_hash_and_names_the_cap() -> None:
    base = cells_nb(["a", "b", "c", "d"])
    remote = cells_nb(["a", "B", "c", "d", "e"])
    summary = summarize_cells(base, remote, DiffCaps(cells=100, lines=100, bytes=10**6))
    assert summary.too_large is None
    assert (summary.unchanged, summary.removed, summary.added, summary.changed) == (3, 1, 2, 2)
    assert (summary.head, summary.tail) == (1, 0)  # "a" equal; "d" is not last in remote
    capped = summarize_cells(base, remote, DiffCaps(cells=2, lines=100, bytes=10**6))
    assert capped.too_large is not None
    assert "max_diff_cells" in capped.too_large
    assert capped.message.startswith("too large to diff: 2 cells changed")
    lines = summarize_cells(cells_nb(["x\n" * 50]), cells_nb(["y\n" * 50]), DiffCaps(10, 60, 10**6))
    assert lines.too_large is not None
    assert "max_diff_lines" in lines.too_large
    nbytes = summarize_cells(cells_nb(["x" * 500]), cells_nb(["y" * 500]), DiffCaps(10, 60, 600))
    assert nbytes.too_large is not None
    assert "max_diff_bytes" in nbytes.too_large


def test_equal_leading_and_trailing_cells_are_left_out_but_the_diff_is_the_same() -> None:
    sources = [f"print({i})" for i in range(60)]
    base = cells_nb(sources)
    cells = [dict(c) for c in base["cells"]]
    cells[30]["source"] = "print('thirty')"
    del cells[40]
    remote = nbformat.from_dict({**base, "cells": cells})
    summary = summarize_cells(base, remote, DiffCaps(1000, 1000, 10**6))
    assert (summary.head, summary.tail) == (30, 19)
    expected = json.loads(json.dumps(nbdime.diff_notebooks(base, remote)))
    assert diff_notebooks(base, remote, summary) == expected


# --- through the server ----------------------------------------------------------------------


class TestDiffCaps:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {**bookstore_config, "max_diff_lines": 500}

    async def test_over_the_cap_the_api_and_page_answer_a_summary(
        self, jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
    ) -> None:
        lines = ["x = 1"] * 400
        old = put(s3, s3_bucket, "workspace/big.ipynb", cells_nb(["first", "\n".join(lines)]))
        lines[200] = "x = 2"
        new = put(s3, s3_bucket, "workspace/big.ipynb", cells_nb(["first", "\n".join(lines)]))

        body = await get_json(
            jp_fetch, "api", "bookstore", "diff", "big.ipynb", to=new, **{"from": old}
        )
        assert body["diff"] is None
        assert body["base"] is None
        summary = body["summary"]
        assert summary["cells_changed"] == 1
        assert summary["cells_unchanged"] == 1
        assert "max_diff_lines" in summary["too_large"]
        assert summary["message"].startswith("too large to diff: 1 cell changed")

        r = await jp_fetch("bookstore", "diff", "big.ipynb", params={"from": old, "to": new})
        assert r.code == 200
        page = r.body.decode()
        assert "Too large to diff: 1 cell changed" in page
        assert "max_diff_lines" in page

    async def test_under_the_cap_the_diff_is_complete(
        self, jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
    ) -> None:
        old = put(s3, s3_bucket, "workspace/nb.ipynb", cells_nb(["a = 1", "b = 2", "c = 3"]))
        new = put(s3, s3_bucket, "workspace/nb.ipynb", cells_nb(["a = 1", "b = 20", "c = 3"]))
        body = await get_json(
            jp_fetch, "api", "bookstore", "diff", "nb.ipynb", to=new, **{"from": old}
        )
        assert body["summary"]["too_large"] is None
        assert body["base"]["cells"][1]["source"] == "b = 2"
        [cells] = [e for e in body["diff"] if e["key"] == "cells"]
        assert [op["key"] for op in cells["diff"]] == [1]  # the index in the whole notebook
        r = await jp_fetch("bookstore", "diff", "nb.ipynb", params={"from": old, "to": new})
        page = r.body.decode()
        assert "Too large to diff" not in page
        assert "b = 20" in page
