"""Shim for tools that still call ``python setup.py``.

``pyproject.toml`` is the source of truth: pip builds bookstore with hatchling and
hatch-jupyter-builder (see CONTRIBUTING.md, "Build backend"), which also compiles the
frontend extension.
"""

__import__("setuptools").setup()
