"""jupyter_server's own contents tests, run against bookstore with archiving really active.

``scripts/fetch-upstream-tests.sh`` extracts ``tests/services/contents/test_api.py``,
``test_manager.py``, ``test_largefilemanager.py`` and ``test_checkpoints.py`` from the sdist
of the installed jupyter_server into this (git-ignored) package. This conftest replaces their
contents managers, unchanged files otherwise:

* the REST tests (``test_api.py``) run a server whose contents manager is
  :class:`~bookstore.archive.BookstoreContentsArchiver`, with the extension started on a
  bucket of the test S3 server (whatever contents manager the upstream test asks for);
* the manager tests get a ``BookstoreContentsArchiver`` with a started archiver instead of the
  upstream ``FileContentsManager``/``LargeFileManager`` (same root and atomic-writing setting;
  the checkpoints are bookstore's, the S3 versions);
* after each test, every save must have reached S3: the archiver drains without an error
  (checked when the manager or the server is torn down).

Where bookstore differs from jupyter_server on purpose, the test is an expected failure
(strict: it must keep failing) with the reason in :data:`DIVERGENCES`.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nbformat import writes
from nbformat.v4 import new_notebook

from bookstore.archive import BookstoreContentsArchiver
from bookstore.s3 import S3Store
from bookstore.settings import BookstoreSettings
from bookstore.spool import Archiver

pytest_plugins = ["pytest_jupyter.jupyter_server", "bookstore.pytest_plugin"]

LOG = logging.getLogger("bookstore.upstream-tests")
HERE = Path(__file__).parent


def _upstream_dirs() -> list[tuple[str, str]]:
    """The ``dirs`` list of upstream's conftest (test_api imports it from tests.conftest)."""
    tree = ast.parse((HERE / "_upstream_conftest.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "dirs" for t in node.targets
        ):
            return ast.literal_eval(node.value)  # type: ignore[no-any-return]
    raise RuntimeError("upstream tests/conftest.py has no `dirs` list any more")


dirs = _upstream_dirs()

# Upstream's conftest fixtures that the contents tests use (its other fixtures are for its
# mock extensions): a tree of notebooks, text files and blobs under the server's root.


@pytest.fixture
def contents_dir(tmp_path: Path, jp_serverapp: Any) -> Path:
    return tmp_path / jp_serverapp.root_dir  # type: ignore[no-any-return]


@pytest.fixture
def contents(contents_dir: Path) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "notebooks": [],
        "textfiles": [],
        "blobs": [],
        "contents_dir": contents_dir,
    }
    for d, name in dirs:
        p = contents_dir / d
        p.mkdir(parents=True, exist_ok=True)
        nb = p / f"{name}.ipynb"
        nb.write_text(writes(new_notebook(), version=4), encoding="utf-8")
        paths["notebooks"].append(nb.relative_to(contents_dir))
        txt = p / f"{name}.txt"
        txt.write_text(f"{name} text file", encoding="utf-8")
        paths["textfiles"].append(txt.relative_to(contents_dir))
        blob = p / f"{name}.blob"
        blob.write_bytes(name.encode("utf-8") + b"\xff")
        paths["blobs"].append(blob.relative_to(contents_dir))
    paths["all"] = list(paths.values())
    return paths


@pytest.fixture
def folders() -> list[str]:
    return list({item[0] for item in dirs})


#: Deliberate differences from jupyter_server's checkpoints: test id (without parameters) →
#: why bookstore behaves otherwise. Each is ``xfail(strict=True)``.
_EVERY_SAVE = (
    "every save is a checkpoint (an S3 version), so the list has the saves too, and a "
    "checkpoint's id changes from p-... (queued in the spool) to v-... (the S3 version) once "
    "it is uploaded"
)
DIVERGENCES: dict[str, str] = {
    "test_checkpoints.py::test_checkpoints_follow_file": _EVERY_SAVE,
    "test_checkpoints.py::test_nb_checkpoints": _EVERY_SAVE,
    "test_api.py::test_checkpoints": _EVERY_SAVE,
    "test_api.py::test_checkpoints_follow_file": _EVERY_SAVE,
}

#: Fixtures of the upstream modules that build a contents manager.
MANAGER_FIXTURES = {"jp_contents_manager", "jp_large_contents_manager", "contents_manager"}


