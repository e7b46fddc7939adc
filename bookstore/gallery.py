"""The gallery: every notebook published in the bucket, newest version first per key.

One :class:`Gallery` per server serves ``GET /api/bookstore/published``, the page
``/bookstore/published`` and ``bookstore published``. It lists with S3's own pagination
(``ListObjectVersions``, one key range per page, resumed from the last key shown), reads at
most :data:`MAX_SCAN_PAGES` S3 pages per answer (a ``?q=`` that matches rarely answers
with what it found and a token to go on), and keeps each answer for
``BookstoreSettings.published_cache_seconds`` so a busy gallery costs S3 little.

Owners come from the key: with ``published_prefix = 'published/{username}'`` the segment
after ``published/`` is the (encoded) owner. Keys outside ``readable_prefixes`` are never
listed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .codecs import decode_page_token, encode_page_token
from .errors import BadRequest
from .s3 import translate_error
from .settings import decode_username, encode_username
from .times import isoformat
from .validators import validate_limit

if TYPE_CHECKING:
    from .s3 import S3Store
    from .settings import BookstoreSettings

#: Entries on one page unless ``limit`` says otherwise; the most one page may hold.
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: S3 list pages read for one answer at most (each lists up to 1,000 versions).
MAX_SCAN_PAGES = 20
#: Answers kept in the cache at most.
CACHE_ENTRIES = 256
#: Longest ``?q=`` and ``?owner=``.
MAX_FILTER_CHARS = 256


@dataclass
class PublishedNotebook:
    """The newest version of one published key."""

    owner: str | None
    path: str
    key: str
    version_id: str
    last_modified: datetime
    size: int
    versions: int

    def to_json(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "path": self.path,
            "key": self.key,
            "version_id": self.version_id,
            "last_modified": isoformat(self.last_modified),
            "size": self.size,
            "versions": self.versions,
        }


@dataclass
class GalleryPage:
    bucket: str
    notebooks: list[PublishedNotebook]
    next_token: str | None
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "published": [n.to_json() for n in self.notebooks],
            "next_token": self.next_token,
        }


def validate_gallery_limit(value: Any) -> int:
    return validate_limit(value, DEFAULT_LIMIT, MAX_LIMIT)


def validate_filter(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_FILTER_CHARS:
        raise BadRequest(f"{name} must be a string of at most {MAX_FILTER_CHARS} characters")
    return value


class Gallery:
    """Pages of the published notebooks of ``settings.s3_bucket``, cached briefly."""

    def __init__(self, settings: BookstoreSettings, store: S3Store) -> None:
        self.settings = settings
        self.store = store
        self._cache: OrderedDict[tuple[Any, ...], tuple[float, GalleryPage]] = OrderedDict()

    # --- layout ----------------------------------------------------------------------------

    def _layout(self) -> tuple[str, str | None]:
        """(published_prefix before ``{username}``, the part after), or (prefix + "/", None)."""
        template = self.settings.published_prefix
        if "{username}" not in template:
            return template + "/", None
        head, tail = template.split("{username}", 1)
        return head, tail

    def list_prefix(self, owner: str | None) -> str:
        head, tail = self._layout()
        if owner is None:
            return head
        if tail is None:
            raise BadRequest(
                "owner: published notebooks have no owner in their key here "
                f"(c.BookstoreSettings.published_prefix is {self.settings.published_prefix!r}, "
                "without {username})"
            )
        return head + encode_username(owner) + tail + "/"

    def parse_key(self, key: str) -> tuple[str | None, str] | None:
        """(owner, Jupyter path) of a published key, or None if it is not one."""
        head, tail = self._layout()
        if not key.startswith(head):
            return None
        rest = key[len(head) :]
        if tail is None:
            return (None, rest) if rest else None
        segment, slash, after = rest.partition("/")
        if not segment or not slash:
            return None
        after = "/" + after
        if not after.startswith(tail + "/"):
            return None
        path = after[len(tail) + 1 :]
        if not path:
            return None
        try:
            owner = decode_username(segment)
        except UnicodeDecodeError:
            return None
        if encode_username(owner) != segment:  # not a prefix bookstore would write
            return None
        return owner, path

    # --- tokens ----------------------------------------------------------------------------

    @staticmethod
    def encode_token(key: str) -> str:
        return encode_page_token(key) or ""

    @staticmethod
    def decode_token(token: str | None, prefix: str) -> str | None:
        return decode_page_token(
            token, accept=lambda key: key.startswith(prefix), hint="start again without it"
        )

    # --- listing ---------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Forget cached answers (after this server publishes)."""
        self._cache.clear()

    async def page(
        self,
        *,
        owner: str | None = None,
        q: str | None = None,
        limit: int = DEFAULT_LIMIT,
        page_token: str | None = None,
    ) -> GalleryPage:
        """One page of published notebooks in key order, filtered by owner and path substring."""
        prefix = self.list_prefix(owner)
        start = self.decode_token(page_token, prefix)
        cache_key = (self.settings.s3_bucket, prefix, q, limit, start)
        ttl = self.settings.published_cache_seconds
        now = time.monotonic()
        hit = self._cache.get(cache_key)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(cache_key)
            page = hit[1]
            return GalleryPage(page.bucket, page.notebooks, page.next_token, cached=True)
        page = await self._fetch(prefix, q, limit, start)
        if ttl > 0:
            self._cache[cache_key] = (now + ttl, page)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return page

    async def _fetch(
        self, prefix: str, q: str | None, limit: int, start: str | None
    ) -> GalleryPage:
        bucket = self.settings.s3_bucket
        what = f"listing published notebooks under s3://{bucket}/{prefix}"
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "Prefix": prefix,
            "MaxKeys": min(1000, 2 * limit + 10),
        }
        if start:
            kwargs["KeyMarker"] = start
        found: list[PublishedNotebook] = []
        q_folded = q.casefold() if q else None
        # The key being read: its versions may continue on the next S3 page.
        current: dict[str, Any] | None = None
        last_done: str | None = None

        def finish(entry: dict[str, Any]) -> None:
            nonlocal last_done
            last_done = entry["key"]
            latest = entry["latest"]
            if latest is None or entry["deleted"]:
                return  # unpublished: its newest version is a delete marker
            parsed = self.parse_key(entry["key"])
            if parsed is None or self.settings.unreadable_reason(entry["key"]):
                return
            owner, path = parsed
            if q_folded and q_folded not in path.casefold():
                return
            found.append(
                PublishedNotebook(
                    owner=owner,
                    path=path,
                    key=entry["key"],
                    version_id=latest["VersionId"],
                    last_modified=latest["LastModified"],
                    size=int(latest.get("Size", 0)),
                    versions=entry["count"],
                )
            )

        try:
            client = await self.store.client()
            for _ in range(MAX_SCAN_PAGES):
                resp = await client.list_object_versions(**kwargs)
                items = [(v, False) for v in resp.get("Versions", [])] + [
                    (m, True) for m in resp.get("DeleteMarkers", [])
                ]
                items.sort(key=lambda it: it[0]["Key"])  # stable: S3 order within a key
                for item, is_marker in items:
                    key = item["Key"]
                    if current is None or current["key"] != key:
                        if current is not None:
                            done_key = current["key"]
                            finish(current)
                            if len(found) >= limit:
                                return GalleryPage(bucket, found, self.encode_token(done_key))
                        current = {"key": key, "latest": None, "deleted": False, "count": 0}
                    if not is_marker:
                        current["count"] += 1
                    if item.get("IsLatest"):
                        current["deleted"] = is_marker
                        if not is_marker:
                            current["latest"] = item
                if not resp.get("IsTruncated"):
                    if current is not None:
                        finish(current)
                    return GalleryPage(bucket, found, None)
                kwargs["KeyMarker"] = resp.get("NextKeyMarker")
                if resp.get("NextVersionIdMarker"):
                    kwargs["VersionIdMarker"] = resp["NextVersionIdMarker"]
                else:
                    kwargs.pop("VersionIdMarker", None)
        except BadRequest:
            raise
        except Exception as e:
            raise translate_error(e, what) from e
        # Scan budget spent (a rare ?q=): answer with what was found, and where to go on.
        if last_done is None and current is not None:
            # One key with more versions than the budget lists: show it (count so far).
            finish(current)
        return GalleryPage(bucket, found, self.encode_token(last_done) if last_done else None)
