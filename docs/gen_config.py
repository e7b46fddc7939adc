"""Regenerate docs/configuration.md from BookstoreSettings: ``python docs/gen_config.py``."""

from pathlib import Path

from bookstore.settings import config_markdown

Path(__file__).with_name("configuration.md").write_text(config_markdown())
