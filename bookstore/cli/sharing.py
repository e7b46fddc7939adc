"""``bookstore publish`` and ``clone``: sharing notebooks through S3."""

from __future__ import annotations

import json
import os
import posixpath

from traitlets import Bool, Unicode

from ..history import (
    is_notebook_path,
    parse_notebook,
    validate_version_id,
)
from ..s3 import (
    S3NotFound,
    S3Store,
)
from ..services import clone_target, publish_notebook
from ..settings import BookstoreSettings
from ..threads import in_thread
from .base import (
    BookstoreCommand,
    CommandError,
    command_help,
    common_aliases,
    common_flags,
)
from .files import move_into_place, read_local_file, remove_quietly
from .output import Progress


class PublishCommand(BookstoreCommand):
    """Copy the local notebook to the published prefix."""

    name = "bookstore-publish"
    description = command_help(
        "bookstore publish PATH [--json]",
        "Check the local notebook at Jupyter path PATH (under the server's root_dir, or "
        "--root-dir) and copy it to the published prefix. Prints its s3:// path and version "
        "id: others clone exactly that version with `bookstore clone KEY --version=ID` or the "
        "server's /bookstore/clone page.",
        ["bookstore publish analysis/report.ipynb"],
    )
    arguments = ("PATH",)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        self.need_bucket(settings)
        path = self.api_path(args[0])
        if not is_notebook_path(path):
            raise CommandError(f"{path} is not a notebook (.ipynb): only notebooks are published")
        local = self.local_path(path)
        try:
            raw = await in_thread(read_local_file, local)
        except FileNotFoundError as e:
            raise CommandError(f"no such file: {local}") from e
        try:
            content = json.loads(raw)
        except ValueError as e:
            raise CommandError(f"{local} is not a notebook: {e}") from e
        with Progress("uploading", total=1) as progress:
            answer = await publish_notebook(store, settings, path, content, local)
            progress.advance()
        self.emit(
            answer,
            f"published {path} to {answer['s3_path']} (version {answer['versionID']})\n",
        )


class CloneCommand(BookstoreCommand):
    """Copy an S3 object (any version) into the local folder."""

    name = "bookstore-clone"
    description = command_help(
        "bookstore clone KEY [--version=ID] [--to=PATH] [--force] [--source-bucket=BUCKET]",
        "Copy the S3 object s3://BUCKET/KEY (the configured bucket unless --source-bucket; "
        "any version with --version) into the local folder (the server's root_dir, or "
        "--root-dir) as PATH (default: the key's file name). Never overwrites an existing "
        "file unless --force: as the clone API does, the first free name (PATH-1.ipynb, "
        "PATH-2.ipynb...) is used instead.",
        [
            "bookstore clone published/alice/report.ipynb",
            "bookstore clone published/alice/report.ipynb --version=VERSION_ID --to=copy.ipynb",
        ],
    )
    arguments = ("KEY",)
    aliases = {
        **common_aliases,
        "version-id": "CloneCommand.version_id",
        "source-bucket": "CloneCommand.source_bucket",
        "to": "CloneCommand.target",
    }
    flags = {
        **common_flags,
        "force": ({"CloneCommand": {"force": True}}, "Overwrite the local file if it exists."),
    }

    version_id = Unicode("", help="The version to clone (default: the latest).").tag(config=True)
    source_bucket = Unicode("", help="Bucket to clone from (default: s3_bucket).").tag(config=True)
    target = Unicode("", help="Local Jupyter path to write (default: the key's name).").tag(
        config=True
    )
    force = Bool(
        False, help="Overwrite the local file if it exists (default: use a free name)."
    ).tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        key = args[0].lstrip("/")
        if not key:
            self.usage_error("give the S3 key to clone, e.g. published/report.ipynb")
        bucket = self.source_bucket or settings.s3_bucket
        if not bucket:
            self.need_bucket(settings)
        reason = settings.unreadable_reason(key, bucket)
        if reason:
            raise CommandError(reason)
        version_id = validate_version_id(self.version_id, "--version") if self.version_id else None
        asked = self.api_path(self.target or posixpath.basename(key))

        async def file_exists(path: str) -> bool:
            return await in_thread(os.path.isfile, self.local_path(path))

        async def dir_exists(path: str) -> bool:
            return await in_thread(os.path.isdir, self.local_path(path))

        # As the API and the clone page: an existing file is kept and the first free name
        # (name-1.ipynb, ...) used, unless --force.
        target = await clone_target(
            asked, overwrite=self.force, file_exists=file_exists, dir_exists=dir_exists
        )
        local = self.local_path(target)
        directory = os.path.dirname(local) or "."
        await in_thread(os.makedirs, directory, exist_ok=True)
        # Streamed into a temporary file next to the target, checked, then moved there.
        with Progress("downloading", total=1) as progress:
            try:
                tmp, info = await store.download_to_temp(key, directory, version_id, bucket=bucket)
            except S3NotFound as e:
                raise CommandError(
                    f"s3://{bucket}/{key}"
                    + (f" version {version_id}" if version_id else "")
                    + " does not exist"
                ) from e
            progress.advance()
        try:
            if is_notebook_path(target):
                data = await in_thread(read_local_file, tmp)
                await in_thread(parse_notebook, data, f"s3://{bucket}/{key}")
                del data
            await in_thread(move_into_place, tmp, local)
        except BaseException:
            await in_thread(remove_quietly, tmp)
            raise
        self.emit(
            {
                "path": target,
                "local_path": local,
                "bucket": bucket,
                "key": key,
                "version_id": info.version_id,
                "size": info.size,
            },
            f"cloned s3://{bucket}/{key} (version {info.version_id}) to {local}\n",
        )
