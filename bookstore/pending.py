"""Saves still waiting in a spool directory, read without changing it (for the CLI)."""

from __future__ import annotations

from .spool import SpoolEntry, scan_entries, spool_candidates


def read_pending_entries(spool_dir: str, bucket: str, key: str) -> list[SpoolEntry]:
    """Saves of one key waiting in a spool directory, oldest first, read-only.

    For processes other than the server (the command line): it never changes the spool.
    Reads the siblings (``<spool_dir>-2`` ...) that other servers sharing it use, too.
    Blocking: run it in a thread from async code.
    """
    entries = []
    for directory in spool_candidates(spool_dir):
        for _file, entry in scan_entries(directory):
            if isinstance(entry, SpoolEntry) and entry.bucket == bucket and entry.key == key:
                entries.append(entry)
    entries.sort(key=lambda e: e.save_id)
    return entries
