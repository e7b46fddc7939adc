"""The ``bookstore`` command line, against a real S3 server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers import list_versions, notebook

from bookstore.cli import main
from bookstore.spool import Spool, SpoolEntry
from bookstore.testing import S3Server


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Jupyter config directory, and no system-wide config."""
    path = tmp_path / "jupyter-config"
    path.mkdir()
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(path))
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(path))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    monkeypatch.setenv("JUPYTER_NO_CONFIG", "")
    return path


@pytest.fixture
def env(config_dir: Path, bookstore_cli_env: dict[str, str]) -> dict[str, str]:
    """Point the command line at the test bucket through its environment variables."""
    return bookstore_cli_env


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def put_versions(s3: Any, bucket: str, key: str, sources: list[str]) -> list[str]:
    """Store one notebook version per source, oldest first, the way bookstore does."""
    ids = []
    for i, source in enumerate(sources):
        body = json.dumps(notebook(source)).encode()
        put = s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            Metadata={
                "sha256": hashlib.sha256(body).hexdigest(),
                "user": "alice",
                "saved-at": f"2024-01-0{i + 1}T00:00:00.000Z",
            },
        )
        ids.append(put["VersionId"])
    return ids


# --- versions -----------------------------------------------------------------------------------


def test_versions_table_lists_newest_first(
    env: Any, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = put_versions(s3, s3_bucket, "workspace/nb.ipynb", ["one", "two", "three"])

    code, out, err = run(capsys, "versions", "nb.ipynb")

    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"s3://{s3_bucket}/workspace/nb.ipynb: 3 versions"
    assert lines[1].split() == [
        "VERSION",
        "ID",
        "SAVED",
        "(UTC)",
        "SIZE",
        "USER",
        "SHA256",
        "NOTES",
    ]
    assert [line.split()[0] for line in lines[3:]] == list(reversed(ids))
    assert "latest" in lines[3]
    assert "alice" in lines[4]


def test_versions_json_matches_the_rest_api_shape(
    env: Any, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = put_versions(s3, s3_bucket, "published/nb.ipynb", ["one", "two"])

    code, out, _ = run(capsys, "versions", "nb.ipynb", "--prefix=published", "--json")

    data = json.loads(out)
    assert code == 0
    assert data["prefix"] == "published"
    assert [v["version_id"] for v in data["versions"]] == list(reversed(ids))
    assert {v["user"] for v in data["versions"]} == {"alice"}
    assert data["versions"][0]["last_modified"].endswith("Z")


def test_versions_lists_pending_saves_from_the_spool(
    env: dict[str, str], s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    put_versions(s3, s3_bucket, "workspace/nb.ipynb", ["uploaded"])
    spool = Spool(env["BOOKSTORE_SPOOL_DIR"])
    spool.open()
    entry = SpoolEntry(
        save_id="01700000000000000000-abcdef",
        bucket=s3_bucket,
        key="workspace/nb.ipynb",
        path="nb.ipynb",
        user="bob",
        saved_at="2024-02-01T00:00:00.000Z",
        sha256=hashlib.sha256(b"x").hexdigest(),
        size=1,
    )
    spool.commit(spool.stage(entry, b"x"))

    code, out, _ = run(capsys, "versions", "nb.ipynb", "--json")

    versions = json.loads(out)["versions"]
    assert code == 0
    assert [v["pending"] for v in versions] == [True, False]
    assert versions[0]["save_id"] == entry.save_id


def test_settings_come_from_jupyter_config_files_and_flags_override_them(
    s3_server: S3Server,
    s3: Any,
    s3_bucket: str,
    config_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    put_versions(s3, s3_bucket, "mine/nb.ipynb", ["one"])
    (config_dir / "jupyter_server_config.py").write_text(
        f"c.BookstoreSettings.s3_bucket = {s3_bucket!r}\n"
        f"c.BookstoreSettings.s3_endpoint_url = {s3_server.endpoint_url!r}\n"
        f"c.BookstoreSettings.s3_access_key_id = {s3_server.access_key_id!r}\n"
        f"c.BookstoreSettings.s3_secret_access_key = {s3_server.secret_access_key!r}\n"
        "c.BookstoreSettings.workspace_prefix = 'mine'\n"
    )

    code, out, err = run(capsys, "versions", "nb.ipynb", "--json")
    assert code == 0, err
    assert json.loads(out)["s3_path"] == f"s3://{s3_bucket}/mine/nb.ipynb"

    code, _, err = run(capsys, "versions", "nb.ipynb", "--workspace-prefix=elsewhere")
    assert code == 1
    assert "no archived versions" in err


# --- show -------------------------------------------------------------------------------------


def test_show_latest_and_a_given_version(
    env: Any, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = put_versions(s3, s3_bucket, "workspace/nb.ipynb", ["first", "second"])

    code, out, _ = run(capsys, "show", "nb.ipynb")
    assert code == 0
    assert "second  # 0" in out
    assert ids[1] in out

    code, out, _ = run(capsys, "show", "nb.ipynb", "--version", ids[0], "--json")
    model = json.loads(out)
    assert model["version_id"] == ids[0]
    assert model["type"] == "notebook"
    assert model["is_latest"] is False


def test_show_raw_writes_the_stored_bytes(
    env: Any,
    s3: Any,
    s3_bucket: str,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    ids = put_versions(s3, s3_bucket, "workspace/nb.ipynb", ["first"])
    stored = s3.get_object(Bucket=s3_bucket, Key="workspace/nb.ipynb")["Body"].read()

    code = main(["show", "nb.ipynb", f"--version={ids[0]}", "--raw"])

    assert code == 0
    assert capsysbinary.readouterr().out == stored


# --- diff -----------------------------------------------------------------------------------------


def test_diff_between_two_versions(
    env: Any, s3: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = put_versions(s3, s3_bucket, "workspace/nb.ipynb", ["before", "after"])

    code, out, _ = run(capsys, "diff", "nb.ipynb", a, b)

    assert code == 0
    assert "- before  # 0" in out
    assert "+ after  # 0" in out
    assert out.strip().endswith("1 cell(s) changed")

    code, out, _ = run(capsys, "diff", "nb.ipynb", a, b, "--json")
    assert [d["key"] for d in json.loads(out)["diff"]] == ["cells"]


def test_diff_against_the_local_file(
    env: Any, s3: Any, s3_bucket: str, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (a,) = put_versions(s3, s3_bucket, "workspace/nb.ipynb", ["archived"])
    (root / "nb.ipynb").write_text(json.dumps(notebook("local edit")))

    code, out, _ = run(capsys, "diff", "nb.ipynb", a, f"--root-dir={root}")

    assert code == 0
    assert "+ local edit  # 0" in out


# --- restore ------------------------------------------------------------------------------------


def test_restore_writes_the_local_file_and_archives_it(
    env: Any, s3: Any, s3_bucket: str, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = put_versions(s3, s3_bucket, "workspace/sub/nb.ipynb", ["good", "bad"])

    code, out, err = run(
        capsys, "restore", "sub/nb.ipynb", "--version", ids[0], f"--root-dir={root}", "--json"
    )

    assert code == 0, err
    data = json.loads(out)
    good = s3.get_object(Bucket=s3_bucket, Key="workspace/sub/nb.ipynb", VersionId=ids[0])
    good_bytes = good["Body"].read()
    assert (root / "sub" / "nb.ipynb").read_bytes() == good_bytes
    versions = list_versions(s3, s3_bucket, "workspace/sub/nb.ipynb")
    assert len(versions) == 3
    latest = s3.get_object(Bucket=s3_bucket, Key="workspace/sub/nb.ipynb")
    assert latest["VersionId"] == data["version_id"]
    assert latest["Body"].read() == good_bytes
    assert latest["Metadata"]["restored-from"] == ids[0]
    assert latest["Metadata"]["sha256"] == hashlib.sha256(good_bytes).hexdigest()


def test_restore_stores_the_file_type_as_the_archiver_does(
    env: Any, s3: Any, s3_bucket: str, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = s3.put_object(Bucket=s3_bucket, Key="workspace/data.csv", Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=s3_bucket, Key="workspace/data.csv", Body=b"a,b\n3,4\n")

    code, _, err = run(
        capsys, "restore", "data.csv", f"--version={first['VersionId']}", f"--root-dir={root}"
    )

    assert code == 0, err
    latest = s3.get_object(Bucket=s3_bucket, Key="workspace/data.csv")
    assert latest["Body"].read() == b"a,b\n1,2\n"
    # What a save of data.csv through Jupyter stores (mimetypes), not application/octet-stream.
    assert latest["ContentType"] == "text/csv"
    assert latest["Metadata"]["restored-from"] == first["VersionId"]


def test_restore_local_only_does_not_upload(
    env: Any, s3: Any, s3_bucket: str, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = put_versions(s3, s3_bucket, "workspace/nb.ipynb", ["good", "bad"])

    code, _, _ = run(
        capsys, "restore", "nb.ipynb", f"--version={ids[0]}", f"--root-dir={root}", "--local-only"
    )

    assert code == 0
    assert (root / "nb.ipynb").exists()
    assert len(list_versions(s3, s3_bucket, "workspace/nb.ipynb")) == 2


def test_restore_needs_a_version(env: Any, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "restore", "nb.ipynb", f"--root-dir={root}")
    assert code == 2
    assert "--version" in err
    assert len(err.strip().splitlines()) == 1


# --- publish and clone --------------------------------------------------------------------------


def test_publish_uploads_the_local_notebook(
    env: Any, s3: Any, s3_bucket: str, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (root / "report.ipynb").write_text(json.dumps(notebook("results")))

    code, out, err = run(capsys, "publish", "report.ipynb", f"--root-dir={root}", "--json")

    assert code == 0, err
    data = json.loads(out)
    obj = s3.get_object(Bucket=s3_bucket, Key="published/report.ipynb")
    assert obj["VersionId"] == data["versionID"]
    assert b"results" in obj["Body"].read()


def test_publish_refuses_an_invalid_notebook(
    env: Any, s3: Any, s3_bucket: str, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (root / "bad.ipynb").write_text('{"cells": "nope"}')

    code, _, err = run(capsys, "publish", "bad.ipynb", f"--root-dir={root}")

    assert code == 1
    assert "notebook" in err
    assert len(err.strip().splitlines()) == 1
    assert list_versions(s3, s3_bucket, "published/bad.ipynb") == []


def test_clone_a_version_into_the_local_folder(
    env: Any, s3: Any, s3_bucket: str, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = put_versions(s3, s3_bucket, "published/shared.ipynb", ["old", "new"])

    code, _, err = run(
        capsys, "clone", "published/shared.ipynb", f"--version={ids[0]}", f"--root-dir={root}"
    )
    assert code == 0, err
    assert "old  # 0" in (root / "shared.ipynb").read_text()

    # The local file is kept: as the clone API does, the first free name is used.
    code, out, err = run(capsys, "clone", "published/shared.ipynb", f"--root-dir={root}")
    assert code == 0, err
    assert "old  # 0" in (root / "shared.ipynb").read_text()
    assert "new  # 0" in (root / "shared-1.ipynb").read_text()
    assert str(root / "shared-1.ipynb") in out

    code, _, _ = run(
        capsys, "clone", "published/shared.ipynb", f"--root-dir={root}", "--to=copy/new.ipynb"
    )
    assert code == 0
    assert "new  # 0" in (root / "copy" / "new.ipynb").read_text()


def test_reads_over_max_read_bytes_fail_and_write_nothing(
    env: Any, s3: Any, s3_bucket: str, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = os.urandom(5000)
    version = s3.put_object(Bucket=s3_bucket, Key="workspace/data.bin", Body=big)["VersionId"]
    limit = "--BookstoreSettings.max_read_bytes=4096"
    for argv in (
        ("clone", "workspace/data.bin", f"--root-dir={root}"),
        ("show", "data.bin", f"--version={version}", "--raw"),
        ("restore", "data.bin", f"--version={version}", f"--root-dir={root}"),
    ):
        code, _, err = run(capsys, *argv, limit)
        assert code == 1, argv
        assert "max_read_bytes" in err
    assert list(root.iterdir()) == []
    # Under the limit the clone streams into place, byte for byte, leaving no temporary.
    code, _, err = run(capsys, "clone", "workspace/data.bin", f"--root-dir={root}")
    assert code == 0, err
    assert (root / "data.bin").read_bytes() == big
    assert [p.name for p in root.iterdir()] == ["data.bin"]


# --- doctor ---------------------------------------------------------------------------------------


def test_doctor_passes_on_a_good_setup(env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "doctor")

    assert code == 0, out + err
    assert "All good." in out
    assert "versioning" in out
    assert env["JPYNB_S3_SECRET_ACCESS_KEY"] not in out


def test_doctor_says_how_to_enable_versioning(
    env: Any,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = f"unversioned-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket, versioning=False)
    monkeypatch.setenv("JPYNB_S3_BUCKET", bucket)

    code, out, _ = run(capsys, "doctor", "--json")

    data = json.loads(out)
    assert code == 1
    assert data["ok"] is False
    (check,) = [c for c in data["checks"] if c["check"] == "versioning"]
    assert check["status"] == "FAIL"
    assert f"put-bucket-versioning --bucket {bucket}" in check["fix"]


def test_doctor_reports_an_unreachable_endpoint(
    env: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JPYNB_S3_ENDPOINT_URL", "http://127.0.0.1:9")

    code, out, _ = run(capsys, "doctor", "--BookstoreSettings.s3_connect_timeout=0.5")

    assert code == 1
    assert "FAIL" in out
    assert "unreachable" in out
    assert "s3_endpoint_url" in out


def test_doctor_counts_pending_saves(
    env: dict[str, str], s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = Spool(env["BOOKSTORE_SPOOL_DIR"])
    spool.open()
    for n in range(2):
        entry = SpoolEntry(
            save_id=f"0170000000000000000{n}-abcdef",
            bucket=s3_bucket,
            key="workspace/a.ipynb",
            path="a.ipynb",
            user="u",
            saved_at="2020-01-01T00:00:00.000Z",
            sha256="0" * 64,
            size=1,
        )
        spool.commit(spool.stage(entry, b"x"))

    code, out, _ = run(capsys, "doctor", "--json")

    (pending,) = [c for c in json.loads(out)["checks"] if c["check"] == "pending"]
    assert code == 0
    assert pending["status"] == "WARN"  # saved long ago and still not uploaded
    assert pending["detail"].startswith("2 save(s) waiting")


def test_doctor_reports_lock_owner_dropped_and_set_aside_saves(
    env: dict[str, str], s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = Spool(env["BOOKSTORE_SPOOL_DIR"])
    assert spool.lock()  # as a running server holds it
    try:
        spool.open()
        entry = SpoolEntry(
            save_id="01700000000000000000-abcdef",
            bucket=s3_bucket,
            key="workspace/" + "x" * 1100,
            path="x" * 1100,
            user="u",
            saved_at="2020-01-01T00:00:00.000Z",
            sha256="0" * 64,
            size=1,
        )
        staged = spool.stage(entry, b"x")
        spool.set_aside(entry, staged.tmp_path, "the S3 key is too long", "KeyTooLongError")
        spool.write_stats({"dropped_saves": 7})
        # A second server, gone (SIGKILL): its sibling spool still names it.
        sibling = Spool(env["BOOKSTORE_SPOOL_DIR"] + "-2")
        sibling.open()
        with open(os.path.join(sibling.directory, ".lock"), "w") as f:
            json.dump({"pid": 2**22 + 12345, "host": os.uname().nodename, "since": "x"}, f)

        code, out, _ = run(capsys, "doctor", "--json")
    finally:
        spool.unlock()

    checks = json.loads(out)["checks"]
    by_name: dict[str, list[dict[str, str]]] = {}
    for c in checks:
        by_name.setdefault(c["check"], []).append(c)
    assert code == 0
    locks = by_name["spool lock"]
    assert locks[0]["status"] == "OK"
    assert f"pid {os.getpid()}" in locks[0]["detail"]
    assert locks[1]["status"] == "WARN"
    assert "is gone" in locks[1]["detail"]
    (dropped,) = by_name["dropped"]
    assert dropped["detail"].startswith("7 save(s) were dropped")
    (aside,) = by_name["set aside"]
    assert "too long" in aside["detail"]
    assert os.path.join("set-aside", entry.save_id + ".entry") in aside["detail"]


# --- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "status", "needle"),
    [
        (["versions"], 2, "PATH"),
        (["versions", "nope.ipynb"], 1, "no archived versions"),
        (["show", "nb.ipynb", "--version=bad id"], 1, "not a valid S3 version id"),
        (["show", "nb.ipynb", "--version=0123456789abcdef0123456789abcdef"], 1, "does not exist"),
        (["diff", "notes.txt", "abc"], 1, "not a notebook"),
        (["versions", "../up.ipynb"], 1, "bad path"),
    ],
)
def test_failures_exit_non_zero_with_one_line(
    env: Any,
    s3: Any,
    s3_bucket: str,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    status: int,
    needle: str,
) -> None:
    put_versions(s3, s3_bucket, "workspace/nb.ipynb", ["one"])

    code, out, err = run(capsys, *argv)

    assert code == status
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert out == ""


# --- installed commands ---------------------------------------------------------------------------


def _script(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.skip(f"{name} is not installed (pip install -e .)")
    return str(path)


# One process each (a fresh interpreter costs a second or more): the command as installed
# succeeds, and ``jupyter bookstore`` fails as ``bookstore`` does (status 1, one line).
@pytest.mark.parametrize(
    ("command", "path"),
    [(["bookstore"], "nb.ipynb"), (["jupyter", "bookstore"], "missing.ipynb")],
    ids=["bookstore", "jupyter bookstore"],
)
def test_installed_command_runs(
    env: dict[str, str], s3: Any, s3_bucket: str, command: list[str], path: str
) -> None:
    put_versions(s3, s3_bucket, "workspace/nb.ipynb", ["one"])
    exe = [_script(command[0]), *command[1:]]
    child_env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }

    done = subprocess.run(
        [*exe, "versions", path, "--json"],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=120,
        check=False,
    )

    if path == "nb.ipynb":
        assert done.returncode == 0, done.stderr
        assert len(json.loads(done.stdout)["versions"]) == 1
    else:
        assert done.returncode == 1, done.stdout
        assert done.stderr.startswith("bookstore versions: error:")
