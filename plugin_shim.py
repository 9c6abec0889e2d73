#!/usr/bin/env python3
"""Lightning Hive agent: Core Lightning plugin.

Thin by design: options, hooks, subscriptions and `hive-*` methods, each handing off to
`agent.cln_plugin.PluginRuntime`, which runs the agent on its own event-loop thread.  Start it
with `lightningd --plugin=/path/to/plugin_shim.py --hive-relays=wss://…`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pyln.client import Plugin

try:
    from agent import plugin_rpc as rpc
    from agent.cln_plugin import (
        PluginRuntime,
        dashboard_option,
        fleet_options,
        governance_options,
        operator_option,
        relay_urls,
    )
    from agent.logs import to_plugin_log
    from agent.plugin_notify import TOPICS

    plugin: Plugin = rpc.HivePlugin()
    runtime: Any = PluginRuntime()
    MISSING = ""
except ImportError as exc:  # the plugin disables itself instead of breaking lightningd
    plugin, runtime, MISSING = Plugin(), None, f"hive-agent dependencies missing: {exc}"
    TOPICS = ()

for topic in TOPICS:  # our own notifications (agent/plugin_notify.py); others may subscribe
    plugin.add_notification_topic(topic)


def on_relays(plugin: Plugin, name: str, value: Any) -> None:
    """`setconfig hive-relays …` at run time: reconnect to the new set (an error leaves the
    old one in place)."""
    if runtime is not None:
        runtime.set_relays(relay_urls(value))


plugin.add_option(
    "hive-relays", None,
    "A Nostr relay URL (wss://…) for advisor commands, the market and the node binding; give"
    " it once per relay (a comma-separated list also works); none: no Nostr traffic."
    " `setconfig hive-relays` reconnects to the new set at run time",
    multi=True, dynamic=True, on_change=on_relays,
)  # fmt: skip
plugin.add_option(
    "hive-policy-file", "",
    "Path of the advisor-command policy (JSON); default <lightning-dir>/hive/policy.json",
)  # fmt: skip
plugin.add_option(
    "hive-operator", "",
    "The operator's Nostr public key (hex or npub): told of queued commands by DM and may"
    " approve by DM; overrides operator_pubkey in the policy file",
)  # fmt: skip
plugin.add_option(
    "hive-gossip-threshold", "10",
    "Percent (whole number, 1-50) by which this node's total capacity or outbound liquidity"
    " must move before a new fleet state record is sent; fee, HTLC-limit and channel"
    " open/close changes are always sent. Out of range, the plugin disables itself and says why",
)  # fmt: skip
plugin.add_option(
    "hive-heartbeat-interval", "300",
    "Seconds (whole number, 60-3600) after which this node's fleet state record is sent again"
    " though nothing changed. Out of range, the plugin disables itself and says why",
)  # fmt: skip
plugin.add_option(
    "hive-intent-hold", "60",
    "Seconds (whole number, 10-600) a fleet intent lock waits for members to answer before it"
    " commits without a conflict heard; it commits at once when every active member said ok",
)  # fmt: skip
plugin.add_option(
    "hive-intent-mode", "default",
    "default (members this node cannot reach when the hold ends count as consenting) or"
    " strict (every active member must answer ok, else the intent is aborted)",
)  # fmt: skip
plugin.add_option(
    "hive-planner-interval", "3600",
    "Seconds (whole number, 300-86400, or 0 for never) between fleet plans: expansions this"
    " node takes through an intent lock and its governance, and CLBOSS anti-overlap",
)  # fmt: skip
plugin.add_option(
    "hive-market-share-cap", "20",
    "Percent (whole number, 1-50) of an external node's capacity the fleet may hold at most;"
    " the planner never recommends an open beyond it",
)  # fmt: skip
plugin.add_option(
    "hive-settlement-grace", "3600",
    "Seconds (whole number, 0-259200) after a week ends before its settlement is proposed"
    " (members' reports arrive meanwhile); the next member in rank waits one grace more",
)  # fmt: skip
plugin.add_option(
    "hive-dashboard-port", "0",
    "TCP port (1-65535) on 127.0.0.1 for the web dashboard (approvals, advisors, receipts,"
    " escrow, marketplace, node, fleet), served while the Nostr agent runs; 0 (the default)"
    " for none. `lightning-cli hive-dashboard` gives its URL with the access token",
)  # fmt: skip
plugin.add_option(
    "hive-governance-mode", "operator",
    "How this node governs its own fleet actions (channel opens, closes …): autonomous (the"
    " approval table and budgets decide), operator (every action waits for hive-approve) or"
    " failsafe (emergency actions only, within hive-failsafe-budget-per-day and 2 an hour)",
)  # fmt: skip
plugin.add_option(
    "hive-failsafe-budget-per-day", "10000000",
    "Sats that emergency actions may move per UTC day in failsafe governance mode",
)  # fmt: skip


@plugin.init()
def init(options: dict, configuration: dict, plugin: Plugin, **kwargs: Any) -> dict | None:
    if runtime is None:
        return {"disable": MISSING}
    relays = relay_urls(options.get("hive-relays"))
    policy_file = str(options.get("hive-policy-file") or "").strip()
    try:
        fleet = fleet_options(options)
        governance = governance_options(options)
        operator = operator_option(options.get("hive-operator"))
        dashboard = dashboard_option(options.get("hive-dashboard-port"))
    except Exception as exc:  # noqa: BLE001 - an option out of bounds: say which, start nothing
        return {"disable": f"hive-agent: {exc}"}
    socket = f"{configuration['lightning-dir']}/{configuration['rpc-file']}"
    policy = Path(configuration["lightning-dir"], policy_file) if policy_file else None
    runtime.log = lambda message, level: plugin.log(message, level=level)
    runtime.notify = plugin.notify
    to_plugin_log(os.environ.get("HIVE_LOG"))  # the agent's logfmt lines into the node's log
    try:
        runtime.start(
            socket, configuration["lightning-dir"], relays, fleet, governance,
            policy_file=policy, operator=operator, dashboard_port=dashboard,
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - report why, and let lightningd carry on without us
        return {"disable": f"hive-agent could not start: {exc}"}
    plugin.submit = runtime.submit  # type: ignore[attr-defined]
    state = "; ".join(runtime.problems) or "ready"
    plugin.log(f"hive-agent {state}; nostr key {runtime.keys.public_key().to_hex()}")
    return None


@plugin.hook("custommsg")
def on_custommsg(peer_id: str, payload: str, plugin: Plugin, **kwargs: Any) -> dict:
    return runtime.on_custommsg(peer_id, payload) if runtime else {"result": "continue"}


@plugin.hook("peer_connected")
def on_peer_connected(peer: dict, plugin: Plugin, **kwargs: Any) -> dict:
    if runtime and isinstance(peer, dict) and "id" in peer:
        runtime.on_connect(str(peer["id"]))
    return {"result": "continue"}


@plugin.subscribe("connect")
def on_connect(plugin: Plugin, **kwargs: Any) -> None:
    peer = kwargs.get("connect", kwargs)
    if runtime and "id" in peer:
        runtime.on_connect(str(peer["id"]))


@plugin.subscribe("disconnect")
def on_disconnect(plugin: Plugin, **kwargs: Any) -> None:
    peer = kwargs.get("disconnect", kwargs)
    if runtime and "id" in peer:
        runtime.on_disconnect(str(peer["id"]))


@plugin.subscribe("forward_event")
def on_forward_event(plugin: Plugin, **kwargs: Any) -> None:
    if runtime:
        runtime.on_forward(kwargs.get("forward_event", kwargs))


@plugin.subscribe("shutdown")
def on_shutdown(plugin: Plugin, **kwargs: Any) -> None:
    if runtime:
        runtime.stop()
    raise SystemExit(0)


@plugin.method("hive-status")
def hive_status(plugin: Plugin) -> Any:
    """Show the hive agent: node summary, Nostr key and binding, relays, events seen, fleet
    membership (hive id, this node's tier, member counts, a join in progress), and any
    configuration problem that switched part of it off."""
    return runtime.methods.status()


@plugin.method("hive-members")
def hive_members(plugin: Plugin) -> Any:
    """List the hive's members (tier neophyte or member, status active, left or banned),
    the fleet-wide ban list and open ban proposals with their votes."""
    return runtime.methods.members()


@plugin.method("hive-genesis")
def hive_genesis(plugin: Plugin) -> Any:
    """Create a new hive with this node as its admin and first full member; returns the
    hive id (hive_ + 16 hex digits)."""
    return runtime.methods.genesis()


@plugin.method("hive-invite")
def hive_invite(plugin: Plugin, node_id: str, valid_hours: int = 24, requires: str = "") -> Any:
    """Issue a signed invite ticket for {node_id} only, valid {valid_hours} hours (1-168);
    {requires} is a comma-separated list of features the joiner must attest (splice,
    dual_fund, anchor, onion).  Only full members can invite."""
    return runtime.methods.invite(
        rpc.node_id(node_id),
        rpc.whole(valid_hours, "valid_hours", 1, 168),
        rpc.words(requires, "requires", 8),
    )


@plugin.method("hive-join")
def hive_join(plugin: Plugin, ticket: str) -> Any:
    """Join a hive with an invite {ticket} naming this node: connects to the issuer and runs
    HELLO, CHALLENGE, ATTEST, WELCOME; `hive-status` shows progress or the refusal."""
    return runtime.methods.join(rpc.text(ticket, "ticket", 8192))


@plugin.method("hive-leave")
def hive_leave(plugin: Plugin, reason: str = "") -> Any:
    """Leave the hive voluntarily (with an optional {reason}): every member is told, this
    node forgets the hive; channels and funds stay exactly as they are."""
    return runtime.methods.leave(rpc.text(reason, "reason"))


@plugin.method("hive-vouch")
def hive_vouch(plugin: Plugin, node_id: str) -> Any:
    """Vouch for neophyte {node_id}; it becomes a member once max(2, 51 % of full members)
    have vouched (one, while the hive has a single full member)."""
    return runtime.methods.vouch(rpc.node_id(node_id))


@plugin.method("hive-ban")
def hive_ban(plugin: Plugin, node_id: str, reason: str = "", approve: bool = True) -> Any:
    """Propose a fleet-wide ban of {node_id} giving a {reason}, or vote on the open proposal
    against it ({approve} true or false; false votes against); the ban holds once max(2,
    67 % of full members) approve, and every member then ignores that node."""
    return runtime.methods.ban(
        rpc.node_id(node_id), rpc.text(reason, "reason"), rpc.flag(approve, "approve")
    )


@plugin.method("hive-topology")
def hive_topology(plugin: Plugin) -> Any:
    """Show the fleet as this node knows it from state gossip: every active member with its
    latest state record (version, age, capacity, outbound liquidity, channels with fee
    policies, offered funds, features, uptime) and presence (last seen, active within 24 h);
    the channels between members; fleet totals."""
    return runtime.methods.topology()


@plugin.method("hive-dashboard")
def hive_dashboard(plugin: Plugin) -> Any:
    """Give the web dashboard's URL with its access token (keep it to yourself: it can approve
    commands); the dashboard runs on 127.0.0.1 at --hive-dashboard-port while the Nostr agent
    runs. NOT_FOUND when it is off or still starting."""
    return runtime.methods.dashboard()


@plugin.method("hive-contribution")
def hive_contribution(plugin: Plugin, node_id: str = "") -> Any:
    """Show the contribution ledger: per member (or only {node_id}) the msat that came in from
    it and went out to it over 30 days, the fees earned on them, the contribution ratio (out ÷
    in), its leech state and since when, and its daily rows; this node's own totals; the
    ledger's hash chain verified; the period reports held, disputes and leech notices."""
    # (only "" or null is the default: 0, false or [] are wrong, not "every member")
    chosen = None if node_id is None or node_id == "" else rpc.node_id(node_id)
    return runtime.methods.contribution(chosen)


