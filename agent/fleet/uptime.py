"""Presence over time, for the gossip component: evidence that a node is up (a frame from it,
its state record, its Lightning connection; for this node, its own loop) credited per UTC day
(agent/fleet/gossip_rules.py says how much), kept 30 days, read as uptime % and last seen.
Bounded (one row per node per day, 30 days), restart-proof (the last evidence is stored: a
restart longer than the allowed gap credits nothing) and clock-jump-proof (a jump forward is a
gap, a jump back restarts the count, and no day ever holds more than a day)."""

from __future__ import annotations

from typing import Any

from agent.fleet import gossip_rules as rules
from agent.store import presence as pdb
from agent.store.db import Db, Tx


def observe(tx: Tx, node: str, at: int, gap_s: int) -> None:
    """Evidence that `node` was up at `at` (the transaction's time is ours)."""
    last = pdb.mark(tx, node)
    got = rules.credit(None if last is None else (last.since, last.at), at, tx.now, gap_s)
    if got is None:
        return
    for day, seconds in got.days:
        pdb.credit(tx, node, day, seconds)
    pdb.set_mark(tx, node, got.since, got.at)


def prune(tx: Tx, now: int, keep: set[str]) -> None:
    """Days older than the window go, and everything of nodes not in `keep`."""
    pdb.prune_uptime(tx, now // rules.DAY_S - rules.UPTIME_DAYS + 1, keep)


def report(
    store: Db, nodes: list[str], me: str, now: int, last_seen: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """For each node: when last seen, active (within 24 h), uptime % over 30 days (None before
    anything was observed).  Ours is our own uptime over the time since we first ran."""
    first_day = now // rules.DAY_S - rules.UPTIME_DAYS + 1
    ups = pdb.uptime(store, first_day)
    marks = pdb.marks(store)
    ours = ups.get(me, {})
    out: dict[str, dict[str, Any]] = {}
    for node in nodes:
        mark = marks.get(node)
        seen = now if node == me else last_seen.get(node)
        pct = None
        if mark is not None and node == me:
            start = max(mark.since, first_day * rules.DAY_S)
            wall = dict(rules.split_days(start, now))
            pct = rules.uptime_pct(ours, wall, start, now)
        elif mark is not None:
            pct = rules.uptime_pct(ups.get(node, {}), ours, mark.since, now)
        out[node] = {
            "last_seen": seen,
            "active": seen is not None and now - seen <= rules.DAY_S,
            "uptime_pct": pct,
        }
    return out
