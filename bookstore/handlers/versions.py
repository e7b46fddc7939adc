"""Version history (issue 4): placeholder until the versions handlers land."""

from __future__ import annotations

from typing import Any

default_handlers: list[tuple[str, Any]] = []
