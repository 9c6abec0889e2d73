"""The planner under a hostile member's state record (the planner is pure: real records and
graph edges in, the plan out — the same function every member runs on its own inputs)."""

from __future__ import annotations

from agent.fleet.planner import plan
from tests.test_planner import M, chan, entry, ext, member, record

H, EVIL = member(5), member(1)  # (the hostile member's id sorts first: its record is read first)
X, Y, Z = ext(10), ext(11), ext(12)


def _world() -> tuple[list, list]:
    """X, Y, Z a triangle of 40M channels; H holds a public 5M channel with X (2x1x0) and a
    private 2M one with Y (2x9x0, not in the graph) and offers 50M; EVIL offers nothing."""
    g = [
        *chan(X, Y, "1x1x0", 40 * M), *chan(X, Z, "1x2x0", 40 * M), *chan(Y, Z, "1x3x0", 40 * M),
        *chan(H, X, "2x1x0", 5 * M, 100),
    ]  # fmt: skip
    honest = record(H, 50 * M, [entry(X, "2x1x0", 5 * M, 100), entry(Y, "2x9x0", 2 * M, 100)])
    return g, [honest]


def test_a_record_cannot_take_over_another_members_channels_or_the_graphs() -> None:
    """EVIL's record names H's public channel with X and H's private one with Y (both scids
    learnt from H's own record), at 1 sat, and the X–Y channel of two outsiders.  Read first,
    its entries displaced H's: the planner saw H with no channel to X or Y and told H to open
    a second channel to each (and Z lost nothing, Y lost 40M of its capacity).  A record now
    speaks for its owner's channels only: a public scid whose ends are not its owner and that
    peer is ignored, and a private one never displaces another member's."""
    g, records = _world()
    fair = plan(g, [H, EVIL], records)
    lies = record(EVIL, 0, [entry(X, "2x1x0", 1, 1), entry(Y, "2x9x0", 1, 1),
                            entry(X, "1x1x0", 1, 1)])  # fmt: skip
    hostile = plan(g, [H, EVIL], [*records, lies])
    assert {(e.member, e.node) for e in fair.expansions} == {(H, Z)}
    assert {(e.member, e.node) for e in hostile.expansions} == {(H, Z)}
    fair_by = {v.node: v for v in fair.nodes}
    by = {v.node: v for v in hostile.nodes}
    assert by[X].capacity_sat == fair_by[X].capacity_sat == 85 * M
    assert by[X].fleet_capacity_sat == 5 * M and by[X].served_by == (H,)
    assert by[Y].capacity_sat == fair_by[Y].capacity_sat + 1  # (EVIL's own invented channel)
    assert H in by[Y].served_by
