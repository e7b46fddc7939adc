"""Thin shim so that ``python setup.py`` and old tooling keep working.

``pyproject.toml`` is the source of truth for metadata and dependencies.
"""

from setuptools import setup

setup()
