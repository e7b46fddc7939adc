"""Cloning (issue 3): placeholder until the clone handlers land."""

from __future__ import annotations

from typing import Any

s3_handlers: list[tuple[str, Any]] = []
fs_handlers: list[tuple[str, Any]] = []
