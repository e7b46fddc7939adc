"""The gallery: every notebook published in the bucket, newest version first per key.

One :class:`Gallery` per server serves ``GET /api/bookstore/published``, the page
``/bookstore/published`` and ``bookstore published``. It lists current objects with S3's
own pagination (``ListObjectsV2``, 1,000 keys a request, resumed after the last key shown),
reads at most :data:`MAX_SCAN_PAGES` S3 pages per answer (a ``?q=`` that matches rarely
answers with what it found and a token to go on), then asks S3 for the details of the
entries shown only (a HEAD for the newest version id, a ``ListObjectVersions`` of that one
key for the number of versions), a few at a time. Each answer is kept for
``BookstoreSettings.published_cache_seconds`` so a busy gallery costs S3 little, and after
that, until it is :data:`STALE_FACTOR` times as old, given at once while one background
request fetches it again (so readers seldom wait for a listing of a big bucket); a key's
newest version id is kept while its listed ETag, time and size stay the same (so an answer
for keys that did not change is one list request), and its version count while its newest
version stays the same. When one list request already took longer than the counts may
(an S3 server that scans its whole bucket for every list request, as moto does), no
version is counted for a while: listing versions there would be slower still.

Owners come from the key: with ``published_prefix = 'published/{username}'`` the segment
after ``published/`` is the (encoded) owner. Keys outside ``readable_prefixes`` are never
listed.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .codecs import decode_page_token, encode_page_token
from .errors import BadRequest
from .s3 import S3NotFound, gather_or_cancel, translate_error
from .settings import decode_username, encode_username
from .times import isoformat
from .validators import validate_limit

if TYPE_CHECKING:
    from .s3 import S3Store
    from .settings import BookstoreSettings

#: Entries on one page unless ``limit`` says otherwise; the most one page may hold.
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: Keys per ListObjectsV2 / ListObjectVersions request (S3's most).
LIST_PAGE_KEYS = 1000
#: S3 list pages read for one answer at most (20,000 keys): a ``?q=`` that matches rarely
#: answers with what it found and a token to go on.
MAX_SCAN_PAGES = 20
#: Per-entry requests (HEAD, version count) in flight at once for one answer.
DETAIL_CONCURRENCY = 8
#: Seconds one answer waits for version counts; the ones not back are left out (None).
COUNT_BUDGET = 0.5
#: Seconds a version count is reused while the key's newest version stays the same.
COUNT_TTL = 300.0
#: Seconds without new version counts after some were not back within the budget (an S3
#: server that counts slowly is not asked again on every request).
COUNT_BACKOFF = 60.0
#: Version counts kept at most.
COUNT_CACHE_ENTRIES = 10_000
#: ListObjectVersions pages read to count one key's versions at most (10,000 versions).
MAX_COUNT_PAGES = 10
#: Answers kept in the cache at most.
CACHE_ENTRIES = 256
#: An answer older than ``published_cache_seconds`` is still given, while one refresh runs
#: in the background, until it is this many times ``published_cache_seconds`` old.
STALE_FACTOR = 6
#: Longest ``?q=`` and ``?owner=``.
MAX_FILTER_CHARS = 256


#: One listed object chosen for an answer: (owner, path, key, its ListObjectsV2 entry).
Chosen = tuple[str | None, str, str, dict[str, Any]]


@dataclass
class PublishedNotebook:
    """The newest version of one published key."""

    owner: str | None
    path: str
    key: str
    version_id: str
    last_modified: datetime
    size: int
    versions: int | None

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

    def __init__(
        self,
        settings: BookstoreSettings,
        store: S3Store,
        *,
        count_budget: float | None = COUNT_BUDGET,
    ) -> None:
        self.settings = settings
        self.store = store
        #: Seconds an answer waits for version counts (None: until all are counted).
        self.count_budget = count_budget
        self._count_backoff_until = 0.0
        #: cache key -> (fresh until, given until at the latest, answer)
        self._cache: OrderedDict[tuple[Any, ...], tuple[float, float, GalleryPage]] = OrderedDict()
        #: Background refreshes of stale answers, one per cache key.
        self._refreshing: dict[tuple[Any, ...], asyncio.Task[None]] = {}
        #: Bumped by :meth:`invalidate`: a refresh started before does not store its answer.
        self._generation = 0
        #: (bucket, key) -> (newest version id, number of versions, reuse until)
        self._counts: OrderedDict[tuple[str, str], tuple[str, int, float]] = OrderedDict()
        #: (bucket, key) -> ((ETag, time, size) as listed, its version id, reuse until)
        self._ids: OrderedDict[tuple[str, str], tuple[tuple[Any, ...], str, float]] = OrderedDict()

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
        self._generation += 1

    async def stop(self) -> None:
        """Cancel the background refreshes (the server is stopping)."""
        tasks = list(self._refreshing.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._refreshing.clear()

    def _store(self, cache_key: tuple[Any, ...], page: GalleryPage) -> None:
        ttl = self.settings.published_cache_seconds
        if ttl <= 0:
            return
        now = time.monotonic()
        self._cache[cache_key] = (now + ttl, now + ttl * STALE_FACTOR, page)
        self._cache.move_to_end(cache_key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)

    def _refresh(self, cache_key: tuple[Any, ...], args: tuple[Any, ...]) -> None:
        """Fetch a stale answer again in the background (one refresh per answer at a time)."""
        if cache_key in self._refreshing:
            return
        generation = self._generation

        async def refresh() -> None:
            try:
                page = await self._fetch(*args)
            except Exception as e:  # the stale answer stays; a request past it will raise
                self.settings.log.warning("bookstore: refreshing the gallery failed: %s", e)
                return
            finally:
                self._refreshing.pop(cache_key, None)
            if generation == self._generation:
                self._store(cache_key, page)

        self._refreshing[cache_key] = asyncio.ensure_future(refresh())

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
        now = time.monotonic()
        hit = self._cache.get(cache_key)
        if hit is not None and hit[1] > now and self.settings.published_cache_seconds > 0:
            fresh_until, _, page = hit
            self._cache.move_to_end(cache_key)
            if fresh_until <= now:  # stale: given at once, fetched again in the background
                self._refresh(cache_key, (prefix, q, limit, start))
            return GalleryPage(page.bucket, page.notebooks, page.next_token, cached=True)
        page = await self._fetch(prefix, q, limit, start)
        self._store(cache_key, page)
        return page

    async def _fetch(
        self, prefix: str, q: str | None, limit: int, start: str | None
    ) -> GalleryPage:
        bucket = self.settings.s3_bucket
        what = f"listing published notebooks under s3://{bucket}/{prefix}"
        try:
            started = time.monotonic()
            chosen, next_after = await self._scan(prefix, q, limit, start)
            # A server that took longer than the count budget to list one page scans its
            # whole bucket per list request (moto does); listing versions would be slower
            # still, and would keep it busy long after this answer gave up waiting.
            if self.count_budget is not None and time.monotonic() - started > self.count_budget:
                self._count_backoff_until = time.monotonic() + COUNT_BACKOFF
            found = await self._details(chosen)
        except BadRequest:
            raise
        except Exception as e:
            raise translate_error(e, what) from e
        return GalleryPage(bucket, found, self.encode_token(next_after) if next_after else None)

    async def _scan(
        self, prefix: str, q: str | None, limit: int, start: str | None
    ) -> tuple[list[Chosen], str | None]:
        """(owner, path, key, listed object) of the next ``limit`` matching current objects
        after ``start``, and the key to go on after (None: the listing is complete).

        ListObjectsV2 lists current objects only (an unpublished key, whose newest version is
        a delete marker, is not listed), in key order, 1,000 per request. At most
        :data:`MAX_SCAN_PAGES` requests are read: a rare ``q`` answers with fewer entries
        (maybe none) and the key to resume after.
        """
        kwargs: dict[str, Any] = {
            "Bucket": self.settings.s3_bucket,
            "Prefix": prefix,
            # Unfiltered, a page needs about ``limit`` keys (a short S3 answer); a ``q`` may
            # skip most keys, so it reads full S3 pages.
            "MaxKeys": LIST_PAGE_KEYS if q else min(LIST_PAGE_KEYS, 2 * limit + 10),
        }
        if start:
            kwargs["StartAfter"] = start
        q_folded = q.casefold() if q else None
        chosen: list[Chosen] = []
        last_seen: str | None = None
        client = await self.store.client()
        for _ in range(MAX_SCAN_PAGES):
            resp = await client.list_objects_v2(**kwargs)
            contents = resp.get("Contents", [])
            truncated = bool(resp.get("IsTruncated"))
            for i, obj in enumerate(contents):
                key = obj["Key"]
                last_seen = key
                parsed = self.parse_key(key)
                if parsed is None or self.settings.unreadable_reason(key):
                    continue
                owner, path = parsed
                if q_folded and q_folded not in path.casefold():
                    continue
                chosen.append((owner, path, key, obj))
                if len(chosen) >= limit:
                    more = truncated or i + 1 < len(contents)
                    return chosen, key if more else None
            token = resp.get("NextContinuationToken")
            if not truncated or not token:
                return chosen, None
            kwargs.pop("StartAfter", None)
            kwargs["ContinuationToken"] = token
        return chosen, last_seen  # scan budget spent: go on after the last key read

    async def _details(self, chosen: list[Chosen]) -> list[PublishedNotebook]:
        """The newest version id and the number of versions of each chosen key.

        ListObjectsV2 gives each key's time, size and ETag but not its version id. The id
        is kept per key with the listed ETag, time and size it belonged to, so a key that
        has not changed since is not asked again; the others cost a HEAD each,
        :data:`DETAIL_CONCURRENCY` at a time. (Two versions with the same bytes listed
        within the same second look alike: the older id of the same content may be shown
        for up to :data:`COUNT_TTL` seconds.)

        Counts are cached per newest version id; a count not known within
        ``count_budget`` seconds is left out (``versions`` None) rather than holding the
        page back, and no new count is asked for :data:`COUNT_BACKOFF` seconds.
        """
        bucket = self.settings.s3_bucket
        gate = asyncio.Semaphore(DETAIL_CONCURRENCY)
        now = time.monotonic()
        newest: dict[str, tuple[str, datetime, int] | None] = {}
        to_head: list[tuple[str, tuple[Any, ...]]] = []
        for _owner, _path, key, obj in chosen:
            listed = (obj.get("ETag"), obj.get("LastModified"), obj.get("Size"))
            known = self._ids.get((bucket, key))
            if known is not None and known[0] == listed and known[2] > now:
                newest[key] = (known[1], obj["LastModified"], int(obj.get("Size", 0)))
            else:
                to_head.append((key, listed))

        async def head(key: str, listed: tuple[Any, ...]) -> None:
            async with gate:
                try:
                    got = await self.store.head_object(key)
                except S3NotFound:  # unpublished since it was listed
                    newest[key] = None
                    return
            version_id = str(got.get("VersionId") or "null")
            newest[key] = (version_id, got["LastModified"], int(got.get("ContentLength", 0)))
            self._ids[(bucket, key)] = (listed, version_id, time.monotonic() + COUNT_TTL)
            self._ids.move_to_end((bucket, key))
            while len(self._ids) > COUNT_CACHE_ENTRIES:
                self._ids.popitem(last=False)

        await gather_or_cancel(head(key, listed) for key, listed in to_head)
        now = time.monotonic()
        counts: dict[str, int] = {}
        to_count: list[tuple[str, str]] = []
        for _owner, _path, key, _obj in chosen:
            got = newest.get(key)
            if got is None:
                continue
            version_id = got[0]
            hit = self._counts.get((bucket, key))
            if hit is not None and hit[0] == version_id and hit[2] > now:
                counts[key] = hit[1]
            else:
                to_count.append((key, version_id))

        async def count(key: str, version_id: str) -> None:
            async with gate:
                n = await self.count_versions(key)
            counts[key] = n
            self._counts[(bucket, key)] = (version_id, n, time.monotonic() + COUNT_TTL)
            self._counts.move_to_end((bucket, key))
            while len(self._counts) > COUNT_CACHE_ENTRIES:
                self._counts.popitem(last=False)

        if to_count and now >= self._count_backoff_until:
            tasks = [asyncio.ensure_future(count(k, v)) for k, v in to_count]
            done, pending = await asyncio.wait(tasks, timeout=self.count_budget)
            for task in pending:
                task.cancel()
            if pending:
                self._count_backoff_until = time.monotonic() + COUNT_BACKOFF
                await asyncio.wait(pending)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        found = []
        for owner, path, key, _obj in chosen:
            got = newest.get(key)
            if got is None:
                continue
            found.append(
                PublishedNotebook(
                    owner=owner,
                    path=path,
                    key=key,
                    version_id=got[0],
                    last_modified=got[1],
                    size=got[2],
                    versions=counts.get(key),
                )
            )
        return found

    async def count_versions(self, key: str) -> int:
        """How many versions ``key`` has (delete markers not counted), up to
        :data:`MAX_COUNT_PAGES` ListObjectVersions pages."""
        client = await self.store.client()
        kwargs: dict[str, Any] = {
            "Bucket": self.settings.s3_bucket,
            "Prefix": key,
            "MaxKeys": LIST_PAGE_KEYS,
        }
        n = 0
        for _ in range(MAX_COUNT_PAGES):
            resp = await client.list_object_versions(**kwargs)
            versions = resp.get("Versions", [])
            n += sum(1 for v in versions if v["Key"] == key)
            # No early stop at a longer key (``a.ipynb.bak``): not every S3 server lists a
            # key before the keys it is a prefix of.
            if not resp.get("IsTruncated"):
                break
            kwargs["KeyMarker"] = resp.get("NextKeyMarker")
            if resp.get("NextVersionIdMarker"):
                kwargs["VersionIdMarker"] = resp["NextVersionIdMarker"]
            else:
                kwargs.pop("VersionIdMarker", None)
        return n