@plugin.method("hive-intents")
def hive_intents(plugin: Plugin) -> Any:
    """List the fleet intent locks this node knows (its own and the other members'): kind,
    target, amount, state (pending, committed, done, failed, aborted, expired), who answered
    what, why it ended, and what its action reported."""
    return runtime.methods.intents()


@plugin.method("hive-plan")
def hive_plan(plugin: Plugin) -> Any:
    """Compute the fleet plan now and explain it: the inputs (graph, members, records, offered
    funds, settings), each expansion, anti-overlap entry and fee hint with its reason, the
    best-scored external nodes; `text` holds the same as a readable report."""
    return runtime.methods.plan()


@plugin.method("hive-expand")
def hive_expand(plugin: Plugin, node_id: str, amount_sat: Any = None) -> Any:
    """Open a channel to external node {node_id} with {amount_sat} (default: the planner's
    channel size) through an intent lock on (channel_open, node) and this node's governance:
    the open runs once the lock commits and the governance mode allows it."""
    amount = None if amount_sat is None else rpc.whole(amount_sat, "amount_sat", 1, 2**50)
    return runtime.methods.expand(rpc.node_id(node_id), amount)


@plugin.method("hive-settlement")
def hive_settlement(plugin: Plugin, period: Any = None) -> Any:
    """Show the weekly settlement of {period} (an ISO week like 2026-49; default: the latest
    proposed): every member's input, net, weight, share and balance with the formula, the
    minimum payment and the payments, the votes and the majority, the state (proposed, agreed,
    executed), this node's payments and the invoices it issued."""
    return runtime.methods.settlement(None if period is None else rpc.period(period))


