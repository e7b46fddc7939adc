"""Publishing (issue 3): placeholder until the publish handler lands."""

from __future__ import annotations

from typing import Any

default_handlers: list[tuple[str, Any]] = []
