"""``BookstoreSettings``: every bookstore option, on one traitlets config object.

Users set ``c.BookstoreSettings.<name>`` in any Jupyter config file; the names and
defaults of the original bookstore are kept so existing configs work unchanged.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import posixpath
import re
import string
from typing import Any
from urllib.parse import unquote_to_bytes, urlparse

from jupyter_core.paths import jupyter_data_dir
from traitlets import (
    Bool,
    Bunch,
    Dict,
    Float,
    Integer,
    List,
    TraitError,
    Unicode,
    default,
    validate,
)
from traitlets.config import LoggingConfigurable

# Environment variables read by the defaults below (named in each trait's help).
ENV_ACCESS_KEY_ID = "JPYNB_S3_ACCESS_KEY_ID"
ENV_SECRET_ACCESS_KEY = "JPYNB_S3_SECRET_ACCESS_KEY"
ENV_ENDPOINT_URL = "JPYNB_S3_ENDPOINT_URL"
ENV_REGION_NAME = "JPYNB_S3_REGION_NAME"
ENV_BUCKET = "JPYNB_S3_BUCKET"
ENV_SPOOL_DIR = "BOOKSTORE_SPOOL_DIR"
#: S3's smallest part of a multipart upload (all but the last), the least multipart_threshold.
MIN_PART_SIZE = 5 * 1024**2

# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_IPV4_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def validate_bucket_name(name: str) -> str | None:
    """Return what is wrong with an S3 bucket name, or None if it is valid."""
    if not _BUCKET_RE.match(name):
        return (
            "must be 3-63 characters of lowercase letters, digits, dots and hyphens, "
            "starting and ending with a letter or digit"
        )
    if ".." in name or _IPV4_RE.match(name):
        return "must not contain '..' or look like an IP address"
    return None


def jupyter_username() -> str:
    """The Jupyter user: ``JUPYTERHUB_USER`` under JupyterHub, else the OS user.

    The OS user is :func:`getpass.getuser`'s: the first of ``LOGNAME``, ``USER``, ``LNAME``
    and ``USERNAME`` that is set, else the account of the process's uid. Every save asks
    (its key has the user in it); the account lookup reads the passwd database, so it is
    made once per uid.
    """
    user = os.environ.get("JUPYTERHUB_USER")
    if user:
        return user
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        user = os.environ.get(name)
        if user:
            return user
    return _account_name(os.getuid())


@functools.lru_cache(maxsize=4)
def _account_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except Exception:  # no passwd entry in some containers
        return "jupyter"


#: Characters a username keeps as they are in a key prefix (besides letters and digits).
_USERNAME_SAFE = frozenset("-_.@+~=,")


def encode_username(username: str) -> str:
    """The key segment for ``username``: one-to-one, reversible, safe in any S3 key.

    Letters, digits and ``-_.@+~=,`` are kept, so ordinary usernames (and the prefixes
    already in use) do not change. Every other character, ``%`` included, becomes ``%XX``
    per UTF-8 byte, so ``a/b`` (``a%2Fb``) and ``a_b`` no longer share a prefix. The
    segments ``.`` and ``..``, which some S3 servers refuse or normalise, are written
    ``%2E`` and ``%2E%2E``; an empty name is ``%``, which no other name produces.
    """
    if username == "":
        return "%"
    if username in {".", ".."}:
        return "%2E" * len(username)
    out = []
    for ch in username:
        if ch in _USERNAME_SAFE or (ch.isalnum() and not unsafe_path_char(ch)):
            out.append(ch)  # non-ASCII letters (José, 李) stay readable too
        else:
            data = ch.encode("utf-8", "surrogatepass")
            out.append("".join(f"%{b:02X}" for b in data))
    return "".join(out)


def decode_username(segment: str) -> str:
    """The username that :func:`encode_username` turned into ``segment``."""
    if segment == "%":
        return ""
    return unquote_to_bytes(segment).decode("utf-8", "surrogatepass")


def published_root_template(published_prefix: str) -> str:
    """Every user's published prefix: the part before ``{username}``, then ``*``.

    ``published/{username}`` gives ``published/*``; a prefix without ``{username}`` is
    shared by everyone already and is returned as it is.
    """
    if "{username}" not in published_prefix:
        return published_prefix
    head = published_prefix.split("{username}", 1)[0]
    return head + "*"


def default_readable_prefixes(
    workspace_prefix: str, published_prefix: str, runs_prefix: str | None = None
) -> list[str]:
    """The default ``readable_prefixes``: own workspace, everyone's published, own runs."""
    out = [workspace_prefix, published_root_template(published_prefix)]
    if runs_prefix:
        out.append(runs_prefix)
    return out


def prefix_matches(root: str, key: str) -> bool:
    """Whether ``key`` is strictly under ``root``, a prefix where ``*`` matches in a segment.

    ``*`` never matches ``/``, so ``published/*`` covers ``published/alice/a.ipynb`` but
    ``workspace/alice`` does not cover ``workspace/alice2/a.ipynb``. ``*`` alone is the
    whole bucket.
    """
    if root == "*":  # the whole bucket, top-level keys included
        return bool(key)
    pattern = "[^/]*".join(re.escape(part) for part in root.split("*"))
    return re.match(f"(?:{pattern})/[^/]", key) is not None


def normalize_prefix(value: str, trait_name: str) -> str:
    """Normalise an S3 key prefix: no leading/trailing slash, no '.' or '..' segments."""
    if "\\" in value:
        raise TraitError(f"{trait_name}: use '/' as separator, not '\\' (got {value!r})")
    parts = [p for p in value.split("/") if p]
    if any(p in {".", ".."} for p in parts):
        raise TraitError(f"{trait_name}: '.' and '..' segments are not allowed (got {value!r})")
    if not parts:
        raise TraitError(f"{trait_name}: must not be empty (got {value!r})")
    prefix = "/".join(parts)
    try:
        fields = [f for f in string.Formatter().parse(prefix) if f[1] is not None]
    except ValueError as e:
        raise TraitError(
            f"{trait_name}: the only placeholder allowed is {{username}} (got {value!r}: {e})"
        ) from e
    # Only a bare {username}: attribute/index access, conversions and format specs would
    # fail or produce surprising keys when expanded.
    for _, name, spec, conversion in fields:
        if name != "username" or spec or conversion:
            raise TraitError(
                f"{trait_name}: the only placeholder allowed is {{username}} "
                f"(got {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} in {value!r})"
            )
    return prefix


class BookstoreSettings(LoggingConfigurable):
    """All of bookstore's settings: S3 location and credentials, prefixes, archive behaviour.

    Unset credentials fall through to botocore's default chain (environment, shared
    profile, instance role), so nothing needs to be set on a machine with an IAM role.
    """

    workspace_prefix = Unicode(
        "workspace",
        help=(
            "S3 key prefix that every save is archived under: a notebook at Jupyter path "
            "`a/b.ipynb` is stored at `<workspace_prefix>/a/b.ipynb`. May contain "
            "`{username}` (the Jupyter user; JUPYTERHUB_USER under JupyterHub) so one bucket "
            "serves many users, e.g. 'workspace/{username}'. Leading and trailing slashes "
            "are ignored."
        ),
    ).tag(config=True)

    published_prefix = Unicode(
        "published",
        help=(
            "S3 key prefix that published notebooks are copied to. May contain "
            "`{username}`, like workspace_prefix."
        ),
    ).tag(config=True)

    runs_prefix = Unicode(
        "runs",
        help=(
            "S3 key prefix that `bookstore run` archives run outputs under: each run of the "
            "notebook at Jupyter path `a/b.ipynb` is a new version of `<runs_prefix>/a/b.ipynb`. "
            "May contain `{username}`, like workspace_prefix."
        ),
    ).tag(config=True)

    max_concurrent_runs = Integer(
        2,
        help=(
            "How many runs started from Jupyter (POST /api/bookstore/runs/<path> or the history "
            "page) may execute at the same time on this server; more are refused with 429. "
            "Each run is a `bookstore run` subprocess with its own kernel."
        ),
    ).tag(config=True)

    s3_bucket = Unicode(
        "",
        help=(
            f"Name of the versioned S3 bucket that holds archives and published notebooks. "
            f"Defaults to the {ENV_BUCKET} environment variable. Versioning must be enabled "
            f"on it: `aws s3api put-bucket-versioning --bucket NAME "
            f"--versioning-configuration Status=Enabled`."
        ),
    ).tag(config=True)

    s3_endpoint_url = Unicode(
        "",
        help=(
            f"URL of an S3-compatible endpoint (MinIO, SeaweedFS, Ceph...), e.g. "
            f"'http://127.0.0.1:8333'. Empty means AWS S3. Defaults to the "
            f"{ENV_ENDPOINT_URL} environment variable."
        ),
    ).tag(config=True)

    s3_region_name = Unicode(
        "us-east-1",
        help=f"S3 region. Defaults to the {ENV_REGION_NAME} environment variable, else us-east-1.",
    ).tag(config=True)

    s3_access_key_id = Unicode(
        None,
        allow_none=True,
        help=(
            f"S3 access key id. Defaults to the {ENV_ACCESS_KEY_ID} environment variable; "
            f"when neither is set, botocore's default chain is used (AWS_ACCESS_KEY_ID, "
            f"~/.aws profiles, instance role)."
        ),
    ).tag(config=True)

    s3_secret_access_key = Unicode(
        None,
        allow_none=True,
        help=(
            f"S3 secret access key. Defaults to the {ENV_SECRET_ACCESS_KEY} environment "
            f"variable; when neither is set, botocore's default chain is used. Never logged."
        ),
    ).tag(config=True)

    readable_prefixes = List(
        Unicode(),
        help=(
            "Key prefixes of s3_bucket that clone, history, diff and runs may read from; "
            "anything else is refused with 403 (the API and pages), or an error (the CLI). "
            "Each entry is a prefix template: `{username}` is the Jupyter user (encoded as "
            "in the other prefixes) and `*` matches any part of one key segment, e.g. "
            "'published/*' is every user's published notebooks, and '*' alone the whole "
            "bucket. Default: the user's own "
            "workspace_prefix, every user's published prefix (the part of published_prefix "
            "before `{username}`, followed by `*`) and the user's own runs prefix, so drafts "
            "stay private. A team that wants open drafts adds e.g. 'workspace/*'. Applies to "
            "s3_bucket only: buckets of clone_allowed_buckets are read whole. This is a check "
            "of bookstore's own, not isolation: see docs/jupyterhub.md."
        ),
    ).tag(config=True)

    published_cache_seconds = Float(
        10.0,
        help=(
            "How long (seconds) an answer of the published-notebooks gallery "
            "(/api/bookstore/published, /bookstore/published) is reused before S3 is listed "
            "again. After that, until it is 6 times as old, it is still given at once while "
            "one background request lists S3 again for the next reader. 0 turns the cache "
            "off. Publishing from this server clears it."
        ),
    ).tag(config=True)

    enable_s3_cloning = Bool(
        True,
        help="Allow cloning notebooks from S3 into the Jupyter root (/api/bookstore/clone).",
    ).tag(config=True)

    fs_cloning_basedir = Unicode(
        "/Users/jupyter",
        help=(
            "Absolute path of a shared folder that notebooks can be cloned from "
            "(/api/bookstore/fs-clone). Filesystem cloning is enabled only when this "
            "directory exists."
        ),
    ).tag(config=True)

    clone_allowed_buckets = List(
        Unicode(),
        help=(
            "Buckets, besides s3_bucket, that /api/bookstore/clone may read from. Default: "
            "none, so only s3_bucket. The server's credentials are never used to read a "
            "bucket that is not listed here."
        ),
    ).tag(config=True)

    max_request_body_size = Integer(
        100 * 1024 * 1024,
        help=(
            "Largest request body, in bytes, that bookstore's publish and clone endpoints "
            "accept; bigger bodies get 413."
        ),
    ).tag(config=True)

    max_read_bytes = Integer(
        100 * 1024 * 1024,
        help=(
            "Largest S3 object, in bytes, that bookstore reads: clone, the version view, "
            "diff and restore (in the server and the `bookstore` command). The size S3 "
            "announces is checked before the body is read; bigger objects get 413 (the "
            "command fails) and nothing is written. Clones and restores of files other "
            "than notebooks stream to disk; notebooks are parsed, and take several times "
            "their size in memory while they are. Default 100 MB."
        ),
    ).tag(config=True)

    max_diff_cells = Integer(
        500,
        help=(
            "Notebook diffs compare the cells from the first difference to the last (equal "
            "cells before and after are skipped). Above this many cells there, in either "
            "version, the diff API and page answer a summary instead (cells added, removed "
            "and changed, compared by hash) with the reason. Diffing costs time quadratic "
            "in what is compared; with the max_diff_* defaults a diff takes at most a few "
            "seconds."
        ),
    ).tag(config=True)

    max_diff_lines = Integer(
        2000,
        help=(
            "Largest number of lines (sources and text outputs, both versions together) "
            "in the cells a notebook diff compares (see max_diff_cells); above it the diff "
            "is a summary."
        ),
    ).tag(config=True)

    max_diff_bytes = Integer(
        4 * 1024 * 1024,
        help=(
            "Largest size, in bytes of JSON (both versions together), of the cells a "
            "notebook diff compares (see max_diff_cells); above it the diff is a summary."
        ),
    ).tag(config=True)

    archive_patterns = List(
        Unicode(),
        default_value=["*.ipynb"],
        help=(
            "Glob patterns (fnmatch, matched against the Jupyter path) of files whose saves "
            "are archived. Default: notebooks only. Use ['*'] to archive every file."
        ),
    ).tag(config=True)

    spool_dir = Unicode(
        help=(
            f"Directory where each save is queued durably (fsync) before the save returns, "
            f"until it is uploaded. Defaults to the {ENV_SPOOL_DIR} environment variable, else "
            f"<jupyter data dir>/bookstore/spool (so JUPYTER_DATA_DIR moves it)."
        ),
    ).tag(config=True)

    max_spool_bytes = Integer(
        1024**3,
        help=(
            "Largest size, in bytes, of the saves waiting in the spool (default 1 GiB; 0 "
            "means no limit). Once reached (S3 down for long), only the oldest and the newest "
            "waiting save of each path are kept and the ones in between are dropped from the "
            "archive (never from disk); the next uploaded version of the path says how many "
            "in its `dropped-saves` metadata, and GET /api/bookstore counts them. See "
            "docs/limits.md."
        ),
    ).tag(config=True)

    min_free_disk_bytes = Integer(
        100 * 1024**2,
        help=(
            "Free space, in bytes, that the spool always leaves on its disk (default "
            "100 MiB; 0 means none), so queued archive copies never fill the disk your "
            "notebooks are saved to. Reaching it drops saves like max_spool_bytes does."
        ),
    ).tag(config=True)

    s3_storage_class = Unicode(
        "",
        help=(
            "S3 storage class of archived versions, e.g. 'STANDARD_IA' or "
            "'INTELLIGENT_TIERING'. Empty: the bucket's default (STANDARD). A class S3 does "
            "not accept makes every upload fail; such saves are set aside (docs/limits.md)."
        ),
    ).tag(config=True)

    multipart_threshold = Integer(
        8 * 1024**2,
        help=(
            "Size, in bytes, above which a save is uploaded to S3 as a multipart upload, "
            "in parts of this size (at least 5 MiB, S3's smallest part; default 8 MiB). "
            "Uploads are streamed from the spool: each upload holds at most one part in "
            "memory, and each part is sent with its Content-MD5."
        ),
    ).tag(config=True)

    max_concurrent_uploads = Integer(
        8,
        help=(
            "How many different paths upload at the same time. Versions of one path are "
            "always uploaded one after another, in save order."
        ),
    ).tag(config=True)

    max_checkpoints = Integer(
        100,
        help=(
            "How many of a file's newest archived versions Jupyter's checkpoint list "
            "(File > Revert to checkpoint) offers, so that long histories stay quick to list. "
            "The history page, the versions API and the CLI still page through every version, "
            "and any version can be restored from there."
        ),
    ).tag(config=True)

    upload_retry_initial_delay = Float(
        0.5,
        help="Seconds before the first retry of a failed upload; doubled on each retry.",
    ).tag(config=True)

    upload_retry_max_delay = Float(
        30.0,
        help="Cap, in seconds, of the exponential backoff between upload retries.",
    ).tag(config=True)

    upload_quiet_period = Float(
        0.005,
        help=(
            "Seconds without a save in progress before an upload starts. An upload takes a "
            "few milliseconds of the server's event loop (the S3 request is built, signed "
            "and sent), and a save arriving meanwhile waits for them; saves often come in "
            "bursts (save all, a script, a notebook and its paired script), so uploads let "
            "the burst finish first. Never longer than upload_quiet_max_wait, and not at all "
            "once more than max_concurrent_uploads saves are queued, until the queue is "
            "empty again. 0: upload at once."
        ),
    ).tag(config=True)

    upload_quiet_max_wait = Float(
        1.0,
        help=(
            "The longest, in seconds, an upload waits for the upload_quiet_period while "
            "saves keep coming."
        ),
    ).tag(config=True)

    flush_timeout = Float(
        10.0,
        help=(
            "On a clean stop, how long (seconds) to keep uploading queued saves before "
            "stopping. What is left stays in the spool and is uploaded at the next start."
        ),
    ).tag(config=True)

    skip_identical_saves = Bool(
        True,
        help=(
            "Do not archive a save whose bytes are identical (same sha256) to the newest "
            "version of that path waiting in the spool or uploaded by this server, so "
            "saving twice without a change makes one version. Skipped saves are counted in "
            "GET /api/bookstore (archive.skipped_identical). Saves that record an event "
            "(a rename, a restore) are always archived."
        ),
    ).tag(config=True)

    retention = Dict(
        help=(
            "Default policy of `bookstore prune` (its --keep-* flags replace it), with "
            "restic's `forget` rules: {'keep_last': N, 'keep_hourly': N, 'keep_daily': N, "
            "'keep_weekly': N, 'keep_monthly': N, 'keep_yearly': N, 'keep_within': "
            "'7d'} (counts: -1 for unlimited; durations like '36h', '7d', '1y6m'), plus "
            "keep_within_hourly/daily/weekly/monthly/yearly. Example: every save for a "
            "week, hourly for a month, daily for a year: {'keep_within': '7d', "
            "'keep_within_hourly': '1m', 'keep_within_daily': '1y'}. Empty (the default): "
            "no policy, prune needs flags and `bookstore doctor` warns when the workspace "
            "grows fast. See docs/retention.md."
        ),
    ).tag(config=True)

    s3_connect_timeout = Float(5.0, help="Seconds to wait for a TCP connection to S3.").tag(
        config=True
    )

    s3_read_timeout = Float(60.0, help="Seconds to wait for S3 to answer a request.").tag(
        config=True
    )

    # --- defaults from the environment -------------------------------------------------

    def _checked_default(self, trait_name: str, value: str, source: str) -> str:
        """Run ``trait_name``'s validator on a default taken from the environment.

        traitlets skips ``@validate`` for dynamic defaults; a bad value in an environment
        variable must fail as clearly as the same value in a config file.
        """
        validator = getattr(self, f"_validate_{trait_name}")
        try:
            return str(validator(Bunch(trait=self.traits()[trait_name], value=value, owner=self)))
        except TraitError as e:
            raise TraitError(f"{e} (from {source})") from None

    @default("s3_bucket")
    def _s3_bucket_default(self) -> str:
        return self._checked_default(
            "s3_bucket", os.environ.get(ENV_BUCKET, ""), f"the {ENV_BUCKET} environment variable"
        )

    @default("s3_endpoint_url")
    def _s3_endpoint_url_default(self) -> str:
        return self._checked_default(
            "s3_endpoint_url",
            os.environ.get(ENV_ENDPOINT_URL, ""),
            f"the {ENV_ENDPOINT_URL} environment variable",
        )

    @default("s3_region_name")
    def _s3_region_name_default(self) -> str:
        return os.environ.get(ENV_REGION_NAME) or "us-east-1"

    @default("s3_access_key_id")
    def _s3_access_key_id_default(self) -> str | None:
        return os.environ.get(ENV_ACCESS_KEY_ID) or None

    @default("s3_secret_access_key")
    def _s3_secret_access_key_default(self) -> str | None:
        return os.environ.get(ENV_SECRET_ACCESS_KEY) or None

    @default("readable_prefixes")
    def _readable_prefixes_default(self) -> list[str]:
        return default_readable_prefixes(
            self.workspace_prefix, self.published_prefix, getattr(self, "runs_prefix", None)
        )

    @default("spool_dir")
    def _spool_dir_default(self) -> str:
        return self._checked_default(
            "spool_dir",
            os.environ.get(ENV_SPOOL_DIR) or os.path.join(jupyter_data_dir(), "bookstore", "spool"),
            f"the {ENV_SPOOL_DIR} environment variable or the Jupyter data directory",
        )

    # --- validation ----------------------------------------------------------------------

    @validate("workspace_prefix", "published_prefix", "runs_prefix")
    def _validate_prefix(self, proposal: Any) -> str:
        return normalize_prefix(proposal["value"], proposal["trait"].name)

    @validate("readable_prefixes")
    def _validate_readable_prefixes(self, proposal: Any) -> list[str]:
        out = []
        for value in proposal["value"]:
            if not isinstance(value, str):
                raise TraitError(f"readable_prefixes: {value!r} is not a string")
            prefix = normalize_prefix(value, "readable_prefixes")
            if any(part.strip("*") == "" and part != "*" for part in prefix.split("/")):
                raise TraitError(
                    f"readable_prefixes: use a single '*' for a whole key segment (got {value!r})"
                )
            out.append(prefix)
        return out

    @validate("s3_bucket")
    def _validate_s3_bucket(self, proposal: Any) -> str:
        value = proposal["value"].strip()
        if value:
            problem = validate_bucket_name(value)
            if problem:
                raise TraitError(f"s3_bucket {value!r}: {problem}")
        return value

    @validate("s3_endpoint_url")
    def _validate_s3_endpoint_url(self, proposal: Any) -> str:
        value = proposal["value"].strip()
        if value:
            parsed = urlparse(value)
            if parsed.scheme not in {"http", "https"} or not parsed.netloc:
                raise TraitError(
                    f"s3_endpoint_url {value!r} must be an http:// or https:// URL "
                    f"such as 'http://127.0.0.1:8333'"
                )
        return value.rstrip("/")

    @validate("fs_cloning_basedir")
    def _validate_fs_cloning_basedir(self, proposal: Any) -> str:
        value = proposal["value"]
        if value and not os.path.isabs(value):
            raise TraitError(f"fs_cloning_basedir must be an absolute path (got {value!r})")
        return os.path.normpath(value) if value else value

    @validate("spool_dir")
    def _validate_spool_dir(self, proposal: Any) -> str:
        value = proposal["value"]
        if not value:
            raise TraitError("spool_dir must not be empty")
        return os.path.abspath(os.path.expanduser(value))

    @validate("clone_allowed_buckets")
    def _validate_clone_allowed_buckets(self, proposal: Any) -> list[str]:
        value = proposal["value"]
        for name in value:
            problem = validate_bucket_name(name)
            if problem:
                raise TraitError(f"clone_allowed_buckets: {name!r} {problem}")
        return list(value)

    @validate("retention")
    def _validate_retention(self, proposal: Any) -> dict[str, Any]:
        from .retention import PolicyError, RetentionPolicy

        try:
            policy = RetentionPolicy.from_dict(proposal["value"])
        except PolicyError as e:
            raise TraitError(f"retention: {e}") from None
        return policy.to_dict()

    @validate("max_concurrent_runs")
    def _validate_max_concurrent_runs(self, proposal: Any) -> int:
        if proposal["value"] < 1:
            raise TraitError(f"max_concurrent_runs must be >= 1 (got {proposal['value']})")
        return int(proposal["value"])

    @validate("max_spool_bytes", "min_free_disk_bytes")
    def _validate_byte_limit(self, proposal: Any) -> int:
        if proposal["value"] < 0:
            raise TraitError(
                f"{proposal['trait'].name} must be a number of bytes >= 0 (0: no limit; "
                f"got {proposal['value']})"
            )
        return int(proposal["value"])

    @validate("s3_storage_class")
    def _validate_s3_storage_class(self, proposal: Any) -> str:
        value = str(proposal["value"]).strip()
        if value and not re.fullmatch(r"[A-Z0-9_]{1,64}", value):
            raise TraitError(
                f"s3_storage_class must be an S3 storage class name such as STANDARD_IA "
                f"(capital letters, digits and '_'; got {proposal['value']!r})"
            )
        return value

    @validate("multipart_threshold")
    def _validate_multipart_threshold(self, proposal: Any) -> int:
        if proposal["value"] < MIN_PART_SIZE:
            raise TraitError(
                f"multipart_threshold must be at least {MIN_PART_SIZE} bytes (5 MiB, the "
                f"smallest part S3 accepts); got {proposal['value']}"
            )
        return int(proposal["value"])

    @validate("published_cache_seconds")
    def _validate_published_cache_seconds(self, proposal: Any) -> float:
        if proposal["value"] < 0:
            raise TraitError(
                f"published_cache_seconds must be >= 0 (0: no cache; got {proposal['value']})"
            )
        return float(proposal["value"])

    @validate("max_concurrent_uploads")
    def _validate_max_concurrent_uploads(self, proposal: Any) -> int:
        if proposal["value"] < 1:
            raise TraitError(f"max_concurrent_uploads must be >= 1 (got {proposal['value']})")
        return int(proposal["value"])

    @validate(
        "upload_retry_initial_delay",
        "upload_retry_max_delay",
        "flush_timeout",
        "s3_connect_timeout",
        "s3_read_timeout",
    )
    def _validate_positive(self, proposal: Any) -> float:
        if proposal["value"] <= 0:
            raise TraitError(
                f"{proposal['trait'].name} must be a positive number of seconds "
                f"(got {proposal['value']})"
            )
        return float(proposal["value"])

    @validate("upload_quiet_period", "upload_quiet_max_wait")
    def _validate_quiet(self, proposal: Any) -> float:
        if not 0 <= proposal["value"] <= 60:
            raise TraitError(
                f"{proposal['trait'].name} must be from 0 to 60 seconds (got {proposal['value']})"
            )
        return float(proposal["value"])

    @validate("max_checkpoints")
    def _validate_max_checkpoints(self, proposal: Any) -> int:
        if not 1 <= proposal["value"] <= 1000:
            raise TraitError(
                f"max_checkpoints must be from 1 to 1000 (got {proposal['value']}); the "
                f"history page lists every version"
            )
        return int(proposal["value"])

    @validate("max_read_bytes", "max_diff_cells", "max_diff_lines", "max_diff_bytes")
    def _validate_positive_int(self, proposal: Any) -> int:
        if proposal["value"] < 1:
            raise TraitError(f"{proposal['trait'].name} must be >= 1 (got {proposal['value']})")
        return int(proposal["value"])

    @validate("max_request_body_size")
    def _validate_max_request_body_size(self, proposal: Any) -> int:
        if proposal["value"] < 1024:
            raise TraitError(
                f"max_request_body_size must be >= 1024 bytes (got {proposal['value']})"
            )
        return int(proposal["value"])

    # --- derived values ----------------------------------------------------------------

    @property
    def username(self) -> str:
        return jupyter_username()

    def _expand(self, prefix: str) -> str:
        # One user, one prefix: the name is encoded reversibly (see encode_username).
        return prefix.format(username=encode_username(self.username))

    @property
    def workspace(self) -> str:
        """The workspace prefix with ``{username}`` filled in."""
        return self._expand(self.workspace_prefix)

    @property
    def published(self) -> str:
        """The published prefix with ``{username}`` filled in."""
        return self._expand(self.published_prefix)

    @property
    def runs(self) -> str:
        """The runs prefix with ``{username}`` filled in."""
        return self._expand(self.runs_prefix)

    def prefix_for(self, which: str) -> str:
        """The expanded prefix named ``workspace``, ``published`` or ``runs``."""
        if which == "workspace":
            return self.workspace
        if which == "published":
            return self.published
        if which == "runs":
            return self.runs
        raise ValueError(f"unknown prefix {which!r}: use 'workspace', 'published' or 'runs'")

    def s3_key(self, which: str, path: str) -> str:
        """The S3 key of Jupyter path ``path`` under prefix ``which``; path must be clean."""
        return posixpath.join(self.prefix_for(which), path)

    @property
    def readable(self) -> list[str]:
        """``readable_prefixes`` with ``{username}`` filled in."""
        return [self._expand(t) for t in self.readable_prefixes]

    def unreadable_reason(self, key: str, bucket: str | None = None) -> str | None:
        """Why ``key`` of ``bucket`` may not be read (``readable_prefixes``), or None.

        The one check behind clone, history, diff and runs, whichever door (API, pages,
        CLI, client) asks. Only s3_bucket is restricted; ``bucket`` None means s3_bucket.
        """
        if bucket is not None and bucket != self.s3_bucket:
            return None
        roots = self.readable
        if any(prefix_matches(root, key) for root in roots):
            return None
        where = ", ".join(f"{r}/" for r in roots) or "nowhere (the list is empty)"
        return (
            f"reading {key!r} is not allowed: this server reads only under {where} of "
            f"bucket {self.s3_bucket!r} (c.BookstoreSettings.readable_prefixes; other users' "
            f"drafts stay private unless a template such as 'workspace/*' is added)"
        )

    @property
    def retention_policy(self) -> Any:
        """``retention`` as a :class:`bookstore.retention.RetentionPolicy`."""
        from .retention import RetentionPolicy

        return RetentionPolicy.from_dict(self.retention)

    @property
    def allowed_clone_buckets(self) -> list[str]:
        """s3_bucket plus clone_allowed_buckets."""
        own = [self.s3_bucket] if self.s3_bucket else []
        return own + [b for b in self.clone_allowed_buckets if b not in own]

    def should_archive(self, path: str) -> bool:
        """Whether saves of Jupyter path ``path`` are archived: it matches
        ``archive_patterns`` and S3 can store its name (:func:`unarchivable_reason`)."""
        return self.matches_archive_patterns(path) and unarchivable_reason(path) is None

    def matches_archive_patterns(self, path: str) -> bool:
        """Whether ``path`` matches ``archive_patterns`` (whatever its name holds)."""
        name = posixpath.basename(path)
        return any(
            fnmatch.fnmatchcase(path, pat) or fnmatch.fnmatchcase(name, pat)
            for pat in self.archive_patterns
        )

    @property
    def fs_clone_enabled(self) -> bool:
        return bool(self.fs_cloning_basedir) and os.path.isdir(self.fs_cloning_basedir)


#: Bidirectional formatting characters: they make a path display as another one
#: (``evil\u202egpj.ipynb`` shows as ``evilbnpi.jpg``).
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def unsafe_path_char(c: str) -> bool:
    """Whether ``c`` may never appear in a path or key that bookstore handles.

    C0 and C1 control characters, DEL, bidirectional overrides and isolates, and lone
    surrogates (which cannot be encoded as UTF-8, so never reach S3 or a disk).
    """
    o = ord(c)
    return o < 32 or 0x7F <= o <= 0x9F or c in BIDI_CONTROLS or 0xD800 <= o <= 0xDFFF


def describe_char(c: str) -> str:
    """``the control character U+0009``-style name of a refused character."""
    o = ord(c)
    if 0xD800 <= o <= 0xDFFF:
        kind = "the lone surrogate"
    elif c in BIDI_CONTROLS:
        kind = "the bidirectional control character"
    else:
        kind = "the control character"
    return f"{kind} U+{o:04X}"


def unarchivable_reason(path: str) -> str | None:
    """Why files at Jupyter path ``path`` are not archived, or None if they can be.

    bookstore's one file name policy, applied alike by the archiver (such saves are
    written to disk as usual, not archived, logged once and listed in ``/api/bookstore``
    as ``not_archivable``), the history API, the pages and the command line (400 with
    this reason), through :func:`clean_api_path`:

    * a backslash: some S3-compatible servers (SeaweedFS) store it as ``/``, so
      ``a\\b.ipynb`` and ``a/b.ipynb`` would share one history;
    * control characters (tab, newline... C0 and C1), DEL, bidirectional overrides and
      lone surrogates (:func:`unsafe_path_char`): S3 listings are XML, which cannot carry
      most of them, they cannot be typed or shown, or they disguise the name.
    """
    if "\\" in path:
        return (
            f"{path!r} contains a backslash, which some S3 servers store as '/' (merging "
            f"it with another file's history): files named so are not archived; rename it"
        )
    bad = next((c for c in path if unsafe_path_char(c)), None)
    if bad is not None:
        return (
            f"{path!r} contains {describe_char(bad)}, which S3 cannot list reliably or "
            f"which disguises the name: files named so are not archived; rename it"
        )
    return None


def clean_api_path(path: str) -> str:
    """Validate a Jupyter API path for use in an S3 key or under a root directory.

    Raises ValueError with what is wrong: empty, absolute, '.'/'..' segments, or a
    name bookstore does not archive (:func:`unarchivable_reason`: backslashes, control
    characters, bidirectional overrides, lone surrogates).
    """
    if path is None or not path.strip("/"):
        raise ValueError("the path is empty")
    reason = unarchivable_reason(path)
    if reason is not None:
        raise ValueError(reason)
    if path.startswith("/"):
        raise ValueError(
            f"absolute paths are not allowed; give a path relative to the root (got {path!r})"
        )
    parts = path.rstrip("/").split("/")
    if any(p in {"", ".", ".."} for p in parts):
        raise ValueError(f"'.', '..' and empty segments are not allowed in paths (got {path!r})")
    return "/".join(parts)


def config_markdown() -> str:
    """The configuration reference (docs/configuration.md), generated from the traits."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated from bookstore/settings.py by `python docs/gen_config.py`;",
        "     tests/test_docs.py checks it is up to date. -->",
        "",
        "Every option is set as `c.BookstoreSettings.<name> = ...` in any Jupyter config file",
        "(`jupyter_server_config.py`, or `jupyter_notebook_config.py` for Notebook 7 and",
        "nbclassic), or on the command line as `--BookstoreSettings.<name>=...`.",
        "",
    ]
    for name, trait in sorted(BookstoreSettings.class_traits(config=True).items()):
        default = trait.default_value_repr()
        if name in {"s3_bucket", "s3_endpoint_url", "s3_region_name", "spool_dir"}:
            default += " (see text)"
        lines += [
            f"## `{name}`",
            "",
            f"*{type(trait).__name__}*, default `{default}`",
            "",
            str(trait.help),
            "",
        ]
    return "\n".join(lines)
