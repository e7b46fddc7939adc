"""Cloning into the Jupyter root, from S3 or from a shared folder, with landing pages.

* ``GET /bookstore/clone?s3_bucket=…&s3_key=…[&s3_version_id=…]`` and
  ``GET /bookstore/fs-clone?relpath=…``: an HTML page naming what will be cloned, whose
  button POSTs to the API below (with the XSRF token) and then opens the new file.
* ``POST /api/bookstore/clone`` ``{"s3_bucket"?, "s3_key", "s3_version_id"?, "target_path"?,
  "overwrite"?}`` and ``POST /api/bookstore/fs-clone`` ``{"relpath", "target_path"?,
  "overwrite"?}``: copy the object (or file) through the contents manager and answer its
  contents model (without content) plus where it came from.

Only buckets in ``BookstoreSettings.allowed_clone_buckets`` are read, and only regular
files inside ``fs_cloning_basedir``, opened without ever leaving it
(:mod:`bookstore.shared_folder`). Cloning writes into the Jupyter root, so it needs the
``("write", "contents")`` permission besides bookstore's own. A cloned notebook is never
trusted: its trust marks are dropped and Jupyter's notary does not sign it, whatever its
source. An existing file is never replaced unless ``"overwrite": true``; otherwise the
first free name ``name-1.ipynb``, ``name-2.ipynb``… is used. Everything is checked before
anything is written, so a refused clone leaves the Jupyter root untouched.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import secrets
from functools import partial
from typing import TYPE_CHECKING, Any

from anyio.to_thread import run_sync
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerJinjaMixin, ExtensionHandlerMixin
from jupyter_server.utils import ensure_async, url_escape, url_path_join
from tornado import web

from ..errors import BadRequest, BookstoreError, Forbidden, NotFound
from ..notebooks import file_model
from ..s3 import MAX_KEY_BYTES, S3Error, S3NotFound
from ..services import clone_target
from ..settings import clean_api_path, describe_char, unsafe_path_char
from ..shared_folder import open_beneath, read_beneath
from ..streaming import discard, download_into_folder, local_os_path, move_into_place
from ..validators import optional_version_id
from .base import (
    AUTH_RESOURCE,
    BookstoreAPIHandler,
    ClientErrorLogMixin,
    require_contents_permission,
)
from .common import BoundedBodyMixin, dumps
from .frontend import Links, frontend_links
from .history import jupyter_logo_data_uri

if TYPE_CHECKING:
    from ..settings import BookstoreSettings


# --- request checks -------------------------------------------------------------------------


def check_bucket_allowed(settings: BookstoreSettings, bucket: str) -> None:
    """403 unless the server may clone from ``bucket``."""
    allowed = settings.allowed_clone_buckets
    if bucket not in allowed:
        raise Forbidden(
            f"cloning from bucket {bucket!r} is not allowed: this server clones only from "
            f"{', '.join(repr(b) for b in allowed) or 'no bucket'} (s3_bucket and "
            f"c.BookstoreSettings.clone_allowed_buckets)",
        )


def check_readable(settings: BookstoreSettings, bucket: str, key: str) -> None:
    """403 unless ``readable_prefixes`` lets this user read ``key`` of ``bucket``."""
    reason = settings.unreadable_reason(key, bucket)
    if reason:
        raise Forbidden(reason)


def check_s3_key(key: Any) -> str:
    if not isinstance(key, str) or not key.strip("/"):
        raise BadRequest('give the S3 object to clone as a non-empty "s3_key"')
    if key.endswith("/"):
        raise BadRequest(f"s3_key {key!r} names a folder; give the key of one object")
    bad = next((c for c in key if unsafe_path_char(c)), None)
    if bad is not None:
        raise BadRequest(f"s3_key must not contain {describe_char(bad)} (got {key!r})")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise BadRequest(f"s3_key is longer than S3's limit of {MAX_KEY_BYTES} bytes")
    return key


def check_relpath(relpath: Any) -> str:
    if not isinstance(relpath, str):
        raise BadRequest('give the file to clone as "relpath", a string')
    try:
        return clean_api_path(relpath)
    except ValueError as e:
        raise BadRequest(f"relpath must be a path relative to the shared folder: {e}") from e


def check_fs_source(basedir: str, relpath: str) -> None:
    """400 unless ``relpath`` is a regular file inside ``basedir``, 404 if missing.

    Blocking (opens the file, possibly on a network share): run it in a thread.
    """
    os.close(open_beneath(basedir, relpath))


def read_fs_source(basedir: str, relpath: str) -> bytes:
    """The bytes of shared file ``relpath``, opened without leaving ``basedir``. Blocking."""
    return read_beneath(basedir, relpath)


# --- API handlers ---------------------------------------------------------------------------


def _unmarked(nb: Any) -> Any:
    """``nb`` as stored, without the trust marks that loading it added (what is signed)."""
    for cell in nb.get("cells") or []:
        if cell.get("cell_type") == "code":
            cell.get("metadata", {}).pop("trusted", None)
    return nb


class _CloneAPIHandler(BoundedBodyMixin, BookstoreAPIHandler):
    """Shared by both clone APIs: target checks, free-name choice, the save itself."""

    def _clone_lock(self) -> asyncio.Lock:
        """The server-wide lock (built by the extension): two clones cannot both pick
        the same free name."""
        lock: asyncio.Lock = self.settings["bookstore_clone_lock"]
        return lock

    async def request_model(self) -> dict[str, Any]:
        """The JSON body, once the user is known to be allowed to write files."""
        await require_contents_permission(self, "write")
        self.collect_body()
        return await self.get_json_object()

    @staticmethod
    def check_overwrite(body: dict[str, Any]) -> bool:
        overwrite = body.get("overwrite", False)
        if not isinstance(overwrite, bool):
            raise BadRequest(f'"overwrite" must be true or false (got {overwrite!r})')
        return overwrite

    async def check_target(self, target_path: Any, source_name: str) -> str:
        """The Jupyter path to clone to: ``target_path`` (a file, or a folder to clone into)."""
        cm = self.contents_manager
        if target_path is None or target_path == "":
            target = source_name
        elif not isinstance(target_path, str):
            raise BadRequest(f'"target_path" must be a string (got {target_path!r})')
        else:
            try:
                target = clean_api_path(target_path)
            except ValueError as e:
                raise BadRequest(
                    f"target_path must be a path relative to the Jupyter root: {e}"
                ) from e
            if target_path.endswith("/") or await ensure_async(cm.dir_exists(target)):
                target = posixpath.join(target, source_name)
        parent = posixpath.dirname(target)
        if parent and not await ensure_async(cm.dir_exists(parent)):
            raise NotFound(f"folder {parent!r} does not exist in the Jupyter root: create it first")
        if not getattr(cm, "allow_hidden", False) and any(
            part.startswith(".") for part in target.split("/")
        ):
            raise BadRequest(
                f"cannot clone to hidden path {target!r} (c.ContentsManager.allow_hidden is False)",
            )
        return target

    async def free_target(self, target: str, *, overwrite: bool) -> str:
        """Where the clone lands (:func:`bookstore.services.clone_target`); under the lock."""
        cm = self.contents_manager

        async def file_exists(path: str) -> bool:
            return bool(await ensure_async(cm.file_exists(path)))

        async def dir_exists(path: str) -> bool:
            return bool(await ensure_async(cm.dir_exists(path)))

        return await clone_target(
            target, overwrite=overwrite, file_exists=file_exists, dir_exists=dir_exists
        )

    async def save_clone(
        self, target: str, model: dict[str, Any], *, overwrite: bool
    ) -> dict[str, Any]:
        """Save ``model`` at ``target``, or at the first free name unless ``overwrite``."""
        cm = self.contents_manager
        async with self._clone_lock():
            target = await self.free_target(target, overwrite=overwrite)
            saved = await ensure_async(cm.save(model, target))
            if saved.get("type") == "notebook":
                await self.distrust(saved["path"])
        return dict(saved)

    async def place_download(self, tmp: str, target: str, *, overwrite: bool) -> dict[str, Any]:
        """Move a streamed download to ``target`` (or the first free name unless
        ``overwrite``), archive it as a save would, and answer its model."""
        cm = self.contents_manager
        try:
            async with self._clone_lock():
                target = await self.free_target(target, overwrite=overwrite)
                os_path = local_os_path(cm, target)
                if os_path is None:  # pragma: no cover - the same manager gave one before
                    raise BookstoreError(f"cannot write {target!r} in the Jupyter root")
                await move_into_place(tmp, os_path)
        except BaseException:
            await discard(tmp)
            raise
        archive_file = getattr(cm, "archive_file", None)
        if archive_file is not None:
            await archive_file(target)
        return dict(await ensure_async(cm.get(target, content=False)))

    async def distrust(self, path: str) -> None:
        """Make sure Jupyter does not trust the clone at ``path``.

        ``strip_trust`` keeps the notary from signing unsafe outputs, but Jupyter also signs
        a notebook whose outputs are all safe, and a notebook with the same content may
        have been trusted here before: either way the clone would open as trusted. Its
        signature is removed from the notary's store, so it opens untrusted, as a notebook
        received from someone else does.
        """
        cm = self.contents_manager
        model = await ensure_async(cm.get(path, content=True, type="notebook"))
        # On the event loop's thread, as Jupyter's own signing: the store is SQLite.
        cm.notary.unsign(_unmarked(model["content"]))

    def finish_clone(self, model: dict[str, Any], **extra: Any) -> None:
        model.update(extra)
        model.pop("content", None)
        self.set_header(
            "Location", url_path_join(self.base_url, "api", "contents", url_escape(model["path"]))
        )
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(model))


class BookstoreCloneAPIHandler(_CloneAPIHandler):
    """``POST /api/bookstore/clone``: copy an S3 object (or one version of it) into Jupyter."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        settings = self.bookstore_settings
        body = await self.request_model()
        bucket = body.get("s3_bucket") or settings.s3_bucket
        if not isinstance(bucket, str):
            raise BadRequest(f'"s3_bucket" must be a string (got {bucket!r})')
        check_bucket_allowed(settings, bucket)
        key = check_s3_key(body.get("s3_key"))
        version_id = optional_version_id(body.get("s3_version_id"), "s3_version_id")
        overwrite = self.check_overwrite(body)
        target = await self.check_target(body.get("target_path"), posixpath.basename(key))
        check_readable(settings, bucket, key)

        s3_path = f"s3://{bucket}/{key}"
        # Files other than notebooks stream to disk; notebooks are parsed and validated.
        cm = self.contents_manager
        os_path = None if target.endswith(".ipynb") else local_os_path(cm, target)
        try:
            if os_path is not None:
                tmp, info = await download_into_folder(
                    self.store, key, os_path, version_id, bucket=bucket
                )
            else:
                obj = await self.store.get_object(key, version_id, bucket=bucket)
        except S3Error as e:
            if version_id and e.code == "MethodNotAllowed":
                # S3's answer for a version that is a delete marker: nothing to clone.
                raise S3NotFound(f"version {version_id} of {s3_path} is a delete marker") from e
            raise
        if os_path is not None:
            saved = await self.place_download(tmp, target, overwrite=overwrite)
            got_version = info.version_id
        else:
            source = f"{s3_path}" + (f" (version {version_id})" if version_id else "")
            model = await run_sync(partial(file_model, target, obj.body, source, untrusted=True))
            saved = await self.save_clone(target, model, overwrite=overwrite)
            got_version = obj.version_id
        self.log.info("bookstore: cloned %s version %s to %s", s3_path, got_version, saved["path"])
        self.finish_clone(saved, s3_path=s3_path, versionID=got_version)


