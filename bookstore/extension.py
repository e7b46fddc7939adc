"""The bookstore server extension: builds the shared objects once and registers handlers.

At start it builds the settings, the S3 store, the archiver, the version history, the
gallery, the run manager and the clone lock, each once, and keeps them in the tornado
settings (``bookstore_*``) where handlers read them. The classes are ``Type`` traits
(``c.BookstoreExtension.store_class`` ...), so a deployment or a test swaps one through
config alone. The features reported by ``GET /api/bookstore`` are the ones whose
handlers were registered.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from jupyter_server.extension.application import ExtensionApp, ExtensionAppJinjaMixin
from traitlets import Type

from .archive import BookstoreContentsArchiver
from .gallery import Gallery
from .history import VersionHistory
from .runs import RunManager
from .s3 import S3Error, S3Store
from .settings import BookstoreSettings
from .spool import Archiver
from .times import utcnow_iso

_HERE = os.path.dirname(__file__)

#: How long a bucket check result is reused by ``GET /api/bookstore``; an older one is
#: still answered at once while a check in the background refreshes it.
CHECK_TTL = 30.0
#: Only the first status requests after start, while no check has finished yet, wait for
#: the start-up check, at most this long; they then answer ``bucket_ok: null`` (not known
#: yet). Once a result exists no status request waits on S3.
FIRST_CHECK_WAIT = 10.0

#: The feature flags of ``GET /api/bookstore``.
FEATURES = ("bookstore_valid", "archive_valid", "publish_valid", "s3_clone_valid", "fs_clone_valid")


class BookstoreExtension(ExtensionAppJinjaMixin, ExtensionApp):
    """Jupyter server extension: archive on save, publish, clone and version history."""

    name = "bookstore"
    description = __doc__
    extension_url = "/api/bookstore"
    load_other_extensions = True
    template_paths = [os.path.join(_HERE, "templates")]
    static_paths = [os.path.join(_HERE, "static")]

    store_class = Type(
        S3Store,
        klass=S3Store,
        config=True,
        help="The S3 store: the one aiobotocore client of the server and the S3 calls. "
        "A subclass of bookstore.s3.S3Store, given by import string.",
    )
    archiver_class = Type(
        Archiver,
        klass=Archiver,
        config=True,
        help="The durable spool and background uploader of saves (bookstore.spool.Archiver "
        "or a subclass).",
    )
    history_class = Type(
        VersionHistory,
        klass=VersionHistory,
        config=True,
        help="Lists, reads and diffs versions for the API, the pages and the checkpoints "
        "(bookstore.history.VersionHistory or a subclass).",
    )
    gallery_class = Type(
        Gallery,
        klass=Gallery,
        config=True,
        help="The published-notebooks gallery (bookstore.gallery.Gallery or a subclass).",
    )
    run_manager_class = Type(
        RunManager,
        klass=RunManager,
        config=True,
        help="Starts, watches and cancels `bookstore run` subprocesses "
        "(bookstore.runs.RunManager or a subclass).",
    )

    def initialize_settings(self) -> None:
        # The settings object reads c.BookstoreSettings.* from the server's config.
        self.bookstore_settings = BookstoreSettings(parent=self.serverapp, log=self.log)
        self.store = self.store_class(self.bookstore_settings, log=self.log)
        self.archiver = self.archiver_class(self.bookstore_settings, self.store, self.log)
        self.history = self.history_class(self.bookstore_settings, self.store, self.archiver)
        self.gallery = self.gallery_class(self.bookstore_settings, self.store)
        assert self.serverapp is not None
        self.runs = self.run_manager_class(
            self.bookstore_settings, os.path.abspath(self.serverapp.root_dir), self.log
        )
        #: One server-wide lock, so two clones cannot both pick the same free name.
        self.clone_lock = asyncio.Lock()
        #: What ``GET /api/bookstore`` reports: set by initialize_handlers from what it
        #: registers.
        self.features = {name: False for name in FEATURES}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._check: dict[str, Any] = {"checked_at": None}
        self._check_lock: asyncio.Lock | None = None
        #: The problems the last bucket check logged (None before the first check).
        self._logged_problems: set[str] | None = None
        self._check_task: asyncio.Task[Any] | None = None

        assert self.serverapp is not None
        cm = self.serverapp.contents_manager
        self.archiving = isinstance(cm, BookstoreContentsArchiver)
        if isinstance(cm, BookstoreContentsArchiver):
            cm.bookstore_archiver = self.archiver
            cm.bookstore_history = self.history
            self.archiver.root_dir = cm.root_dir
        elif self.bookstore_settings.s3_bucket:
            self.log.info(
                "bookstore: saves are not archived: contents_manager_class is %s; set "
                "c.ServerApp.contents_manager_class = 'bookstore.BookstoreContentsArchiver'",
                type(cm).__name__,
            )
        if not self.bookstore_settings.s3_bucket:
            self.log.warning(
                "bookstore: no S3 bucket configured: set c.BookstoreSettings.s3_bucket or the "
                "JPYNB_S3_BUCKET environment variable; archiving and publishing are off"
            )
        self.settings.update(
            {
                "bookstore_extension": self,
                "bookstore_settings": self.bookstore_settings,
                "bookstore_store": self.store,
                "bookstore_archiver": self.archiver,
                "bookstore_history": self.history,
                "bookstore_clone_lock": self.clone_lock,
                "bookstore_gallery": self.gallery,
                "bookstore_runs": self.runs,
            }
        )

    # --- features ------------------------------------------------------------------

    def available_features(self) -> dict[str, bool]:
        """What the settings allow (before any handler is registered)."""
        s = self.bookstore_settings
        general = bool(s.s3_bucket)
        archive_valid = general and self.archiving
        publish_valid = general
        s3_clone_valid = general and s.enable_s3_cloning
        fs_clone_valid = s.fs_clone_enabled
        return {
            "bookstore_valid": archive_valid or publish_valid or s3_clone_valid or fs_clone_valid,
            "archive_valid": archive_valid,
            "publish_valid": publish_valid,
            "s3_clone_valid": s3_clone_valid,
            "fs_clone_valid": fs_clone_valid,
        }

    def initialize_handlers(self) -> None:
        from .handlers import clone, publish, published, runs, status, versions

        allowed = self.available_features()
        self.handlers.append((r"/api/bookstore/?", status.BookstoreStatusHandler))
        registered = {name: False for name in FEATURES}
        registered["archive_valid"] = allowed["archive_valid"]  # the contents manager's
        if allowed["publish_valid"]:
            self.handlers.extend(publish.default_handlers)
            registered["publish_valid"] = True
        if allowed["s3_clone_valid"]:
            self.handlers.extend(clone.s3_handlers)
            registered["s3_clone_valid"] = True
        if allowed["fs_clone_valid"]:
            self.handlers.extend(clone.fs_handlers)
            registered["fs_clone_valid"] = True
        if allowed["bookstore_valid"] and self.bookstore_settings.s3_bucket:
            self.handlers.extend(versions.default_handlers)
            self.handlers.extend(published.default_handlers)
            self.handlers.extend(runs.default_handlers)
        registered["bookstore_valid"] = any(registered.values())
        self.features = registered

    # --- lifecycle -----------------------------------------------------------------

    def _track(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        if not self.bookstore_settings.s3_bucket:
            return
        if self.archiving:
            try:
                await self.archiver.start()
            except OSError as e:
                # The server starts anyway; every save tries to open the spool again.
                self.archiver.last_error = {
                    "message": f"cannot open the spool directory: {e}",
                    "path": None,
                    "at": utcnow_iso(),
                }
                self.log.error(
                    "bookstore: cannot open the spool directory %s; saves are not archived "
                    "until it is usable: %s",
                    self.archiver.spool.directory,
                    e,
                )
        if self._check_task is None or self._check_task.done():
            self._check_task = self._track(self.check_bucket())

    async def stop_extension(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.runs.stop()  # before the archiver and the store: runs archive on SIGTERM
        await self.archiver.stop()
        await self.store.close()

    # --- bucket check --------------------------------------------------------------

    async def check_bucket(self) -> dict[str, Any]:
        """Check that the bucket is reachable, the credentials work and versioning is on.

        Each problem is logged once, when a check first finds it (again if it went away
        and came back), and the first check that finds none says where saves go: whichever
        check comes first, the start-up one or one a status request started.
        """
        if self._check_lock is None:
            self._check_lock = asyncio.Lock()
        async with self._check_lock:
            s = self.bookstore_settings
            result: dict[str, Any] = {
                "checked_at": time.time(),
                "bucket_ok": False,
                "versioning": None,
                "problems": [],
            }
            try:
                await self.store.check_bucket()
                result["bucket_ok"] = True
                result["versioning"] = await self.store.bucket_versioning()
            except S3Error as e:
                result["problems"].append(str(e))
            if result["bucket_ok"] and result["versioning"] != "Enabled":
                result["problems"].append(
                    f"versioning is not enabled on bucket {s.s3_bucket!r} (status: "
                    f"{result['versioning'] or 'never enabled'}): each save overwrites the "
                    f"previous one. Enable it: aws s3api put-bucket-versioning --bucket "
                    f"{s.s3_bucket} --versioning-configuration Status=Enabled"
                )
            first = self._logged_problems is None
            previous = self._logged_problems or set()
            for problem in result["problems"]:
                if problem not in previous:
                    self.log.warning("bookstore: %s", problem)
            self._logged_problems = set(result["problems"])
            if not result["problems"] and (first or previous):
                self.log.info(
                    "bookstore: archiving to s3://%s/%s (versioning enabled)",
                    s.s3_bucket,
                    s.workspace,
                )
            self._check = result
            return result

    async def _fresh_enough_check(self) -> None:
        """Keep the bucket check fresh without making the caller wait on S3.

        A stale result starts one check in the background and is answered meanwhile;
        only before the first result does the caller wait, at most
        :data:`FIRST_CHECK_WAIT` seconds.
        """
        checked_at = self._check.get("checked_at")
        running = self._check_task is not None and not self._check_task.done()
        if not running and (checked_at is None or time.time() - checked_at > CHECK_TTL):
            self._check_task = self._track(self.check_bucket())
        if checked_at is None and self._check_task is not None:
            await asyncio.wait({self._check_task}, timeout=FIRST_CHECK_WAIT)

    async def status(self) -> dict[str, Any]:
        from .handlers.status import status_payload

        archive: dict[str, Any] = dict(self.archiver.status())
        archive["enabled"] = self.archiving and bool(self.bookstore_settings.s3_bucket)
        cm = self.serverapp.contents_manager if self.serverapp is not None else None
        # Saves kept out of the archive by the file name policy (settings.unarchivable_reason).
        archive["not_archivable"] = (
            cm.not_archivable() if isinstance(cm, BookstoreContentsArchiver) else []
        )
        if self.bookstore_settings.s3_bucket:
            await self._fresh_enough_check()
            archive["bucket"] = self.bookstore_settings.s3_bucket
            archive["prefix"] = self.bookstore_settings.workspace
            archive["bucket_ok"] = self._check.get("bucket_ok")
            archive["versioning"] = self._check.get("versioning")
            archive["versioning_enabled"] = self._check.get("versioning") == "Enabled"
            archive["problems"] = self._check.get("problems", [])
        return status_payload(self.features, archive)
