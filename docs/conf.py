"""Sphinx configuration: ``sphinx-build docs docs/_build`` (needs the ``docs`` extra)."""

from bookstore import __version__

project = "bookstore"
author = "bookstore contributors"
release = __version__
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "alabaster"