class BookstoreFSCloneAPIHandler(_CloneAPIHandler):
    """``POST /api/bookstore/fs-clone``: copy a file of ``fs_cloning_basedir`` into Jupyter."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = await self.request_model()
        relpath = check_relpath(body.get("relpath"))
        overwrite = self.check_overwrite(body)
        basedir = self.bookstore_settings.fs_cloning_basedir
        await run_sync(check_fs_source, basedir, relpath)
        target = await self.check_target(body.get("target_path"), posixpath.basename(relpath))
        data = await run_sync(read_fs_source, basedir, relpath)
        model = await run_sync(
            partial(file_model, target, data, f"shared file {relpath!r}", untrusted=True)
        )
        saved = await self.save_clone(target, model, overwrite=overwrite)
        self.log.info("bookstore: cloned shared file %s to %s", relpath, saved["path"])
        self.finish_clone(saved, relpath=relpath)


# --- landing pages --------------------------------------------------------------------------


class _ClonePageHandler(
    ClientErrorLogMixin, ExtensionHandlerJinjaMixin, ExtensionHandlerMixin, JupyterHandler
):
    """Renders ``clone.html``: what will be cloned, a target field, and the clone button."""

    auth_resource = AUTH_RESOURCE

    @property
    def bookstore_settings(self) -> BookstoreSettings:
        return self.settings["bookstore_settings"]

    @property
    def csp_nonce(self) -> str:
        """A fresh nonce per page: the only inline script and style that may run."""
        nonce: str | None = getattr(self, "_csp_nonce", None)
        if nonce is None:
            nonce = self._csp_nonce = secrets.token_urlsafe(18)
        return nonce

    @property
    def content_security_policy(self) -> str:
        # The page's own script and style, a fetch to the clone API, data: images only:
        # the names it shows (keys, paths) cannot make the browser load anything.
        nonce = self.csp_nonce
        return (
            f"{super().content_security_policy}; default-src 'none'; "
            f"script-src 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; "
            f"connect-src 'self'; img-src data:; form-action 'none'; base-uri 'none'"
        )

    def open_url_templates(self, links: Links) -> dict[str, str]:
        """Where to open a cloned file: in the user's frontend, else the server's home page.

        ``{path}`` is replaced by the page's script with the cloned file's URL-escaped path.
        """
        return {
            "open_notebook_url": links.open_notebook or links.home,
            "open_file_url": links.open_file or links.home,
        }

    def render_page(
        self,
        *,
        title: str,
        rows: list[tuple[str, str]],
        api_url: str,
        post_model: dict[str, Any],
        default_target: str,
        history_url: str | None = None,
    ) -> None:
        links = frontend_links(self)
        config = {
            "api_url": url_path_join(self.base_url, api_url),
            "post_model": post_model,
            "xsrf_token": self.xsrf_token.decode("ascii"),
            **self.open_url_templates(links),
        }
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            self.render_template(
                "clone.html",
                page_title=title,
                rows=rows,
                default_target=default_target,
                history_url=history_url,
                home_url=links.home,
                source_name=default_target,
                jupyter_logo=jupyter_logo_data_uri(),
                page_config=config,
                csp_nonce=self.csp_nonce,
            )
        )


class BookstoreClonePageHandler(_ClonePageHandler):
    """``GET /bookstore/clone``: the landing page for cloning an S3 object."""

    def history_url(self, bucket: str, key: str) -> str | None:
        """The version-history page of ``key``, when it is one of this server's notebooks."""
        settings = self.bookstore_settings
        if bucket != settings.s3_bucket:
            return None
        candidates = [
            (which, settings.prefix_for(which))
            for which in ("workspace", "published")
            if key.startswith(settings.prefix_for(which) + "/")
        ]
        if not candidates:
            return None
        # With nested prefixes ("nb" and "nb/published") the longest one is the right one.
        which, prefix = max(candidates, key=lambda c: len(c[1]))
        rel = key[len(prefix) + 1 :]
        return (
            url_path_join(self.base_url, "bookstore/versions", url_escape(rel)) + f"?prefix={which}"
        )

    @web.authenticated
    @authorized
    async def get(self) -> None:
        settings = self.bookstore_settings
        bucket = self.get_argument("s3_bucket", "") or settings.s3_bucket
        check_bucket_allowed(settings, bucket)
        key = check_s3_key(self.get_argument("s3_key", ""))
        check_readable(settings, bucket, key)
        version_id = optional_version_id(self.get_argument("s3_version_id", None), "s3_version_id")
        rows = [("Bucket", bucket), ("Key", key)]
        post_model: dict[str, Any] = {"s3_bucket": bucket, "s3_key": key}
        if version_id:
            rows.append(("Version", version_id))
            post_model["s3_version_id"] = version_id
        self.render_page(
            title=f"Clone {posixpath.basename(key)}",
            rows=rows,
            api_url="api/bookstore/clone",
            post_model=post_model,
            default_target=posixpath.basename(key),
            history_url=self.history_url(bucket, key),
        )


class BookstoreFSClonePageHandler(_ClonePageHandler):
    """``GET /bookstore/fs-clone``: the landing page for cloning a file of the shared folder."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        relpath = check_relpath(self.get_argument("relpath", ""))
        basedir = self.bookstore_settings.fs_cloning_basedir
        await run_sync(check_fs_source, basedir, relpath)
        self.render_page(
            title=f"Clone {posixpath.basename(relpath)}",
            rows=[("Shared folder", basedir), ("File", relpath)],
            api_url="api/bookstore/fs-clone",
            post_model={"relpath": relpath},
            default_target=posixpath.basename(relpath),
        )


s3_handlers: list[tuple[str, Any]] = [
    (r"/bookstore/clone/?", BookstoreClonePageHandler),
    (r"/api/bookstore/clone/?", BookstoreCloneAPIHandler),
]
fs_handlers: list[tuple[str, Any]] = [
    (r"/bookstore/fs-clone/?", BookstoreFSClonePageHandler),
    (r"/api/bookstore/fs-clone/?", BookstoreFSCloneAPIHandler),
]