#: Upstream fixtures parametrized by the contents manager (or server argv) that this harness
#: replaces with bookstore's: the parameter -> what still differs once it is replaced.
REPLACED_PARAMETERS: dict[str, Any] = {
    "jp_argv": lambda value: None,  # --ServerApp.contents_manager_class, dropped
    "jp_contents_manager": lambda value: value[1],  # (class, use_atomic_writing)
    "jp_large_contents_manager": lambda value: None,
    "contents_manager": lambda value: None,  # (class, checkpoints class): ours are S3's
}


def _as_run(item: pytest.Item) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """What ``item`` runs once the harness replaced its manager: its test and parameters."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or not REPLACED_PARAMETERS.keys() & callspec.params.keys():
        return None
    params = {
        name: REPLACED_PARAMETERS[name](value) if name in REPLACED_PARAMETERS else value
        for name, value in callspec.params.items()
    }
    return item.nodeid.split("[", 1)[0], tuple(sorted((k, repr(v)) for k, v in params.items()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Upstream runs each test once per manager class (sync and async, and per checkpoints
    # class); with bookstore's manager in place of all of them those runs are the same test
    # twice (or four times): one of each is kept, the last (the async class's).
    kept: list[pytest.Item] = []
    duplicates: list[pytest.Item] = []
    seen: set[Any] = set()
    for item in reversed(items):
        run = _as_run(item)
        if run is not None and run in seen:
            duplicates.append(item)
            continue
        seen.add(run)
        kept.append(item)
    if duplicates:
        config.hook.pytest_deselected(items=duplicates)
        items[:] = reversed(kept)
    for item in items:
        reason = DIVERGENCES.get(item.nodeid.split("[", 1)[0].split("/")[-1])
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


def _archiving_manager(upstream: Any, request: pytest.FixtureRequest) -> Any:
    """A started BookstoreContentsArchiver in place of the upstream test's manager."""
    loop = request.getfixturevalue("jp_asyncio_loop")
    config = request.getfixturevalue("bookstore_config")
    # Its own spool: the test's server (if any) has an archiver on the configured one.
    settings = BookstoreSettings(**{**config, "spool_dir": f"{config['spool_dir']}-manager"})
    store = S3Store(settings, log=LOG)
    archiver = Archiver(settings, store, LOG)
    cm = BookstoreContentsArchiver(
        root_dir=upstream.root_dir,
        use_atomic_writing=getattr(upstream, "use_atomic_writing", True),
    )
    cm.bookstore_archiver = archiver
    archiver.root_dir = cm.root_dir
    loop.run_until_complete(archiver.start())

    async def close() -> None:
        try:
            await _drained(archiver)
        finally:
            await archiver.stop()
            await store.close()

    request.addfinalizer(lambda: loop.run_until_complete(close()))
    return cm


async def _drained(archiver: Archiver) -> None:
    """Every save of the test reached S3: the archiver drains, with no error."""
    assert await archiver.wait_idle(60), archiver.status()
    assert archiver.last_error is None, archiver.last_error


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Any:
    result = yield
    if fixturedef.argname in MANAGER_FIXTURES and fixturedef.baseid:
        result = _archiving_manager(result, request)
        fixturedef.cached_result = (result, fixturedef.cache_key(request), None)
    return result


@pytest.fixture
def jp_nbconvert_templates() -> None:
    """pytest-jupyter copies nbconvert's templates (about 100 files) into every test's data
    directory, for servers that export notebooks. Nothing here exports: skip the copy."""


@pytest.fixture
def jp_serverapp(
    jp_server_config: dict[str, Any],
    jp_argv: list[str],
    jp_configurable_serverapp: Any,
    jp_asyncio_loop: Any,
) -> Iterator[Any]:
    """The upstream server, with bookstore's contents manager and extension started."""
    argv = [a for a in jp_argv if not a.startswith("--ServerApp.contents_manager_class")]
    app = jp_configurable_serverapp(config=jp_server_config, argv=argv)
    assert isinstance(app.contents_manager, BookstoreContentsArchiver)
    ext = app.web_app.settings["bookstore_extension"]
    jp_asyncio_loop.run_until_complete(ext._start_jupyter_server_extension(app))
    yield app
    jp_asyncio_loop.run_until_complete(_drained(ext.archiver))
