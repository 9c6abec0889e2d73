"""Reading everything relays hold for a filter, not just their first page.

A relay answers a query with at most its own limit of events, newest first (nostr-sdk's relay:
500), and says nothing about what it left out.  Read once, 500 listings from fresh keys — free
to make — pushed every older, honest listing out of `market browse`.  So discovery reads page
after page (`until` = one second before the oldest event of the last page: what a relay left
out of that very second is skipped) until a page brings nothing new, at most `MAX_PAGES`; and
it asks about authors `AUTHORS_PER_QUERY` at a time, so a long list of them never makes a
request larger than a relay takes (64 KiB).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Fetch = Callable[[list[dict[str, Any]]], Awaitable[list[str]]]

MAX_PAGES = 10
AUTHORS_PER_QUERY = 250


def _head(raw: str) -> tuple[str, int] | None:
    """(id, created_at) of a raw event, or None if it has no readable ones (the caller's
    parser counts it)."""
    try:
        data = json.loads(raw)
        event_id, created_at = data["id"], data["created_at"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    if not isinstance(event_id, str) or type(created_at) is not int:
        return None
    return event_id, created_at


async def fetch_pages(fetch: Fetch, filt: dict[str, Any], max_pages: int = MAX_PAGES) -> list[str]:
    """Every event the relays hold for `filt`, read a page at a time (at most `max_pages`)."""
    out: list[str] = []
    seen: set[str] = set()
    until: int | None = None
    for _ in range(max_pages):
        page = await fetch([filt if until is None else {**filt, "until": until}])
        oldest: int | None = None
        for raw in page:
            head = _head(raw)
            if head is None:
                out.append(raw)
                continue
            if head[0] in seen:
                continue
            seen.add(head[0])
            out.append(raw)
            oldest = head[1] if oldest is None else min(oldest, head[1])
        if oldest is None or oldest <= 0:
            break  # nothing new: every page is read
        until = oldest - 1
    return out


async def fetch_about(fetch: Fetch, filt: dict[str, Any], tag: str, values: list[str]) -> list[str]:
    """`fetch_pages` for `filt` with `#<tag>` = `values`, asked `AUTHORS_PER_QUERY` at a time."""
    out: list[str] = []
    for i in range(0, len(values), AUTHORS_PER_QUERY):
        chunk = values[i : i + AUTHORS_PER_QUERY]
        out += await fetch_pages(fetch, {**filt, f"#{tag}": chunk})
    return out