@plugin.method("hive-settlement-execute")
def hive_settlement_execute(plugin: Plugin, period: Any = None, dry_run: bool = False) -> Any:
    """Settle {period} now (default: the last week that ended): propose its plan if nobody
    has, or pay this node's own assignments once a majority of members agreed; with {dry_run}
    true, only say what would be proposed or paid."""
    name = None if period is None else rpc.period(period)
    return runtime.methods.settlement_execute(name, rpc.flag(dry_run, "dry_run"))


@plugin.method("hive-pending")
def hive_pending(plugin: Plugin) -> Any:
    """List advisor commands waiting for the operator's approval."""
    return runtime.methods.pending()


@plugin.method("hive-approve")
def hive_approve(plugin: Plugin, id: str) -> Any:
    """Approve the pending advisor command {id} (or a unique prefix of at least 6 characters)."""
    return runtime.methods.vote(rpc.hex_id(id, "id"), "approve")


@plugin.method("hive-reject")
def hive_reject(plugin: Plugin, id: str) -> Any:
    """Reject the pending advisor command {id}; the advisor gets a REJECTED receipt."""
    return runtime.methods.vote(rpc.hex_id(id, "id"), "reject")


@plugin.method("hive-confirm")
def hive_confirm(plugin: Plugin, id: str) -> Any:
    """Confirm the approved high-danger advisor command {id} (the second step it needs)."""
    return runtime.methods.vote(rpc.hex_id(id, "id"), "confirm")


