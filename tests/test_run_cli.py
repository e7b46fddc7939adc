"""``bookstore run`` and ``bookstore runs``: papermill runs archived with their provenance."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from run_helpers import (
    cli_process,
    outputs_text,
    param_notebook,
    publish,
    run_versions,
    wait_while_running,
)

from bookstore.cli import main
from bookstore.testing import TcpProxy


@pytest.fixture
def env(bookstore_cli_env: dict[str, str]) -> dict[str, str]:
    """The command line's whole configuration, from the environment (as in a container)."""
    return bookstore_cli_env


def test_a_pinned_run_uses_the_old_code_and_records_its_provenance(
    env: dict[str, str], s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    old = publish(s3, s3_bucket, "team/report.ipynb", param_notebook("print('old', x * 2)"))
    new = publish(s3, s3_bucket, "team/report.ipynb", param_notebook("print('new', x * 2)"))
    old_sha = hashlib.sha256(
        s3.get_object(Bucket=s3_bucket, Key="published/team/report.ipynb", VersionId=old)[
            "Body"
        ].read()
    ).hexdigest()

    pinned = main(["run", "team/report.ipynb", "--version-id", old, "-p", "x", "21", "--json"])
    pinned_out = capsys.readouterr()
    latest = main(["run", "team/report.ipynb"])
    latest_out = capsys.readouterr()

    assert pinned == 0, pinned_out.err
    assert latest == 0, latest_out.err
    record = json.loads(pinned_out.out)
    runs = run_versions(s3, s3_bucket, "team/report.ipynb")
    assert len(runs) == 2
    first = next(r for r in runs if r["version_id"] == record["output_version_id"])
    assert "old 42" in outputs_text(first["nb"])
    prov = first["nb"]["metadata"]["bookstore"]["run"]
    assert prov["run_id"] == record["run_id"]
    assert prov["status"] == "succeeded"
    assert prov["source"] == {
        "bucket": s3_bucket,
        "key": "published/team/report.ipynb",
        "prefix": "published",
        "version_id": old,
        "sha256": old_sha,
    }
    assert prov["parameters"] == {"x": 21}
    assert prov["kernel"] == "python3"
    started, finished = (
        datetime.fromisoformat(prov[k].replace("Z", "+00:00")) for k in ("started", "finished")
    )
    assert started < finished
    # The duration is the run's own (a kernel ran a cell), and agrees with its timestamps.
    assert prov["duration"] > 0
    assert prov["duration"] == pytest.approx((finished - started).total_seconds(), abs=0.002)
    assert prov["papermill_version"]
    assert prov["bookstore_version"]
    assert prov["host"]
    meta = first["metadata"]
    assert meta["run-id"] == record["run_id"]
    assert meta["run-status"] == "succeeded"
    assert meta["source-version-id"] == old
    assert meta["sha256"] == hashlib.sha256(first["body"]).hexdigest()
    # The run of "latest" recorded the version it resolved to.
    second = next(r for r in runs if r["version_id"] != record["output_version_id"])
    assert second["metadata"]["source-version-id"] == new
    assert "new 2" in outputs_text(second["nb"])

    assert main(["runs", "team/report.ipynb", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["output_version_id"] for r in data["runs"]] == [r["version_id"] for r in runs]
    entry = next(r for r in data["runs"] if r["run_id"] == record["run_id"])
    assert entry["source_version_id"] == old
    assert entry["parameters"] == {"x": 21}
    assert entry["status"] == "succeeded"
    assert main(["runs", "team/report.ipynb"]) == 0
    table = capsys.readouterr().out
    assert record["run_id"] in table
    assert "x=21" in table


def test_parameters_from_a_file_and_a_workspace_run(
    env: dict[str, str], s3: Any, s3_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(s3, s3_bucket, "nb.ipynb", param_notebook("print(x, y)", "x = 1\ny = 'a'"), "workspace")
    params = tmp_path / "params.yaml"
    params.write_text("x: 7\ny: from-file\n")

    code = main(["run", "nb.ipynb", "--from", "workspace", "-f", str(params), "-r", "x", "8"])

    assert code == 0, capsys.readouterr().err
    (run,) = run_versions(s3, s3_bucket, "nb.ipynb")
    assert "8 from-file" in outputs_text(run["nb"])
    assert run["nb"]["metadata"]["bookstore"]["run"]["parameters"] == {"x": "8", "y": "from-file"}
    assert run["nb"]["metadata"]["bookstore"]["run"]["source"]["prefix"] == "workspace"


def test_a_failing_notebook_is_archived_as_failed_and_exits_1(
    env: dict[str, str], s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = "print('before')\nraise ValueError('bad input data')"
    publish(s3, s3_bucket, "fails.ipynb", param_notebook(source))

    code = main(["run", "fails.ipynb", "--json"])
    out, err = capsys.readouterr()

    assert code == 1, err
    (run,) = run_versions(s3, s3_bucket, "fails.ipynb")
    prov = run["nb"]["metadata"]["bookstore"]["run"]
    assert prov["status"] == "failed"
    # Cell 1 of the source (papermill's injected-parameters cell is not counted).
    assert prov["error"] == {"cell_index": 1, "ename": "ValueError", "evalue": "bad input data"}
    assert "before" in outputs_text(run["nb"])
    assert run["metadata"]["run-status"] == "failed"
    assert json.loads(out)["status"] == "failed"


# A cell that prints, says it started (a file: the print is out by then, so an interrupt
# cannot come before it), then waits for a "go" file.
WAIT_CELL = (
    "import pathlib, time\n"
    "print('partial output', flush=True)\n"
    "pathlib.Path('started').write_text('1')\n"
    "while not pathlib.Path('go').exists():\n"
    "    time.sleep(0.05)\n"
    "print('after go')"
)


def test_sigterm_during_a_long_cell_archives_the_partial_output_as_cancelled(
    env: dict[str, str], s3: Any, s3_bucket: str, tmp_path: Path
) -> None:
    publish(s3, s3_bucket, "long.ipynb", param_notebook(WAIT_CELL))
    with cli_process(["run", "long.ipynb", "--cwd", str(tmp_path), "--json"], tmp_path) as proc:
        wait_while_running(proc, (tmp_path / "started").exists, "the long cell to start")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)

    assert proc.returncode == 3, err
    (run,) = run_versions(s3, s3_bucket, "long.ipynb")
    prov = run["nb"]["metadata"]["bookstore"]["run"]
    assert prov["status"] == "cancelled"
    assert prov["cancel_reason"] == "SIGTERM"
    assert "partial output" in outputs_text(run["nb"])
    assert "after go" not in outputs_text(run["nb"])
    assert run["metadata"]["run-status"] == "cancelled"
    assert json.loads(out)["output_version_id"] == run["version_id"]


def test_a_cell_timeout_cancels_the_run(
    env: dict[str, str], s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(s3, s3_bucket, "slow.ipynb", param_notebook("import time\ntime.sleep(120)"))

    code = main(["run", "slow.ipynb", "--cell-timeout", "2"])

    assert code == 3, capsys.readouterr().err
    (run,) = run_versions(s3, s3_bucket, "slow.ipynb")
    prov = run["nb"]["metadata"]["bookstore"]["run"]
    assert prov["status"] == "cancelled"
    assert prov["cancel_reason"] == "cell timeout (2 s)"


def test_s3_down_at_the_end_of_a_run_then_back(
    env: dict[str, str], s3: Any, s3_bucket: str, tmp_path: Path, s3_proxy: TcpProxy
) -> None:
    publish(s3, s3_bucket, "net.ipynb", param_notebook(WAIT_CELL))
    os.environ["JPYNB_S3_ENDPOINT_URL"] = s3_proxy.url
    argv = ["run", "net.ipynb", "--cwd", str(tmp_path), "--upload-timeout", "120", "--json"]
    with cli_process([*argv, "--output-dir", str(tmp_path / "out")], tmp_path) as proc:
        wait_while_running(proc, (tmp_path / "started").exists, "the cell to start")
        s3_proxy.cut()
        (tmp_path / "go").write_text("1")
        assert proc.stderr is not None
        seen = ""
        while "retrying" not in seen:  # the upload failed and is being retried
            line = proc.stderr.readline()
            assert line, f"bookstore run ended without retrying: {seen}"
            seen += line
        # The output waits in the local file meanwhile.
        assert len(list((tmp_path / "out").glob("*.ipynb"))) == 1
        s3_proxy.restore()
        out, err = proc.communicate(timeout=120)

    assert proc.returncode == 0, seen + err
    (run,) = run_versions(s3, s3_bucket, "net.ipynb")
    assert "after go" in outputs_text(run["nb"])
    assert json.loads(out)["output_version_id"] == run["version_id"]
    assert list((tmp_path / "out").glob("*.ipynb")) == []


def test_s3_still_down_keeps_the_output_and_exits_4(
    env: dict[str, str], s3: Any, s3_bucket: str, tmp_path: Path, s3_proxy: TcpProxy
) -> None:
    publish(s3, s3_bucket, "net.ipynb", param_notebook(WAIT_CELL))
    os.environ["JPYNB_S3_ENDPOINT_URL"] = s3_proxy.url
    argv = ["run", "net.ipynb", "--cwd", str(tmp_path), "--upload-timeout", "1"]
    with cli_process([*argv, "--output-dir", str(tmp_path / "out")], tmp_path) as proc:
        wait_while_running(proc, (tmp_path / "started").exists, "the cell to start")
        s3_proxy.cut()
        (tmp_path / "go").write_text("1")
        _out, err = proc.communicate(timeout=120)

    assert proc.returncode == 4, err
    (kept,) = (tmp_path / "out").glob("*.ipynb")
    assert str(kept) in err
    nb = json.loads(kept.read_text())
    assert nb["metadata"]["bookstore"]["run"]["status"] == "succeeded"
    assert "after go" in outputs_text(nb)
    assert run_versions(s3, s3_bucket, "net.ipynb") == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "missing.ipynb"], "there is no published notebook missing.ipynb"),
        (["run", "ok.ipynb", "--version-id", "nosuchversion"], "does not exist"),
        (["run", "--s3-key", "x/ok.ipynb", "--s3-bucket", "not-allowed-bucket"], "not allowed"),
        (["run", "ok.ipynb", "-f", "{bad_params}"], "is not valid YAML"),
        (["run", "ok.ipynb", "-f", "{list_params}"], "must hold a mapping"),
        (["run", "ok.ipynb", "--kernel", "no-such-kernel"], "no kernel named 'no-such-kernel'"),
        (["run", "ok.ipynb", "-p", "x"], "-p needs NAME VALUE"),
        (["run", "notes.txt"], "not a notebook"),
    ],
)
def test_bad_input_is_a_clear_usage_error_with_nothing_written(
    env: dict[str, str],
    s3: Any,
    s3_bucket: str,
    tmp_path: Path,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    publish(s3, s3_bucket, "ok.ipynb", param_notebook("print(x)"))
    (tmp_path / "bad.yaml").write_text("x: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    argv = [
        a.format(bad_params=tmp_path / "bad.yaml", list_params=tmp_path / "list.yaml") for a in argv
    ]

    code = main([argv[0], "--output-dir", str(tmp_path / "out"), *argv[1:]])
    err = capsys.readouterr().err

    assert code == 2, err
    assert message in err
    assert err.startswith("bookstore run: error: ")
    listed = s3.list_object_versions(Bucket=s3_bucket, Prefix="runs/")
    assert listed.get("Versions", []) == []
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
