"""The fleet topology planner, pure: functions of the network graph, the members and their state
records, and a `PlannerConfig` (no store, node or clock; the caller reads them and runs
`plan()` every planner interval).

**Fleet channels.** The union, by scid, of the members' state-record channels (normal or
pending; closing ones are gone) and the graph's channels with exactly one member end; a
record's entry wins over the graph's for the same scid (it is the owner's own account, and
lists private and pending channels the graph does not).  Channels between two members are
internal and count toward no external node.

**Per external node** (any node of the graph or of a fleet channel that is not a member):
- capacity N: the sum over its distinct channels — the graph's channels with at least one
  active direction, plus fleet channels — and degree: its distinct peers over them;
- the fleet's capacity F with it (fleet channels), the members serving it, share = F / N;
- score = connectivity × headroom, where connectivity = (degree / D + N / C) / 2 with D and C
  the largest degree and capacity among external nodes (so in (0, 1]), and headroom =
  1 − share / cap; the score is 0 when share ≥ cap (saturated) or degree < `min_degree` (not
  well connected).

**Expansion.** Candidates are the nodes with a positive score, best first (ties by node id);
at most `max_expansions` per run, one per node.  For node X the largest amount that keeps the
fleet's share within the cap is headroom_sat = ⌊(cap·N − F) / (1 − cap)⌋ (after opening A,
(F + A) / (N + A) ≤ cap).  A member with a state record, no channel with X and offered funds
left may open amount = min(default, max, offered funds left, headroom_sat), never below
`channel_min_sat` (else it is not eligible).  The chosen member has the largest amount
(offered funds decide), then the fewest channels (position: it spreads the fleet's reach),
then the lowest node id.  Its funds and channel count are updated before the next candidate.
When the on-chain feerate (if given) is above `max_expansion_feerate_perkb`, no expansion is
recommended this run.

**Anti-overlap.** For each external node some members serve, every other member (except one
recommended to open to it) need not connect to it too: the integrator tells CLBOSS
(`clboss-ignore`).  `Plan.ignore_pairs()` lists them as (member, node).

**Fee hints.** For an external node served by at least two members whose fee toward it is
known (each member's lowest ppm over its channels to it), the hint is the median of those
rates (for an even count the floor of the two middle rates' mean); members below it undercut
the others.

Every recommendation carries the inputs it used and a `reason` a person can read
(planner_view.py renders them for `hive-plan`).  The output is sorted and depends only on the
inputs, not their order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from agent.fleet.planner_model import (
    NOTED,
    Expansion,
    FeeHint,
    GraphEdge,
    Link,
    NodeView,
    Overlap,
    Plan,
    PlanInputs,
    PlannerConfig,
    short,
)
from events.fleet.gossip import StateRecord

__all__ = [
    "Expansion", "FeeHint", "GraphEdge", "Link", "NodeView", "Overlap", "Plan", "PlanInputs",
    "PlannerConfig", "fleet_links", "headroom_sat", "latest_records", "median_ppm", "plan",
    "public_channels", "survey",
]  # fmt: skip

# --- the fleet's channels and the graph -----------------------------------------------------


def latest_records(records: Iterable[StateRecord], members: Collection[str]) -> list[StateRecord]:
    """One record per member (the highest version), by owner; records of non-members dropped."""
    best: dict[str, StateRecord] = {}
    for r in records:
        if r.owner in members and (r.owner not in best or r.version > best[r.owner].version):
            best[r.owner] = r
    return [best[o] for o in sorted(best)]


def public_channels(graph: Iterable[GraphEdge]) -> dict[str, tuple[str, str, int]]:
    """scid → (node, node, capacity) for channels with at least one active direction."""
    out: dict[str, tuple[str, str, int]] = {}
    for e in graph:
        if e.active and e.source != e.destination:
            a, b = (
                (e.source, e.destination) if e.source < e.destination else (e.destination, e.source)
            )
            cap = max(e.capacity_sat, out[e.scid][2]) if e.scid in out else e.capacity_sat
            out[e.scid] = (a, b, cap)
    return out


def fleet_links(
    graph: Iterable[GraphEdge], members: Collection[str], records: Sequence[StateRecord]
) -> dict[str, Link]:
    """The fleet channels by key (records first, then the graph's member channels): the scid,
    or for a channel the graph does not show (private, pending) scid@owner — a record is its
    owner's account of its own channels only, so it can neither claim a public channel whose
    ends are not its owner and that peer (it is ignored) nor displace another member's
    private one by naming its scid."""
    ends = {e.scid: {e.source, e.destination} for e in graph}
    links: dict[str, Link] = {}
    for r in records:
        for ch in sorted(r.channels, key=lambda c: c.scid):
            if ch.state == "closing" or ch.peer in members:
                continue
            public = ends.get(ch.scid)
            if public is not None and public != {r.owner, ch.peer}:
                continue  # (someone else's public channel)
            key = ch.scid if public is not None else f"{ch.scid}@{r.owner}"
            links.setdefault(key, Link(r.owner, ch.peer, ch.scid, ch.capacity_sat, ch.fee_ppm))
    edges = [e for e in graph if e.active and (e.source in members) != (e.destination in members)]
    seen: dict[str, Link] = {}
    for e in sorted(edges, key=lambda e: (e.scid, e.source)):
        if e.scid in links:
            continue
        outward = e.source in members  # the member's own direction: its fee toward the peer
        member, peer = (e.source, e.destination) if outward else (e.destination, e.source)
        known = seen.get(e.scid)
        ppm = e.fee_ppm if outward else (known.fee_ppm if known else None)
        seen[e.scid] = Link(member, peer, e.scid, e.capacity_sat, ppm)
    return {**links, **seen}


def survey(
    public: Mapping[str, tuple[str, str, int]],
    members: Collection[str],
    links: Mapping[str, Link],
    config: PlannerConfig,
) -> dict[str, NodeView]:
    """Every external node: capacity, degree, the fleet's capacity and share, who serves it,
    and its score (see the module docstring).  `public` is `public_channels(graph)`."""
    chans = dict(public)
    for key, link in links.items():
        a, b = sorted((link.member, link.peer))
        chans[key] = (a, b, link.capacity_sat)
    capacity: dict[str, int] = {}
    peers: dict[str, set[str]] = {}
    for a, b, cap in chans.values():
        for node, other in ((a, b), (b, a)):
            if node not in members:
                capacity[node] = capacity.get(node, 0) + cap
                peers.setdefault(node, set()).add(other)
    fleet: dict[str, int] = {}
    served: dict[str, set[str]] = {}
    for link in links.values():
        fleet[link.peer] = fleet.get(link.peer, 0) + link.capacity_sat
        served.setdefault(link.peer, set()).add(link.member)
    top_degree = max((len(p) for p in peers.values()), default=1)
    top_capacity = max(capacity.values(), default=1) or 1
    num, den = config.cap.numerator, config.cap.denominator  # share ≥ cap ⇔ F·den ≥ num·N
    views = {}
    for node in sorted(n for n in capacity if capacity[n] > 0):
        n_cap, degree, f_cap = capacity[node], len(peers[node]), fleet.get(node, 0)
        connectivity = (degree / top_degree + n_cap / top_capacity) / 2
        headroom = 0.0 if f_cap * den >= num * n_cap else 1 - (f_cap * den) / (n_cap * num)
        score = connectivity * headroom if degree >= config.min_degree else 0.0
        views[node] = NodeView(
            node=node, capacity_sat=n_cap, degree=degree, fleet_capacity_sat=f_cap,
            share=f_cap / n_cap, served_by=tuple(sorted(served.get(node, ()))),
            score=round(score, 9),
        )  # fmt: skip
    return views


def headroom_sat(fleet_sat: int, capacity_sat: int, cap: Fraction) -> int:
    """The largest A with (F + A) / (N + A) ≤ cap; negative when the share is already above."""
    room = (cap * capacity_sat - fleet_sat) / (1 - cap)
    return room.numerator // room.denominator


# --- the plan -------------------------------------------------------------------------------


def plan(
    graph: Sequence[GraphEdge],
    members: Collection[str],
    records: Iterable[StateRecord],
    config: PlannerConfig | None = None,
    *,
    feerate_perkb: int | None = None,
) -> Plan:
    """The planner's recommendations for these inputs (see the module docstring)."""
    config = config or PlannerConfig()
    member_set = frozenset(members)
    held = latest_records(records, member_set)
    links = fleet_links(graph, member_set, held)
    public = public_channels(graph)
    views = survey(public, member_set, links, config)
    notes: list[str] = []
    missing = sorted(member_set - {r.owner for r in held})
    if missing:
        notes.append(f"{len(missing)} member(s) without a state record cannot be chosen to open")
    expansions: list[Expansion] = []
    if feerate_perkb is not None and feerate_perkb > config.max_expansion_feerate_perkb:
        notes.append(
            f"no expansion this run: the on-chain feerate {feerate_perkb:,} sat/kB is above "
            f"the maximum {config.max_expansion_feerate_perkb:,}"
        )
    else:
        expansions = _expansions(views, held, links, config, notes)
    ranked = sorted(views.values(), key=lambda v: (-v.score, -v.capacity_sat, v.node))
    inputs = PlanInputs(
        graph_channels=len(public),
        graph_nodes=len({n for a, b, _ in public.values() for n in (a, b)}),
        members=tuple(sorted(member_set)),
        with_record=tuple(r.owner for r in held),
        fleet_channels=len(links),
        fleet_capacity_sat=sum(link.capacity_sat for link in links.values()),
        offered_sat=sum(r.offered_sat for r in held),
        external_nodes=len(views),
        feerate_perkb=feerate_perkb,
        config=config,
    )
    return Plan(
        inputs=inputs,
        nodes=tuple(ranked[: config.report_nodes]),
        expansions=tuple(expansions),
        overlaps=tuple(_overlaps(views, member_set, expansions, config)),
        fee_hints=tuple(_fee_hints(links)),
        notes=tuple(notes),
    )


@dataclass
class _Option:
    member: str
    amount: int
    bound: str
    funds: int
    channels: int

    def key(self) -> tuple[int, int, str]:
        return (-self.amount, self.channels, self.member)


def _amount(funds: int, room: int, config: PlannerConfig) -> tuple[int, str]:
    """The amount a member could open and what bounds it (the default size is within the
    maximum, so the maximum never binds before it)."""
    bounds = [(config.channel_default_sat, "default"), (funds, "funds"), (room, "cap")]
    return min(bounds, key=lambda b: b[0])


def _expansions(
    views: Mapping[str, NodeView],
    held: Sequence[StateRecord],
    links: Mapping[str, Link],
    config: PlannerConfig,
    notes: list[str],
) -> list[Expansion]:
    funds = {r.owner: r.offered_sat for r in held}
    channels = {r.owner: 0 for r in held}
    connected: set[tuple[str, str]] = set()
    for link in links.values():
        if link.member in channels:
            channels[link.member] += 1
        connected.add((link.member, link.peer))
    out: list[Expansion] = []
    unfunded: list[str] = []
    cap = config.cap
    candidates = sorted(
        (v for v in views.values() if v.score > 0), key=lambda v: (-v.score, v.node)
    )
    for view in candidates:
        if len(out) >= config.max_expansions:
            break
        room = headroom_sat(view.fleet_capacity_sat, view.capacity_sat, cap)
        options = []
        for member in sorted(funds):
            amount, bound = _amount(funds[member], room, config)
            if (member, view.node) not in connected and amount >= config.channel_min_sat:
                options.append(_Option(member, amount, bound, funds[member], channels[member]))
        if not options:
            unfunded.append(_unfunded(view, room, config))
            continue
        best = min(options, key=_Option.key)
        out.append(_expansion(view, best, room, len(options), config))
        funds[best.member] -= best.amount
        channels[best.member] += 1
    notes.extend(unfunded[:NOTED])
    if len(unfunded) > NOTED:
        notes.append(f"… and {len(unfunded) - NOTED} more candidate(s) no member can open to")
    return out


def _unfunded(view: NodeView, room: int, config: PlannerConfig) -> str:
    why = (
        f"the cap leaves room for {max(room, 0):,} sat only"
        if room < config.channel_min_sat
        else "no member without a channel to it offers enough funds"
    )
    return (
        f"{short(view.node)} (score {view.score:.3f}) gets no channel: {why} "
        f"(minimum {config.channel_min_sat:,} sat)"
    )


BOUND_TEXT = {
    "default": "the default channel size",
    "funds": "all the funds it still offers",
    "cap": "the most that keeps the fleet within the cap",
}


def _expansion(
    view: NodeView, best: _Option, room: int, eligible: int, config: PlannerConfig
) -> Expansion:
    after = (view.fleet_capacity_sat + best.amount) / (view.capacity_sat + best.amount)
    served = (
        f"the fleet holds {view.share:.1%} of its capacity through {len(view.served_by)} member(s)"
        if view.served_by
        else "the fleet has no channel with it"
    )
    reason = (
        f"{short(view.node)} is well connected ({view.degree} peers, {view.capacity_sat:,} sat) "
        f"and {served}; {short(best.member)} offers {best.funds:,} sat, has no channel with it "
        f"yet and {best.channels} channel(s) to external nodes — the best placed of {eligible}"
        f" member(s) able to open; {best.amount:,} sat is {BOUND_TEXT[best.bound]} and leaves"
        f" the fleet at {after:.1%} of the node's capacity (cap {config.market_share_cap:.0%})"
    )
    return Expansion(
        member=best.member, node=view.node, amount_sat=best.amount, bound=best.bound,
        score=view.score, node_capacity_sat=view.capacity_sat, degree=view.degree,
        fleet_capacity_sat=view.fleet_capacity_sat, share=view.share, share_after=after,
        headroom_sat=room, offered_sat=best.funds, member_channels=best.channels,
        eligible=eligible, reason=reason,
    )  # fmt: skip


def _overlaps(
    views: Mapping[str, NodeView],
    members: Collection[str],
    expansions: Sequence[Expansion],
    config: PlannerConfig,
) -> list[Overlap]:
    opening = {(e.member, e.node) for e in expansions}
    out = []
    for node in sorted(views):
        view = views[node]
        if not view.served_by:
            continue
        others = tuple(
            m for m in sorted(members) if m not in view.served_by and (m, node) not in opening
        )
        if not others:
            continue
        by = ", ".join(short(m) for m in view.served_by)
        reason = (
            f"{short(node)} is already served by {by} ({view.share:.1%} of its capacity, cap "
            f"{config.market_share_cap:.0%}): the {len(others)} other member(s) need not "
            f"connect to it too"
        )
        out.append(Overlap(node=node, served_by=view.served_by, ignore_by=others,
                           share=view.share, reason=reason))  # fmt: skip
    return out


def median_ppm(rates: Sequence[int]) -> int:
    """The median; for an even count the floor of the two middle rates' mean."""
    ordered = sorted(rates)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) // 2


def _fee_hints(links: Mapping[str, Link]) -> list[FeeHint]:
    rates: dict[str, dict[str, int]] = {}
    for link in links.values():
        if link.fee_ppm is None:
            continue
        per = rates.setdefault(link.peer, {})
        per[link.member] = min(link.fee_ppm, per.get(link.member, link.fee_ppm))
    out = []
    for node in sorted(rates):
        by_member = dict(sorted(rates[node].items()))
        if len(by_member) < 2:
            continue
        hint = median_ppm(list(by_member.values()))
        below = tuple(m for m, ppm in by_member.items() if ppm < hint)
        listed = ", ".join(f"{short(m)} {ppm} ppm" for m, ppm in by_member.items())
        advice = (
            f"{', '.join(short(m) for m in below)} undercut(s) the others: raise to {hint} ppm"
            if below
            else "no member undercuts the others"
        )
        reason = f"{short(node)} is served by {listed}; the median is {hint} ppm: {advice}"
        out.append(FeeHint(node=node, ppm_by_member=by_member, hint_ppm=hint, below=below,
                           reason=reason))  # fmt: skip
    return out
