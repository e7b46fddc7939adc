"""The runs API: list, read one output, start a run (202), the concurrency cap, stop = cancel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import async_wait_until
from history_helpers import fetch_error, get_json
from run_helpers import outputs_text, param_notebook, publish, run_versions

API = ("api", "bookstore", "runs")

# Says it started (a file next to the notebook), then waits for a "go" file.
WAIT_CELL = (
    "import pathlib, time\n"
    "pathlib.Path('started').write_text('1')\n"
    "print('waiting', flush=True)\n"
    "while not pathlib.Path('go').exists():\n"
    "    time.sleep(0.05)\n"
    "print('went')"
)


async def wait_for_status(jp_fetch: Any, path: str, run_id: str, status: str) -> dict[str, Any]:
    """Poll the listing until run ``run_id`` has ``status``; that entry."""

    async def entry() -> dict[str, Any] | None:
        body = await get_json(jp_fetch, *API, path)
        found = next((r for r in body["runs"] if r["run_id"] == run_id), None)
        return found if found is not None and found["status"] == status else None

    found: dict[str, Any] = await async_wait_until(
        entry, 240, f"run {run_id} never became {status}", interval=0.2
    )
    return found


async def start(jp_fetch: Any, path: str, **body: Any) -> dict[str, Any]:
    r = await jp_fetch(*API, path, method="POST", body=json.dumps(body))
    assert r.code == 202, r.body
    return json.loads(r.body)  # type: ignore[no-any-return]


async def test_start_a_run_list_it_running_then_read_its_output(
    jp_fetch: Any, bookstore_ext: Any, jp_root_dir: Path, s3: Any, s3_bucket: str
) -> None:
    (jp_root_dir / "team").mkdir()
    old = publish(s3, s3_bucket, "team/nb.ipynb", param_notebook(WAIT_CELL + "\nprint('x is', x)"))
    publish(s3, s3_bucket, "team/nb.ipynb", param_notebook("print('newer')"))

    started = await start(jp_fetch, "team/nb.ipynb", version_id=old, parameters={"x": 5})

    assert started["source_version_id"] == old
    assert started["kernel"] == "python3"
    running = await wait_for_status(jp_fetch, "team/nb.ipynb", started["run_id"], "running")
    assert running["output_version_id"] is None
    assert running["parameters"] == {"x": 5}
    # The run's working directory is the notebook's folder.
    (jp_root_dir / "team" / "go").write_text("1")
    done = await wait_for_status(jp_fetch, "team/nb.ipynb", started["run_id"], "succeeded")
    assert done["source_version_id"] == old
    assert done["parameters"] == {"x": 5}
    assert done["kernel"] == "python3"
    assert done["duration"] > 0
    (stored,) = run_versions(s3, s3_bucket, "team/nb.ipynb")
    assert done["output_version_id"] == stored["version_id"]

    one = await get_json(jp_fetch, *API, "team/nb.ipynb", version_id=done["output_version_id"])
    assert one["type"] == "notebook"
    assert "x is 5" in outputs_text(one["content"])
    assert one["run"]["run_id"] == started["run_id"]
    assert one["content"]["metadata"]["bookstore"]["run"]["source"]["version_id"] == old


async def test_the_cap_refuses_more_runs_and_a_stopping_server_cancels_them(
    jp_fetch: Any,
    bookstore_ext: Any,
    jp_root_dir: Path,
    s3: Any,
    s3_bucket: str,
) -> None:
    publish(s3, s3_bucket, "long.ipynb", param_notebook(WAIT_CELL))
    first = await start(jp_fetch, "long.ipynb")

    status, message = await fetch_error(jp_fetch, *API, "long.ipynb", method="POST", body="{}")

    assert status == 429
    assert "max_concurrent_runs = 1" in message
    await async_wait_until((jp_root_dir / "started").exists, 240, "the run never started its cell")
    await bookstore_ext.runs.stop()
    (run,) = run_versions(s3, s3_bucket, "long.ipynb")
    prov = run["nb"]["metadata"]["bookstore"]["run"]
    assert prov["run_id"] == first["run_id"]
    assert prov["status"] == "cancelled"
    assert prov["cancel_reason"] == "SIGTERM"
    assert "waiting" in outputs_text(run["nb"])
    assert bookstore_ext.runs.active == {}


@pytest.fixture
def bookstore_config(bookstore_config: dict[str, Any]) -> dict[str, Any]:
    return {**bookstore_config, "max_concurrent_runs": 1}


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("notes.txt", {}, 415, "not a notebook"),
        ("missing.ipynb", {}, 404, "has no published version"),
        ("ok.ipynb", {"version_id": "nosuchversion"}, 404, "does not exist"),
        ("ok.ipynb", {"version_id": "bad id"}, 400, "not a valid S3 version id"),
        ("ok.ipynb", {"parameters": [1, 2]}, 400, "must be an object"),
        ("ok.ipynb", {"parameters": {"not valid": 1}}, 400, "not a valid identifier"),
        ("ok.ipynb", {"kernel": "no-such-kernel"}, 404, "no kernel named 'no-such-kernel'"),
        ("ok.ipynb", {"kernel": "../x"}, 400, "not a kernel name"),
        ("ok.ipynb", {"prefix": "workspace"}, 400, "unknown field"),
    ],
)
async def test_bad_requests_are_refused_with_nothing_started(
    jp_fetch: Any,
    bookstore_ext: Any,
    s3: Any,
    s3_bucket: str,
    path: str,
    body: dict[str, Any],
    status: int,
    message: str,
) -> None:
    publish(s3, s3_bucket, "ok.ipynb", param_notebook("print(x)"))

    got_status, got_message = await fetch_error(
        jp_fetch, *API, path, method="POST", body=json.dumps(body)
    )

    assert got_status == status
    assert message in got_message
    assert bookstore_ext.runs.active == {}
    assert s3.list_object_versions(Bucket=s3_bucket, Prefix="runs/").get("Versions", []) == []


async def test_a_body_that_is_not_json_is_a_400(jp_fetch: Any, bookstore_ext: Any) -> None:
    status, message = await fetch_error(jp_fetch, *API, "ok.ipynb", method="POST", body="{x")
    assert status == 400
    assert "not valid JSON" in message


async def test_a_notebook_without_runs_lists_none(
    jp_fetch: Any, bookstore_ext: Any, s3_bucket: str
) -> None:
    body = await get_json(jp_fetch, *API, "never.ipynb")
    assert body == {
        "path": "never.ipynb",
        "s3_path": f"s3://{s3_bucket}/runs/never.ipynb",
        "runs": [],
        "next_token": None,
    }
    status, _ = await fetch_error(jp_fetch, *API, "never.ipynb", params={"version_id": "abc"})
    assert status == 404


async def test_the_history_page_shows_a_running_run_and_refreshes_until_it_ends(
    jp_fetch: Any, bookstore_ext: Any, s3: Any, s3_bucket: str
) -> None:
    publish(s3, s3_bucket, "shown.ipynb", param_notebook(WAIT_CELL))
    started = await start(jp_fetch, "shown.ipynb", parameters={"x": 3})

    r = await jp_fetch("bookstore", "versions", "shown.ipynb")
    await bookstore_ext.runs.stop(timeout=60)

    page = r.body.decode()
    assert f'data-run-id="{started["run_id"]}" data-status="running"' in page
    assert '<meta http-equiv="refresh"' in page
    assert "x=3" in page
    assert "Run this version" in page