@plugin.method("hive-grant")
def hive_grant(
    plugin: Plugin,
    advisor: str,
    schemas: list | str,
    tier: str = "standard",
    days: int = 90,
    max_fee_change_pct: int | None = None,
    max_rebalance_sats: int | None = None,
    max_daily_actions: int | None = None,
) -> Any:
    """Grant advisor {advisor} (hex or npub) a management credential for {schemas} (e.g.
    hive:fee-policy/*) at {tier} (monitor, standard, advanced, admin) for {days} days (1-730),
    with the limits `hive-agent credential grant` takes: {max_fee_change_pct} (0-1000, default
    50), {max_rebalance_sats} (default 1000000) and {max_daily_actions} (0-100000, default
    100); it is sent to the advisor gift-wrapped."""
    limits = {
        "days": rpc.integer(days, "days"),
        "max_fee_change_pct": max_fee_change_pct,
        "max_rebalance_sats": max_rebalance_sats,
        "max_daily_actions": max_daily_actions,
    }
    return runtime.methods.grant(
        rpc.pubkey(advisor, "advisor"),
        rpc.text(tier, "tier", 20),
        rpc.words(schemas, "schemas"),
        {k: v if v is None else rpc.integer(v, k) for k, v in limits.items()},
    )


@plugin.method("hive-revoke")
def hive_revoke(plugin: Plugin, credential_id: str) -> Any:
    """Revoke credential {credential_id} now and publish the revocation."""
    return runtime.methods.revoke(
        rpc.hex_id(credential_id, "credential_id", min_len=32, max_len=32)
    )


@plugin.method("hive-credentials")
def hive_credentials(plugin: Plugin) -> Any:
    """List management credentials this node granted, with their state."""
    return runtime.methods.credentials()


if __name__ == "__main__":
    plugin.run()
