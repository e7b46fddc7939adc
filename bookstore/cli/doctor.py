"""``bookstore doctor``: check credentials, bucket, versioning, spool and retention."""

from __future__ import annotations

import os
import socket
import tempfile
from datetime import datetime, timezone
from typing import Any

from traitlets import Integer

from ..s3 import (
    S3Error,
    S3Refused,
    S3Store,
    S3Unavailable,
)
from ..settings import BookstoreSettings
from ..spool import (
    CORRUPT_DIR,
    SpoolEntry,
    list_set_aside,
    read_lock_owner,
    read_stats,
    scan_entries,
    spool_candidates,
)
from ..threads import in_thread
from .base import (
    BookstoreCommand,
    CommandError,
    command_help,
    common_aliases,
)
from .output import Progress, table


class DoctorCommand(BookstoreCommand):
    """Check the configuration, credentials, bucket, versioning and spool; say what to fix."""

    name = "bookstore-doctor"
    description = command_help(
        "bookstore doctor [--json] [--fast-growth=BYTES]",
        "Check what the server would use: the config files read, the bucket setting, the "
        "credentials (never printed), that the bucket is reachable, that versioning is on, "
        "the retention policy (warns when none is set and the workspace grows fast), and the "
        "spool directory (writable, saves waiting and how old); say what to fix. "
        "Exits with status 1 if a check fails.",
        ["bookstore doctor", "JUPYTER_CONFIG_DIR=/srv/jupyter/config bookstore doctor"],
    )
    aliases = {**common_aliases, "fast-growth": "DoctorCommand.fast_growth"}

    fast_growth = Integer(
        100 * 1024 * 1024,
        help=(
            "Warn when no retention policy is set and the workspace grew more than this "
            "many bytes per day over the last week."
        ),
    ).tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        checks: list[dict[str, str]] = []

        def add(name: str, status: str, detail: str, fix: str = "") -> None:
            checks.append({"check": name, "status": status, "detail": detail, "fix": fix})

        files = self.loaded_config_files
        config_dir = self.config_dir
        add(
            "config",
            "INFO",
            ", ".join(files) if files else f"no config file found (config dir {config_dir})",
            ""
            if files
            else f"write jupyter_server_config.py in {config_dir}, or set "
            "JUPYTER_CONFIG_DIR to the server's config directory",
        )
        root = self.root_dir or os.getcwd()
        add("root dir", "INFO", f"{root} (local paths are relative to it)")
        with Progress("checking", total=6) as progress:
            await self._check_s3(settings, store, add)
            progress.advance(4)
            if checks and checks[-1]["check"] == "prefixes":  # the bucket is usable
                from ..prune import retention_check

                try:
                    add(
                        "retention",
                        *await retention_check(store, settings, fast_growth=self.fast_growth),
                    )
                except S3Error as e:
                    add("retention", "WARN", f"cannot measure the workspace: {e}", "")
            progress.advance()
            await in_thread(self._check_spool, settings, add)
            progress.advance()
        ok = all(c["status"] != "FAIL" for c in checks)
        rows = [[c["status"], c["check"], c["detail"]] for c in checks]
        text = table(rows, ["STATUS", "CHECK", "DETAIL"])
        fixes = [f"- {c['check']}: {c['fix']}" for c in checks if c["fix"]]
        if fixes:
            text += "\nTo fix:\n" + "\n".join(fixes) + "\n"
        text += "\nAll good.\n" if ok else "\nProblems found.\n"
        self.emit({"ok": ok, "checks": checks}, text)
        if not ok:
            raise CommandError("some checks failed (see above)")

    async def _check_s3(self, settings: BookstoreSettings, store: S3Store, add: Any) -> None:
        endpoint = settings.s3_endpoint_url or "AWS S3"
        add("endpoint", "INFO", f"{endpoint} (region {settings.s3_region_name})")
        if not settings.s3_bucket:
            add(
                "bucket",
                "FAIL",
                "no bucket configured",
                "set c.BookstoreSettings.s3_bucket in jupyter_server_config.py, or "
                "JPYNB_S3_BUCKET, or pass --bucket=NAME",
            )
            return
        if settings.s3_access_key_id and settings.s3_secret_access_key:
            key_id = settings.s3_access_key_id
            shown = f"…{key_id[-4:]}" if len(key_id) > 8 else "(set)"
            add("credentials", "OK", f"access key id {shown} from bookstore settings")
        else:
            method = await _default_credentials_method()
            if method is None:
                add(
                    "credentials",
                    "FAIL",
                    "none found",
                    "set c.BookstoreSettings.s3_access_key_id / s3_secret_access_key, "
                    "JPYNB_S3_ACCESS_KEY_ID / JPYNB_S3_SECRET_ACCESS_KEY, or an AWS profile",
                )
                return
            add("credentials", "OK", f"from botocore's default chain ({method})")
        try:
            await store.check_bucket()
        except S3Unavailable as e:
            add("bucket", "FAIL", str(e), f"check s3_endpoint_url ({endpoint}) and the network")
            return
        except S3Refused as e:
            if e.code == "NoSuchBucket":
                fix = (
                    f"create it: aws s3api create-bucket --bucket {settings.s3_bucket}, then "
                    f"enable versioning"
                )
            else:
                fix = "check the access key, the secret and the bucket policy"
            add("bucket", "FAIL", str(e), fix)
            return
        except S3Error as e:
            add("bucket", "FAIL", str(e), "check the S3 settings")
            return
        add("bucket", "OK", f"s3://{settings.s3_bucket} is reachable with these credentials")
        try:
            status = await store.bucket_versioning()
        except S3Error as e:
            add("versioning", "FAIL", str(e), "allow s3:GetBucketVersioning on the bucket")
            return
        if status == "Enabled":
            add("versioning", "OK", "enabled: every save is kept as a version")
        else:
            add(
                "versioning",
                "FAIL",
                f"{status or 'never enabled'}: each save overwrites the previous one",
                f"aws s3api put-bucket-versioning --bucket {settings.s3_bucket} "
                f"--versioning-configuration Status=Enabled",
            )
        add("prefixes", "INFO", f"workspace {settings.workspace}/, published {settings.published}/")

    @staticmethod
    def _check_lock(directory: str, add: Any) -> None:
        """Who holds a spool's lock, from what its holder wrote (without taking it)."""
        owner = read_lock_owner(directory)
        if not owner:
            add("spool lock", "INFO", f"{directory}: free (no server is using it)")
            return
        pid, host = owner.get("pid"), owner.get("host")
        where = f"pid {pid} on {host}, since {owner.get('since')}"
        if host != socket.gethostname() or not isinstance(pid, int):
            add("spool lock", "INFO", f"{directory}: held by {where}")
        elif _pid_alive(pid):
            add("spool lock", "OK", f"{directory}: held by the running server {where}")
        else:
            add(
                "spool lock",
                "WARN",
                f"{directory}: its server ({where}) is gone",
                "start a server: it adopts what the gone one left",
            )

    @staticmethod
    def _check_spool(settings: BookstoreSettings, add: Any) -> None:
        spool = settings.spool_dir
        if not os.path.isdir(spool):
            parent = os.path.dirname(spool)
            while parent and not os.path.isdir(parent):
                parent = os.path.dirname(parent)
            if parent and os.access(parent, os.W_OK):
                add("spool", "OK", f"{spool} does not exist yet; the server creates it")
            else:
                add(
                    "spool",
                    "FAIL",
                    f"{spool} does not exist and cannot be created",
                    "set c.BookstoreSettings.spool_dir (or BOOKSTORE_SPOOL_DIR) to a writable "
                    "directory",
                )
            return
        try:
            fd, probe = tempfile.mkstemp(dir=spool, prefix=".doctor-")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            add(
                "spool",
                "FAIL",
                f"{spool} is not writable: {e}",
                "fix its permissions or set c.BookstoreSettings.spool_dir elsewhere",
            )
            return
        add("spool", "OK", f"{spool} is writable")
        # Servers sharing spool_dir use siblings (<spool>-2 ...): report them all.
        spools = [d for d in spool_candidates(spool) if os.path.isdir(d)]
        entries: list[SpoolEntry] = []
        corrupt = 0
        set_aside: list[dict[str, Any]] = []
        dropped = 0
        for directory in spools:
            DoctorCommand._check_lock(directory, add)
            entries.extend(e for _f, e in scan_entries(directory) if isinstance(e, SpoolEntry))
            corrupt_dir = os.path.join(directory, CORRUPT_DIR)
            corrupt += len(os.listdir(corrupt_dir)) if os.path.isdir(corrupt_dir) else 0
            set_aside.extend(list_set_aside(directory))
            dropped += int(read_stats(directory).get("dropped_saves", 0))
        entries.sort(key=lambda e: e.save_id)
        if dropped:
            add(
                "dropped",
                "WARN",
                f"{dropped} save(s) were dropped from the archive (kept on disk) because the "
                f"spool reached max_spool_bytes or min_free_disk_bytes",
                "keep S3 reachable, or raise c.BookstoreSettings.max_spool_bytes; each "
                "version's dropped-saves metadata says how many are missing before it",
            )
        for info in set_aside:
            add(
                "set aside",
                "WARN",
                f"{info.get('path')}: {info.get('reason')} (kept at "
                f"{info.get('kept_at') or 'nowhere: the disk was full'})",
                "S3 will never accept this save as it is: see docs/limits.md to recover it; "
                "delete the .entry and .json once done",
            )
        if entries:
            oldest = entries[0].saved_at
            age = _age_seconds(oldest)
            detail = f"{len(entries)} save(s) waiting for upload, oldest saved {oldest}"
            if age is not None and age > 3600:
                add(
                    "pending",
                    "WARN",
                    detail,
                    "uploads are not draining: is the server running? see GET /api/bookstore "
                    "and the server log for the S3 error",
                )
            else:
                add("pending", "OK", detail)
        else:
            add("pending", "OK", "no saves waiting for upload")
        if corrupt:
            add(
                "corrupt",
                "WARN",
                f"{corrupt} unreadable entr(y/ies) set aside in {corrupt_dir}",
                "inspect them; they are never uploaded or deleted automatically",
            )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _age_seconds(iso: str) -> float | None:
    from ..history import parse_time

    when = parse_time(iso)
    if when is None:
        return None
    return (datetime.now(timezone.utc) - when).total_seconds()


async def _default_credentials_method() -> str | None:
    from aiobotocore.session import get_session

    try:
        creds = await get_session().get_credentials()
    except Exception:
        return None
    if creds is None:
        return None
    return str(getattr(creds, "method", "found"))
