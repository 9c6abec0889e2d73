"""What `hive-contribution` shows (agent/fleet/contribution.py `view`): per member its 30-day
figures, ratio, leech state and daily rows; this node's own; the chain's verification; the
last week's reports (and equivocators), disputes and notices."""

from __future__ import annotations

from typing import Any

from agent.fleet import contribution_rules as rules
from agent.fleet.settlement_rules import period_of, previous_period
from agent.store import contribution as cdb
from agent.store import contribution_reports as rdb
from agent.store.db import Db
from events.errors import NotFound


def view(store: Db, now: int, members: set[str], node: str | None) -> dict[str, Any]:
    """`hive-contribution`: per member its 30-day figures, ratio, leech state and daily
    rows; this node's own; the chain's verification; reports, disputes, notices."""
    today = rules.day_of(now)
    first = today - rules.WINDOW_DAYS + 1
    window = cdb.totals(store, first, today)
    if node is not None and node not in members and node not in window:
        raise NotFound(f"{node[:12]}… is not a member and nothing was counted for it")
    chosen = sorted(members) if node is None else [node]
    leech = cdb.leech_rows(store)
    last = previous_period(period_of(now))
    return {
        "window": {"days": rules.WINDOW_DAYS, "from": rules.day_text(first),
                   "to": rules.day_text(today)},
        "rule": {"ratio": "out_msat / in_msat (0/0 = 1, capped at 10)",
                 "threshold": str(rules.THRESHOLD), "leech_days": rules.LEECH_DAYS,
                 "min_judged_msat": rules.MIN_JUDGED_MSAT},
        "members": [
            _member_view(store, m, window.get(m, {}), leech.get(m), first)
            for m in chosen
        ],
        "own": {**_figures(window.get(cdb.OWN, {})), "days": _days(store, cdb.OWN, first)},
        "chain": cdb.verify(store),
        "reports": {
            "period": last, "held": sorted(rdb.reports(store, last)),
            "equivocated": sorted(rdb.equivocators(store, last)),
        },
        "disputes": cdb.disputes_found(store),
        "notices": cdb.notices(store)[-50:],
        "counts": cdb.counts(store),
    }  # fmt: skip


def _member_view(
    store: Db, m: str, seen: dict[str, int], row: cdb.LeechRow | None, first: int
) -> dict[str, Any]:
    i, o = seen.get("in_msat", 0), seen.get("out_msat", 0)
    r = rules.ratio(i, o)
    return {
        "node": m, **_figures(seen), "ratio": round(float(r), 6),
        "ratio_ppm": rules.ratio_ppm(r), "leech": bool(row and row.leech_since is not None),
        "leech_since": rules.day_text(row.leech_since) if row and row.leech_since else None,
        "below_days": row.below_days if row else 0,
        "judged": rules.day_text(row.last_day) if row else None,
        "days": _days(store, m, first),
    }  # fmt: skip


def _figures(seen: dict[str, int]) -> dict[str, int]:
    return {
        name: seen.get(name, 0)
        for name in ("in_msat", "out_msat", "fees_msat", "forwards", "rebalance_msat")
    }


def _days(store: Db, member: str, first: int) -> list[dict[str, Any]]:
    return [{**d, "day": rules.day_text(d["day"])} for d in cdb.days(store, member, first)]
