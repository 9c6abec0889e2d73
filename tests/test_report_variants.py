"""The variants of a member's report that every member keeps (agent/fleet/report_variants.py):
the same two whatever the order they arrive in — what makes the fleet agree on an
equivocator — and the facts held from before their ids named the variant, moved once."""

from __future__ import annotations

from pathlib import Path

import nostr_sdk as sdk
from hypothesis import given
from hypothesis import strategies as st

from agent.fleet import report_variants as variants
from agent.fleet.report_variants import Variant, kept
from agent.fleet.settlement_rules import period_bounds
from agent.store import Store
from agent.store import contribution_reports as rdb
from agent.store import facts as fact_rows
from events import fleet as wire
from events.canonical import canonical
from events.fleet import MsgType
from events.fleet.contribution import ContributionReport, report_id

ids = st.text("0123456789abcdef", min_size=32, max_size=32)
bodies = st.sampled_from(['{"fees_msat":1}', '{"fees_msat":2}', '{"fees_msat":3}'])
variant = st.builds(Variant, ids, bodies, st.none())


# (ids unique: a frame's id is the hash of its figures, so two variants never share one —
# and variants of one body under other ids, which that rule rules out, are kept apart still)
@given(st.lists(variant, min_size=1, max_size=8, unique_by=lambda v: v.msg_id), st.randoms())
def test_any_order_of_arrival_keeps_the_same_two(seen: list[Variant], rnd) -> None:
    whole = kept(seen)
    order = list(seen)
    rnd.shuffle(order)
    held: list[Variant] = []
    for v in order:  # one at a time, as a member receives them
        held = kept([*held, v])
    assert held == whole
    assert len(held) == min(2, len({v.body for v in seen}))
    assert held[0].msg_id == min(v.msg_id for v in seen if v.body == held[0].body)
    if len(held) == 2:  # the proof: two different bodies, the smallest ids of their bodies
        assert held[0].body != held[1].body and held[0].msg_id < held[1].msg_id
        assert all(v.msg_id >= held[0].msg_id for v in seen)


def test_a_report_fact_held_from_before_gets_its_new_id_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "agent.sqlite")
    author, period, msg_id = "02" + "ab" * 32, "2026-40", "c" * 32
    legacy = variants.legacy_fact(author, period)
    with store.transaction(1_700_000_000) as tx:
        rdb.put_report(tx, author, period, msg_id, '{"fees_msat":1}')
        row = fact_rows.FactRow(legacy, "contribution", author, 1_700_000_000, msg_id, 33, b"f")
        assert fact_rows.put(tx, row)
        # (another author's fact whose report changed since: dropped, not moved)
        other = variants.legacy_fact("03" + "cd" * 32, period)
        rdb.put_report(tx, "03" + "cd" * 32, period, "d" * 32, '{"fees_msat":2}')
        assert fact_rows.put(
            tx, fact_rows.FactRow(other, "contribution", "x", 1, "e" * 32, 33, b"g")
        )
    with store.transaction(1_700_000_001) as tx:
        assert variants.rekey(tx) == 1
    with store.transaction(1_700_000_002) as tx:
        assert variants.rekey(tx) == 0
    new = variants.slot_fact(author, period, "report", msg_id)
    assert {fid for _k, _s, _t, fid in fact_rows.items(store)} == {new}
    assert fact_rows.rows(store, [new])[0].frame == b"f"


def test_a_variant_placed_before_the_re_keying_keeps_the_held_report_s_fact(
    tmp_path: Path,
) -> None:
    """A second report arrives before the first pass re-keyed the held one's fact: the held
    fact moves to its slot's new id there and then, and both proofs are facts."""
    keys = sdk.Keys.generate()
    author, period, end = "02" + "ab" * 32, "2026-40", period_bounds("2026-40")[1]
    store = Store(tmp_path / "agent.sqlite")
    first = ContributionReport(
        node=author, period=period, fees_msat=1, rebalance_costs_msat=0, forwards_msat=0,
        capacity_sat=0, uptime_pct=0,
    )  # fmt: skip
    second = first.model_copy(update={"fees_msat": 2})
    old_id = "c" * 32  # (an id of before: random, not the figures' hash)
    with store.transaction(end + 60) as tx:
        rdb.put_report(tx, author, period, old_id, canonical(first).decode())
        legacy = fact_rows.FactRow(
            variants.legacy_fact(author, period), "contribution", author, end + 5, old_id,
            int(MsgType.CONTRIBUTION_REPORT), b"old frame",
        )  # fmt: skip
        fact_rows.put(tx, legacy)
    frame = wire.build_frame(
        keys, MsgType.CONTRIBUTION_REPORT, second, hive="hive_" + "1" * 16,
        msg_id=report_id(second), node=author, ts=end + 60,
    )  # fmt: skip
    msg = wire.parse_frame(frame)
    with store.transaction(end + 60) as tx:
        placed = variants.place(tx, msg, second, canonical(second).decode(), end)
    assert placed.equivocation and placed.conflicting and not placed.first
    ids = sorted([old_id, msg.id])
    held = {f: r.frame for f, r in ((r.fact_id, r) for r in fact_rows.rows(store, [
        variants.slot_fact(author, period, "report", ids[0]),
        variants.slot_fact(author, period, "conflict", ids[1]),
    ]))}  # fmt: skip
    assert len(held) == 2 and set(held.values()) == {b"old frame", frame}
    assert {t for _k, _s, t, _f in fact_rows.items(store)} == {end}  # (dated at the week's end)
    assert variants.legacy_fact(author, period) not in {f for *_, f in fact_rows.items(store)}
    assert rdb.equivocators(store, period) == {author}
