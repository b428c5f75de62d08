"""The exclusion list: photo ids (or file names) that must not be learned from.

One id per line in a text file, `<storage root>/curation/exclude.txt` by default; blank
lines and `#` comments are ignored. Reviewers add to it (`colorize curate export`); the next
`prepare` of a source leaves the listed photos out and records them as dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from colorization import paths, storage
from colorization.constants import EXCLUDE_LIST_NAME

logger = logging.getLogger(__name__)


def exclusion_list_url() -> str:
    """The default exclusion list under the storage root."""
    return storage.join(paths.curation_root(), EXCLUDE_LIST_NAME)


def parse_exclusions(text: str) -> set[str]:
    """Ids of an exclusion list's text: one per line, blanks and `#` comments ignored."""
    ids = set()
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            ids.add(entry)
    return ids


def read_exclusions(url: str | None = None, *, missing_ok: bool = True) -> set[str]:
    """The ids listed at `url` (default: the storage root's list); empty when it does not
    exist and `missing_ok`."""
    url = url or exclusion_list_url()
    try:
        return parse_exclusions(storage.read_text(url))
    except FileNotFoundError:
        if not missing_ok:
            raise
        return set()


def add_exclusions(ids: Iterable[str], url: str | None = None) -> str:
    """Merge `ids` into the list at `url` (default: the storage root's); returns its URL.

    The file is rewritten atomically, sorted, so concurrent readers see the old or new list.
    """
    url = url or exclusion_list_url()
    merged = read_exclusions(url) | {str(i).strip() for i in ids if str(i).strip()}
    storage.write_text(url, "".join(f"{entry}\n" for entry in sorted(merged)))
    logger.info("exclusion list %s now holds %d ids", url, len(merged))
    return url
