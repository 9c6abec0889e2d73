"""One report per member and period, held alike by every member — even of a member that
signs two different ones (an equivocation: one variant sent to some members, another to the
rest).  Each member holds the variants it has seen as two slots:

- per distinct body, the frame of the smallest id (a copy of the same figures in another
  frame is no equivocation);
- of those, the smallest id is the **report** and the next one, if any, the **conflict**:
  the proof, signed by the author's bound key, that it signed two.

Which variants reach a member first does not matter: anti-entropy hands on the frames of both
slots (each is a fact of its own), and every member ends with the same two — the two smallest
ids of all the variants anyone holds — so the fleet's fact sets agree again.  An author with a
conflict for a period is no settlement input for it (agent/fleet/contribution.py `inputs`):
the week is settled among the others, whichever variants went where, instead of never (every
member held another report and computed another plan).  A third variant that is not among the
two smallest is refused (REPORT_CONFLICT): the proof is held already.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from agent.fleet.facts import FactKind
from agent.fleet.settlement_rules import period_bounds
from agent.store import contribution_reports as rdb
from agent.store import facts as fact_rows
from agent.store.db import Tx
from events.errors import ReportConflict
from events.fleet import Message
from events.fleet.contribution import ContributionReport
from events.fleet.sync import fact_id

SLOTS = ("report", "conflict")


@dataclass(frozen=True)
class Variant:
    msg_id: str
    body: str
    fact: fact_rows.FactRow | None  # the frame proving it (None: gone from the fact set)


@dataclass(frozen=True)
class Placed:
    first: bool  # the author's first report for the period held here
    report: bool  # the report slot has new figures: they are to be judged (disputes)
    equivocation: bool  # a second, different report: found now (conflict slot was empty)
    conflicting: bool  # a different report was kept (found now, or a smaller-id proof)


def slot_fact(author: str, period: str, slot: str, msg_id: str) -> str:
    """The fact id of the variant `msg_id` in `slot`: the variant is part of it, so two
    members holding different variants hold different facts and anti-entropy hands each the
    other's (with one id per slot, equal timestamps made the sets look alike)."""
    names = (author, period, msg_id) if slot == "report" else (author, period, slot, msg_id)
    return fact_id(FactKind.CONTRIBUTION.value, *names)


def legacy_fact(author: str, period: str) -> str:
    """The id a report's fact had before 2026-12-05 (one per author and period)."""
    return fact_id(FactKind.CONTRIBUTION.value, author, period)


def kept(variants: list[Variant]) -> list[Variant]:
    """The (at most two) variants a member keeps: per body the smallest id, then the two
    smallest ids of those — the same from any order of arrival."""
    best: dict[str, Variant] = {}
    for v in variants:
        if v.body not in best or v.msg_id < best[v.body].msg_id:
            best[v.body] = v
    return sorted(best.values(), key=lambda v: v.msg_id)[:2]


def place(tx: Tx, msg: Message, report: ContributionReport, body: str, end: int) -> Placed:
    """Hold `msg` (`report`, `body` its canonical JSON, `end` the end of its week) in the slot
    the variants give it, moving the others as they say; ReportConflict if it is kept in
    neither (a third, different report)."""
    author, period = report.node, report.period
    new = Variant(msg.id, body, _fact_of(msg, author, end))
    held = _held(tx, author, period)
    known = any(v.body == body for v in held.values())  # (the same figures: no news)
    now = kept([*held.values(), new])
    if new not in now:
        if known or any(v.msg_id == new.msg_id for v in held.values()):
            return Placed(first=False, report=False, equivocation=False, conflicting=False)
        raise ReportConflict(
            f"{author[:12]}… signed another report for {period}: the proof is held already"
        )
    for slot, v in zip(SLOTS, now, strict=False):
        old = held.get(slot)
        if old == v:
            continue
        if old is not None:
            fact_rows.remove(tx, slot_fact(author, period, slot, old.msg_id))
        rdb.put(tx, slot, author, period, (v.msg_id, v.body))
        if v.fact is not None:  # the proving frame, under this slot's fact id for it
            fid = slot_fact(author, period, slot, v.msg_id)
            fact_rows.put(tx, replace(v.fact, fact_id=fid), replace_held=True)
    first = "report" not in held
    return Placed(
        first=first,
        report=now[0] is new and not known,
        equivocation=len(now) == 2 and "conflict" not in held,
        conflicting=not first and not known,
    )


def _held(tx: Tx, author: str, period: str) -> dict[str, Variant]:
    held: dict[str, Variant] = {}
    slots = (rdb.report(tx, author, period), rdb.conflict(tx, author, period))
    for slot, got in zip(SLOTS, slots, strict=True):
        if got is not None:
            found = fact_rows.rows(tx, [slot_fact(author, period, slot, got[0])])
            if not found and slot == "report":  # (held from before 2026-12-05, not re-keyed yet)
                moved = _rekey_one(tx, author, period, got[0])
                found = [moved] if moved else []
            held[slot] = Variant(got[0], got[1], found[0] if found else None)
    return held


def rekey(tx: Tx) -> int:
    """Facts of reports held from before 2026-12-05 under their new ids (once, at start: two
    members must name the same fact alike); the number moved."""
    return sum(_rekey_one(tx, *held) is not None for held in rdb.all_reports(tx))


def _rekey_one(tx: Tx, author: str, period: str, msg_id: str) -> fact_rows.FactRow | None:
    """The report `msg_id`'s fact of before, moved to its new id (and dated at its week's
    end); None if there was none.  A fact of another frame (the report changed since) goes."""
    found = fact_rows.rows(tx, [legacy_fact(author, period)])
    if not found:
        return None
    fact_rows.remove(tx, found[0].fact_id)
    if found[0].msg_id != msg_id:
        return None
    fid, end = slot_fact(author, period, "report", msg_id), period_bounds(period)[1]
    row = replace(found[0], fact_id=fid, ts=end)
    fact_rows.put(tx, row, replace_held=True)
    return row


def _fact_of(msg: Message, author: str, end: int) -> fact_rows.FactRow:
    """The fact `msg` proves, dated at the end of its week (what it states, alike in every
    frame of the same figures: their id is the figures' hash) — its id is its slot's (place)."""
    kind = FactKind.CONTRIBUTION.value
    return fact_rows.FactRow("", kind, author, end, msg.id, int(msg.type), msg.raw)
