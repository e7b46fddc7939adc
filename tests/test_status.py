"""``GET /api/bookstore`` and the bucket check made when the extension starts."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers import async_wait_until, notebook, server_config
from jupyter_subprocess import JupyterSubprocess, free_port
from tornado.httpclient import HTTPClientError

import bookstore
from bookstore.testing import S3Server

FEATURES = {"bookstore_valid", "archive_valid", "publish_valid", "s3_clone_valid", "fs_clone_valid"}


async def get_status(jp_fetch: Any) -> dict[str, Any]:
    r = await jp_fetch("api", "bookstore")
    assert r.code == 200
    return json.loads(r.body)


async def problem_lines(caplog: pytest.LogCaptureFixture, count: int) -> list[logging.LogRecord]:
    """bookstore's warnings, once ``count`` are logged (the start-up check runs in background).

    The check logs all its problems at once, without yielding to the loop in between.
    """

    def lines() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.levelno >= logging.WARNING and r.getMessage().startswith("bookstore:")
        ]

    await async_wait_until(
        lambda: len(lines()) >= count, 10, f"{count} warning(s) from the start-up check"
    )
    return lines()


async def test_status_shape(jp_fetch: Any, bookstore_ext: Any, s3_bucket: str) -> None:
    status = await get_status(jp_fetch)
    assert status["release"] == bookstore.__version__
    assert set(status["features"]) == FEATURES
    assert all(isinstance(v, bool) for v in status["features"].values())
    assert status["features"]["bookstore_valid"] is True
    assert status["features"]["archive_valid"] is True
    assert status["features"]["publish_valid"] is True
    archive = status["archive"]
    assert archive["enabled"] is True
    assert archive["pending"] == 0
    assert archive["last_error"] is None
    assert archive["versioning"] == "Enabled"
    assert archive["versioning_enabled"] is True
    assert archive["bucket"] == s3_bucket
    assert archive["bucket_ok"] is True
    assert archive["prefix"] == "workspace"
    assert archive["problems"] == []


async def test_status_counts_uploads(jp_fetch: Any, bookstore_ext: Any) -> None:
    body = json.dumps({"type": "notebook", "content": notebook()})
    await jp_fetch("api", "contents", "counted.ipynb", method="PUT", body=body)
    assert await bookstore_ext.archiver.wait_idle(20)
    archive = (await get_status(jp_fetch))["archive"]
    assert archive["pending"] == 0
    assert archive["uploaded"] == 1
    assert archive["last_upload"]["key"] == "workspace/counted.ipynb"


@pytest.mark.parametrize("token", ["", "wrong-token"])
async def test_unauthenticated_is_refused(jp_fetch: Any, bookstore_ext: Any, token: str) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("api", "bookstore", headers={"Authorization": f"token {token}"})
    assert info.value.code == 403


class TestVersioningOff:
    @pytest.fixture
    def s3_bucket(self, s3_server: S3Server) -> str:
        name = f"test-unversioned-{uuid.uuid4().hex[:12]}"
        s3_server.create_bucket(name, versioning=False)
        return name

    async def test_problem_is_reported_and_logged_once(
        self, jp_fetch: Any, bookstore_ext: Any, caplog: pytest.LogCaptureFixture, s3_bucket: str
    ) -> None:
        lines = await problem_lines(caplog, 1)
        assert len(lines) == 1, [r.getMessage() for r in lines]
        line = lines[0].getMessage()
        assert "versioning is not enabled" in line
        assert s3_bucket in line
        assert "put-bucket-versioning" in line  # says how to fix it
        assert lines[0].exc_info is None  # one line, no traceback
        assert "\n" not in line

        status = await get_status(jp_fetch)
        assert status["archive"]["versioning_enabled"] is False
        assert status["archive"]["versioning"] is None
        assert status["archive"]["bucket_ok"] is True
        assert len(status["archive"]["problems"]) == 1
        assert "versioning is not enabled" in status["archive"]["problems"][0]

        # The server works regardless: saves succeed.
        body = json.dumps({"type": "notebook", "content": notebook()})
        r = await jp_fetch("api", "contents", "x.ipynb", method="PUT", body=body)
        assert r.code == 201


class TestBucketMissing:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {**bookstore_config, "s3_bucket": f"no-such-bucket-{uuid.uuid4().hex[:12]}"}

    async def test_problem_is_reported(
        self, jp_fetch: Any, bookstore_ext: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        lines = await problem_lines(caplog, 1)
        assert len(lines) == 1
        assert "does not exist" in lines[0].getMessage()
        archive = (await get_status(jp_fetch))["archive"]
        assert archive["bucket_ok"] is False
        assert archive["versioning_enabled"] is False
        assert any("does not exist" in p for p in archive["problems"])


class TestS3Unreachable:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        # Nothing listens there.
        return {**bookstore_config, "s3_endpoint_url": f"http://127.0.0.1:{free_port()}"}

    async def test_problem_is_reported(
        self, jp_fetch: Any, bookstore_ext: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        lines = await problem_lines(caplog, 1)
        assert len(lines) == 1
        assert "unreachable" in lines[0].getMessage()
        archive = (await get_status(jp_fetch))["archive"]
        assert archive["bucket_ok"] is False
        assert archive["versioning"] is None
        assert any("unreachable" in p for p in archive["problems"])


class TestWrongCredentials:
    @pytest.fixture
    def bookstore_config(
        self, bookstore_config: dict[str, Any], s3_server: S3Server
    ) -> dict[str, Any]:
        if s3_server.kind == "moto":
            pytest.skip("moto accepts any credentials")
        return {**bookstore_config, "s3_secret_access_key": "not-the-secret"}

    async def test_problem_is_reported(self, jp_fetch: Any, bookstore_ext: Any) -> None:
        archive = (await get_status(jp_fetch))["archive"]
        assert archive["bucket_ok"] is False
        assert archive["problems"], archive
        assert "not-the-secret" not in json.dumps(archive)  # secrets never shown


class TestNotArchiving:
    """The extension without the archiving contents manager: archive_valid is false."""

    @pytest.fixture
    def jp_server_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {
            "ServerApp": {"jpserver_extensions": {"bookstore": True}},
            "BookstoreSettings": bookstore_config,
        }

    async def test_features(self, jp_fetch: Any, bookstore_ext: Any) -> None:
        status = await get_status(jp_fetch)
        assert status["features"]["archive_valid"] is False
        assert status["features"]["publish_valid"] is True
        assert status["archive"]["enabled"] is False


class TestNoBucket:
    @pytest.fixture
    def bookstore_config(self, bookstore_config: dict[str, Any]) -> dict[str, Any]:
        return {**bookstore_config, "s3_bucket": ""}

    async def test_features_are_off(self, jp_fetch: Any, bookstore_ext: Any) -> None:
        status = await get_status(jp_fetch)
        assert status["features"]["archive_valid"] is False
        assert status["features"]["publish_valid"] is False
        assert status["features"]["s3_clone_valid"] is False
        assert status["archive"]["enabled"] is False


@pytest.mark.slow
def test_real_server_starts_and_logs_each_problem_once(
    tmp_path: Path, s3_server: S3Server, bookstore_config: dict[str, Any]
) -> None:
    """A real ``jupyter server`` with an unversioned bucket starts and says why, once."""
    bucket = f"test-unversioned-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket, versioning=False)
    config = server_config({**bookstore_config, "s3_bucket": bucket})
    with JupyterSubprocess("server", tmp_path / "jp", config=config) as jp:
        r = jp.request("GET", "/api/bookstore")
        assert r.status_code == 200
        assert r.json()["archive"]["versioning_enabled"] is False
    log = jp.log_text()
    problem_lines = [ln for ln in log.splitlines() if "versioning is not enabled" in ln]
    assert len(problem_lines) == 1, log[-3000:]
    assert "[W " in problem_lines[0]
