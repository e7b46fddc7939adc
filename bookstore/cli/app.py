"""``bookstore``: the entry point, dispatching to one module per group of subcommands."""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

from jupyter_core.application import JupyterApp

from .._version import __version__
from ..settings import BookstoreSettings
from .base import BookstoreCommand

DESCRIPTION = """\
bookstore: Jupyter notebook versions, publishing and cloning on versioned S3.

List, show, diff and restore the versions that the bookstore server extension archived at each
save; publish a notebook; clone any S3 object (any version) into your Jupyter folder; check the
setup. It reads the server's config (c.BookstoreSettings and c.ServerApp.root_dir in
jupyter_server_config.py or .json, in JUPYTER_CONFIG_DIR), then the JPYNB_S3_* environment
variables, then flags.

Usage:
    bookstore SUBCOMMAND [ARGS] [OPTIONS]
    bookstore SUBCOMMAND --help     what it does, its options, examples
"""


#: Every subcommand: its class (imported when the subcommand is used, so that a command loads
#: only its own module: ``bookstore run`` never imports the history or doctor code) and its
#: one-line help (the first line of the class's docstring; a test keeps them the same).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "versions": (
        "bookstore.cli.history.VersionsCommand",
        "List the versions of a file, newest first (saves still in the spool first).",
    ),
    "show": ("bookstore.cli.history.ShowCommand", "Print one version (default: the latest)."),
    "diff": (
        "bookstore.cli.history.DiffCommand",
        "What changed between two versions, or from a version to the local file.",
    ),
    "restore": (
        "bookstore.cli.history.RestoreCommand",
        "Write a version to the local file and archive it as the newest version.",
    ),
    "publish": (
        "bookstore.cli.sharing.PublishCommand",
        "Copy the local notebook to the published prefix.",
    ),
    "clone": (
        "bookstore.cli.sharing.CloneCommand",
        "Copy an S3 object (any version) into the local folder.",
    ),
    "doctor": (
        "bookstore.cli.doctor.DoctorCommand",
        "Check the configuration, credentials, bucket, versioning and spool; say what to fix.",
    ),
    "run": (
        "bookstore.cli.run.RunCommand",
        "Run a published notebook version with papermill and archive its output.",
    ),
    "runs": (
        "bookstore.cli.run.RunsCommand",
        "List the archived runs of a notebook, newest first.",
    ),
    "prune": (
        "bookstore.cli.prune.PruneCommand",
        "Thin out old versions under a retention policy (a dry run unless --yes).",
    ),
    "pin": ("bookstore.cli.prune.PinCommand", "Pin a version: bookstore prune never deletes it."),
    "unpin": (
        "bookstore.cli.prune.UnpinCommand",
        "Unpin a version, so bookstore prune may delete it again.",
    ),
    "usage": (
        "bookstore.cli.prune.UsageCommand",
        "Bytes and versions per path and in total, and growth per day over the last week.",
    ),
    "published": (
        "bookstore.cli.published.PublishedCommand",
        "List every user's published notebooks (--owner, --q filter them).",
    ),
}


def loaded_subcommands() -> list[type[BookstoreCommand]]:
    """The subcommand classes imported so far."""
    classes = []
    for target, _ in SUBCOMMANDS.values():
        module, _, name = target.rpartition(".")
        loaded = sys.modules.get(module)
        if loaded is not None:
            classes.append(getattr(loaded, name))
    return classes


class BookstoreApp(JupyterApp):
    """``bookstore``: the entry point, dispatching to the subcommands."""

    name = "bookstore"
    version = __version__
    description = DESCRIPTION
    # `bookstore --help-all` lists every server option: `jupyter server --help-all` cannot
    # (Jupyter prints it before it loads any extension).
    classes = [BookstoreSettings]
    examples = """
    bookstore versions analysis/report.ipynb --limit=5
    bookstore diff analysis/report.ipynb VERSION_ID
    bookstore restore analysis/report.ipynb --version=VERSION_ID
    JUPYTER_CONFIG_DIR=.demo/jupyter/config bookstore doctor
    """
    subcommands = dict(SUBCOMMANDS)

    def _find_subcommand(self, name: str) -> str:
        return ""

    def migrate_config(self) -> None:
        pass

    def start(self) -> None:
        if self.subapp is None:
            self.print_subcommands()
            sys.stderr.write("bookstore: give a subcommand, e.g. `bookstore versions PATH`\n")
            self.exit(2)
        super().start()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit status."""
    from jupyter_core.application import NoStart

    app = BookstoreApp()
    try:
        app.initialize(list(argv) if argv is not None else None)
        app.start()
    except NoStart:
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        apps: list[type[JupyterApp]] = [*loaded_subcommands(), BookstoreApp]
        for cls in apps:
            cls.clear_instance()
        if argv is None:
            _before_exit()
    return 0


def _before_exit() -> None:
    """The command is over and its process exits next (``argv`` came from the command line).

    Freeze the heap: the interpreter's last garbage collections then skip the ~240,000 objects
    of botocore, papermill and Jupyter that exit frees anyway. Those passes were most of the
    time between the end of a ``bookstore run`` and its process's exit (py-spy, see
    docs/performance.md). ``atexit`` handlers still run and modules are still torn down; only
    the cycle collector leaves the frozen objects alone.
    """
    gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
