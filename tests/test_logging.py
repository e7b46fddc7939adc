"""What one rejected request writes to the server's log: one line, at the level it deserves."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from bookstore.handlers.base import s3_log_level
from bookstore.s3 import S3BadRequest, S3NotFound, S3Refused, S3Unavailable


@pytest.fixture
def server_log(jp_serverapp: Any) -> Iterator[list[logging.LogRecord]]:
    """Every record of the server's, bookstore's and tornado's loggers, at any level."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    ext = jp_serverapp.web_app.settings["bookstore_extension"]
    loggers = {
        jp_serverapp.log,
        ext.log,
        logging.getLogger("tornado.access"),
        logging.getLogger("tornado.general"),
        logging.getLogger("tornado.application"),
    }
    levels = {logger: logger.level for logger in loggers}
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
            logger.setLevel(levels[logger])


def about(records: list[logging.LogRecord], text: str) -> list[logging.LogRecord]:
    return [r for r in records if text in r.getMessage()]


async def test_a_missing_clone_key_logs_one_info_line(
    jp_fetch: Any, s3_bucket: str, server_log: list[logging.LogRecord]
) -> None:
    resp = await jp_fetch(
        "api/bookstore/clone",
        method="POST",
        body=json.dumps({"s3_bucket": s3_bucket, "s3_key": "published/nobody/missing.ipynb"}),
        raise_error=False,
    )

    assert resp.code == 404
    assert json.loads(resp.body)["message"]  # the client still gets the reason
    noisy = [r for r in server_log if r.levelno >= logging.WARNING]
    assert noisy == [], [r.getMessage() for r in noisy]
    lines = [r for r in about(server_log, "missing.ipynb") if r.levelno >= logging.INFO]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.INFO
    assert lines[0].getMessage().startswith("404 POST /")
    assert "/api/bookstore/clone (" in lines[0].getMessage()


async def test_a_bad_request_to_the_history_api_logs_one_info_line(
    jp_fetch: Any, s3_bucket: str, server_log: list[logging.LogRecord]
) -> None:
    resp = await jp_fetch(
        "api/bookstore/versions/nothing-here.ipynb", method="GET", raise_error=False
    )

    assert resp.code == 404
    assert [r for r in server_log if r.levelno >= logging.WARNING] == []
    lines = [r for r in about(server_log, "nothing-here.ipynb") if r.levelno >= logging.INFO]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.INFO


def test_s3_failures_of_ours_stay_warnings_and_missing_objects_are_debug() -> None:
    assert s3_log_level(S3Unavailable("unreachable")) == logging.WARNING
    assert s3_log_level(S3Refused("AccessDenied")) == logging.WARNING
    assert s3_log_level(S3NotFound("no such key")) == logging.DEBUG
    assert s3_log_level(S3BadRequest("bad version id")) == logging.DEBUG
