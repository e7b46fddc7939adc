"""The base of every ``bookstore`` subcommand: config files, settings, arguments, errors."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, ClassVar

from jupyter_client.jsonutil import json_default
from jupyter_core.application import JupyterApp, base_aliases, base_flags
from traitlets import Bool, TraitError, Unicode, default
from traitlets.config import Application
from traitlets.config.loader import ConfigFileNotFound

from .._version import __version__
from ..errors import BookstoreError
from ..s3 import (
    S3Store,
)
from ..settings import BookstoreSettings, clean_api_path

CONFIG_FILES = ("jupyter_notebook_config", "jupyter_server_config", "jupyter_bookstore_config")

#: Where the server's root directory is configured, highest priority first.
ROOT_DIR_SETTINGS = (
    ("ServerApp", "root_dir"),
    ("ServerApp", "notebook_dir"),
    ("NotebookApp", "notebook_dir"),
)

#: ``bookstore --help`` opens with this.


def command_help(synopsis: str, text: str, examples: Sequence[str]) -> str:
    """A subcommand's help: its synopsis, what it does, and examples to copy."""
    lines = "\n".join(f"    {e}" for e in examples)
    return f"Usage:\n    {synopsis}\n\n{text}\n\nExamples:\n{lines}\n"


class CommandError(Exception):
    """A failure to report in one line (exit status 1)."""

    status = 1


class UsageError(CommandError):
    """Wrong arguments (exit status 2)."""

    status = 2


# --- base command -------------------------------------------------------------------------------

common_aliases: dict[str, Any] = {
    **base_aliases,
    "bucket": "BookstoreSettings.s3_bucket",
    "endpoint-url": "BookstoreSettings.s3_endpoint_url",
    "region": "BookstoreSettings.s3_region_name",
    "workspace-prefix": "BookstoreSettings.workspace_prefix",
    "published-prefix": "BookstoreSettings.published_prefix",
    "spool-dir": "BookstoreSettings.spool_dir",
    "root-dir": "BookstoreCommand.root_dir",
}
common_flags: dict[str, Any] = {
    **{k: v for k, v in base_flags.items() if k not in {"generate-config", "y"}},
    "json": ({"BookstoreCommand": {"json_output": True}}, "Print JSON instead of a table."),
}


class BookstoreCommand(JupyterApp):
    """Base of the subcommands: settings, the S3 store, arguments and output."""

    name = "bookstore"
    version = __version__
    classes = [BookstoreSettings]
    aliases = common_aliases
    flags = common_flags
    #: Positional arguments: names shown in the usage line.
    arguments: ClassVar[tuple[str, ...]] = ()
    optional_arguments: ClassVar[tuple[str, ...]] = ()

    json_output = Bool(False, help="Print JSON instead of a table.").tag(config=True)
    root_dir = Unicode(
        "",
        help=(
            "Local folder that Jupyter paths are relative to (restore, publish, clone and "
            "diff against the local file). Default: the server's c.ServerApp.root_dir from "
            "the Jupyter config files, else the current directory."
        ),
    ).tag(config=True)

    @default("root_dir")
    def _root_dir_default(self) -> str:
        """The server's root directory, from the same config files the server reads."""
        for section, name in ROOT_DIR_SETTINGS:
            if section in self.config and name in self.config[section]:
                value = self.config[section][name]
                if isinstance(value, str) and value:
                    return value
        return ""

    def _log_level_default(self) -> int:
        import logging

        return logging.WARNING

    def _find_subcommand(self, name: str) -> str:
        return ""  # no `bookstore-<name>` executables: arguments are paths

    def migrate_config(self) -> None:
        """Never migrate IPython-era config from a command-line tool."""

    def load_config_file(self, suppress_errors: bool = True) -> None:  # type: ignore[override]
        """Read the server's config files (and ``jupyter_bookstore_config``)."""
        paths = self.config_file_paths
        for name in ("jupyter_config", *CONFIG_FILES):
            try:
                Application.load_config_file(self, name, path=paths)
            except ConfigFileNotFound:
                pass
        if self.config_file:
            directory, filename = os.path.split(self.config_file)
            Application.load_config_file(self, filename, path=directory)

    def parse_command_line(self, argv: Any = None) -> None:
        # traitlets reserves --version for printing the release; ours selects a version.
        fixed: list[str] = []
        for arg in list(argv if argv is not None else sys.argv[1:]):
            if arg == "--version":
                fixed.append("--version-id")
            elif arg.startswith("--version="):
                fixed.append("--version-id=" + arg.split("=", 1)[1])
            else:
                fixed.append(arg)
        super().parse_command_line(fixed)

    # --- running --------------------------------------------------------------------------

    def local_path(self, path: str) -> str:
        root = os.path.abspath(os.path.expanduser(self.root_dir or os.getcwd()))
        return os.path.join(root, *path.split("/"))

    def args(self) -> list[str]:
        """The positional arguments; usage error if their number is wrong."""
        args = list(self.extra_args)
        low, high = len(self.arguments), len(self.arguments) + len(self.optional_arguments)
        if not low <= len(args) <= high:
            names = " ".join([*self.arguments, *(f"[{a}]" for a in self.optional_arguments)])
            self.usage_error(f"expected {names}, got {len(args)} argument(s)")
        return args

    def usage_error(self, message: str) -> None:
        raise UsageError(f"{message} (see `bookstore {self.subcommand_name} --help`)")

    def start(self) -> None:
        try:
            args = self.args()
            settings = BookstoreSettings(parent=self)
        except (UsageError, TraitError) as e:
            self.fail(str(e))
            self.exit(getattr(e, "status", 1))
        self.exit(asyncio.run(self._main(settings, args)))

    async def _main(self, settings: BookstoreSettings, args: list[str]) -> int:
        store = S3Store(settings, log=self.log)
        try:
            await self.run(settings, store, args)
        except CommandError as e:
            self.fail(str(e))
            return e.status
        except (BookstoreError, TraitError, OSError) as e:
            self.fail(str(e))
            return 1
        finally:
            await store.close()
        return 0

    def fail(self, message: str) -> None:
        """Report a failure in one line on stderr."""
        one_line = " ".join(message.split())
        sys.stderr.write(f"bookstore {self.subcommand_name}: error: {one_line}\n")

    @property
    def subcommand_name(self) -> str:
        return self.name.rsplit("-", 1)[-1]

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        raise NotImplementedError

    # --- helpers ----------------------------------------------------------------------------

    @staticmethod
    def need_bucket(settings: BookstoreSettings) -> None:
        if not settings.s3_bucket:
            raise CommandError(
                "no S3 bucket configured: pass --bucket=NAME, set c.BookstoreSettings.s3_bucket "
                "in jupyter_server_config.py, or the JPYNB_S3_BUCKET environment variable"
            )

    @staticmethod
    def api_path(path: str) -> str:
        try:
            return clean_api_path(path.strip())
        except ValueError as e:
            raise CommandError(f"bad path {path!r}: {e}") from e

    def emit(self, data: Any, text: str) -> None:
        """Print ``data`` as JSON with --json, else ``text``."""
        if self.json_output:
            sys.stdout.write(json.dumps(data, indent=2, default=json_default) + "\n")
        else:
            sys.stdout.write(text)
        sys.stdout.flush()
