"""What `hive-plan` shows of a plan (agent/fleet/planner.py), pure: `as_json` for the RPC and
`render` for a terminal — the inputs it was computed from, then each recommendation with the
reason for it, the best-scored external nodes and the planner's notes."""

from __future__ import annotations

from typing import Any

from agent.fleet.planner_model import Plan, PlannerConfig, short


def as_json(plan: Plan, me: str | None = None) -> dict[str, Any]:
    """The plan as JSON-ready data; with `me` (this node), also `ignore`: the nodes its CLBOSS
    may ignore (the anti-overlap entries naming it)."""
    data = plan.model_dump(mode="json")
    if me is not None:
        data["ignore"] = plan.ignores_for(me)
    return data


def render(plan: Plan, limit: int = 20) -> str:
    """The plan as text: inputs, expansions, anti-overlap, fee hints, top nodes and notes, each
    section cut at `limit` entries (the JSON has them all)."""
    out = _inputs(plan)
    expansions = [
        f"{short(e.member)} → {short(e.node)}  {e.amount_sat:,} sat  (score {e.score:.3f})\n"
        f"     why: {e.reason}"
        for e in plan.expansions
    ]
    overlaps = [
        f"{short(o.node)}: ignore on {_names(o.ignore_by)}\n     why: {o.reason}"
        for o in plan.overlaps
    ]
    hints = [f"{short(h.node)}: {h.hint_ppm} ppm\n     why: {h.reason}" for h in plan.fee_hints]
    out += _section("Expansions", expansions, limit)
    out += _section("Anti-overlap (clboss-ignore)", overlaps, limit)
    out += _section("Fee hints", hints, limit)
    out += _nodes(plan, limit)
    out += _section("Notes", list(plan.notes), limit)
    return "\n".join(out) + "\n"


def _inputs(plan: Plan) -> list[str]:
    i, c = plan.inputs, plan.inputs.config
    feerate = "not given" if i.feerate_perkb is None else f"{i.feerate_perkb:,} sat/kB"
    return [
        "Fleet plan",
        f"  graph: {i.graph_channels:,} channels between {i.graph_nodes:,} nodes; "
        f"{i.external_nodes:,} external nodes",
        f"  members: {len(i.members)} ({len(i.with_record)} with a state record); "
        f"{i.fleet_channels:,} fleet channels, {i.fleet_capacity_sat:,} sat; "
        f"{i.offered_sat:,} sat offered for expansion",
        f"  {_config(c)}; feerate {feerate} (max {c.max_expansion_feerate_perkb:,})",
    ]


def _config(c: PlannerConfig) -> str:
    return (
        f"cap {c.market_share_cap:.0%} of a node's capacity; channels "
        f"{c.channel_min_sat:,}–{c.channel_max_sat:,} sat (default {c.channel_default_sat:,}); "
        f"at most {c.max_expansions} expansion(s); min degree {c.min_degree}"
    )


def _section(title: str, items: list[str], limit: int) -> list[str]:
    if not items:
        return ["", f"{title}: none"]
    shown = [f"  {n}. {t}" for n, t in enumerate(items[:limit], 1)]
    more = [f"  … and {len(items) - limit} more (the JSON lists them all)"]
    return ["", f"{title} ({len(items)})", *shown, *(more if len(items) > limit else [])]


def _nodes(plan: Plan, limit: int) -> list[str]:
    if not plan.nodes:
        return ["", "Top external nodes: none"]
    head = (
        f"  {'node':<14}{'capacity sat':>16}{'degree':>8}{'fleet sat':>14}{'share':>8}"
        f"{'score':>8}  served by"
    )
    rows = [
        f"  {short(v.node):<14}{v.capacity_sat:>16,}{v.degree:>8}{v.fleet_capacity_sat:>14,}"
        f"{v.share:>8.1%}{v.score:>8.3f}  {_names(v.served_by) or '-'}"
        for v in plan.nodes[:limit]
    ]
    return ["", f"Top external nodes ({len(rows)} of {plan.inputs.external_nodes:,})", head, *rows]


def _names(nodes: tuple[str, ...]) -> str:
    return ", ".join(short(n) for n in nodes)
