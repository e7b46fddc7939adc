"""``bookstore``: version history, publishing and cloning from the command line.

Also reachable as ``jupyter bookstore``. It reads the same settings as the server:
``c.BookstoreSettings`` and ``c.ServerApp.root_dir`` from the Jupyter config files
(``jupyter_notebook_config``, ``jupyter_server_config`` and ``jupyter_bookstore_config``,
``.py`` or ``.json``, in ``JUPYTER_CONFIG_DIR`` and every other Jupyter config directory),
then the ``JPYNB_S3_*`` environment variables, then flags such as
``--BookstoreSettings.s3_bucket=NAME`` or their short forms (``--bucket=NAME``).

Subcommands::

    bookstore versions PATH             versions of a notebook, newest first
    bookstore show PATH [--version ID]  one version (default: the latest)
    bookstore diff PATH A [B]           what changed from version A to B (or the local file)
    bookstore restore PATH --version ID write a version to the local file and archive it
    bookstore publish PATH              copy the local notebook to the published prefix
    bookstore published                 list every user's published notebooks
    bookstore clone KEY [--version ID]  copy an S3 object into the local folder
    bookstore doctor                    check credentials, bucket, versioning, spool, retention
    bookstore run PATH [-p NAME VALUE]  run a published version, archive the output
    bookstore runs PATH                 archived runs of a notebook, newest first
    bookstore prune [PATH] --keep-…     thin out old versions (a dry run unless --yes)
    bookstore pin PATH VERSION          never prune this version (unpin to undo)
    bookstore usage                     bytes and versions per path, growth per day

Jupyter paths are relative to ``--root-dir`` (default: the server's ``root_dir``, else the
current directory). Output is
a table by default and JSON with ``--json``; long operations draw a progress bar on stderr
when it is a terminal. Any failure prints one line to stderr and exits with status 1
(2 for wrong usage).

The commands live in one module per group: :mod:`.history` (versions, show, diff,
restore), :mod:`.sharing` (publish, clone), :mod:`.published`, :mod:`.run` (run, runs),
:mod:`.doctor`, :mod:`.prune` (prune, pin, unpin, usage); :mod:`.base` holds what they
share, :mod:`.output` what they print with, :mod:`.files` the local files they write, and
:mod:`.app` the ``bookstore`` entry point.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .app import SUBCOMMANDS, BookstoreApp, main
from .base import BookstoreCommand, CommandError, UsageError

if TYPE_CHECKING:
    from .doctor import DoctorCommand
    from .history import DiffCommand, RestoreCommand, ShowCommand, VersionsCommand
    from .run import RunCommand, RunsCommand
    from .sharing import CloneCommand, PublishCommand

#: The command classes, each imported from its module when first asked for (so that
#: ``bookstore run`` loads the run module only): class name -> module, from the subcommands.
_COMMANDS = {
    target.rpartition(".")[2]: target.rpartition(".")[0] for target, _ in SUBCOMMANDS.values()
}


def __getattr__(name: str) -> Any:
    module = _COMMANDS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "SUBCOMMANDS",
    "BookstoreApp",
    "BookstoreCommand",
    "CloneCommand",
    "CommandError",
    "DiffCommand",
    "DoctorCommand",
    "PublishCommand",
    "RestoreCommand",
    "RunCommand",
    "RunsCommand",
    "ShowCommand",
    "UsageError",
    "VersionsCommand",
    "main",
]
