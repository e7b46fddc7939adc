"""``bookstore published``: the gallery of published notebooks, on the command line."""

from __future__ import annotations

from traitlets import Integer, Unicode

from ..gallery import MAX_LIMIT, Gallery, PublishedNotebook, validate_filter
from ..render import human_size
from ..s3 import S3Store
from ..settings import BookstoreSettings
from ..times import human_time
from .base import BookstoreCommand, common_aliases
from .output import collect_pages, table


class PublishedCommand(BookstoreCommand):
    """List every user's published notebooks (--owner, --q filter them)."""

    name = "bookstore-published"
    description = (
        "List the notebooks published in the bucket: owner, path, newest version, size and "
        "number of versions. --owner=NAME and --q=TEXT (a path substring) filter them."
    )
    aliases = {
        **common_aliases,
        "owner": "PublishedCommand.owner",
        "q": "PublishedCommand.q",
        "limit": "PublishedCommand.limit",
    }

    owner = Unicode("", help="Only this user's published notebooks.").tag(config=True)
    q = Unicode("", help="Only notebooks whose path contains this text (any case).").tag(
        config=True
    )
    limit = Integer(0, help="Show at most this many notebooks (0: all).").tag(config=True)

    async def run(self, settings: BookstoreSettings, store: S3Store, args: list[str]) -> None:
        self.need_bucket(settings)
        owner = validate_filter(self.owner, "--owner")
        q = validate_filter(self.q, "--q")
        gallery = Gallery(settings, store, count_budget=None)  # a command waits for counts

        async def fetch(size: int, token: str | None) -> tuple[list[PublishedNotebook], str | None]:
            page = await gallery.page(owner=owner, q=q, limit=size, page_token=token)
            return page.notebooks, page.next_token

        found, _ = await collect_pages(fetch, self.limit, MAX_LIMIT)
        if self.limit:
            found = found[: self.limit]
        rows = [
            [
                n.owner if n.owner is not None else "",
                n.path,
                short_time_of(n),
                human_size(n.size),
                "?" if n.versions is None else str(n.versions),
                n.version_id,
            ]
            for n in found
        ]
        text = f"s3://{settings.s3_bucket}: {len(found)} published notebook(s)\n" + table(
            rows, ["OWNER", "PATH", "PUBLISHED (UTC)", "SIZE", "VERSIONS", "VERSION ID"]
        )
        self.emit({"bucket": settings.s3_bucket, "published": [n.to_json() for n in found]}, text)


def short_time_of(n: PublishedNotebook) -> str:
    """``2024-05-01 14:03:22`` (UTC)."""
    return human_time(n.last_modified)
