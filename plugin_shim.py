#!/usr/bin/env python3
"""Lightning Hive agent: Core Lightning plugin.

Thin by design: options, hooks, subscriptions and `hive-*` methods, each handing off to
`agent.cln_plugin.PluginRuntime`, which runs the agent on its own event-loop thread.  Start it
with `lightningd --plugin=/path/to/plugin_shim.py --hive-relays=wss://…`.
"""

from __future__ import annotations

from typing import Any

from pyln.client import Plugin, RpcException

plugin = Plugin()
try:
    from agent.cln_plugin import PluginRuntime
    from events.errors import HiveError

    runtime: Any = PluginRuntime()
    MISSING = ""
except ImportError as exc:  # the plugin disables itself instead of breaking lightningd
    runtime, MISSING = None, f"hive-agent dependencies missing: {exc}"
    HiveError = Exception  # type: ignore[misc,assignment]  # never raised: the plugin is disabled

HIVE_ERROR = 1500  # the message starts with the stable code, e.g. 'UNAUTHORIZED: …'
NOT_IMPLEMENTED = 1501
plugin.add_option("hive-relays", "", "Comma-separated Nostr relay URLs (empty: no Nostr traffic)")


def hive(fn: Any, *args: Any) -> Any:
    """Run a runtime call; a HiveError becomes an RPC error carrying its stable code."""
    try:
        return fn(*args)
    except HiveError as err:
        raise RpcException(str(err), HIVE_ERROR) from None


def later(method: str, issue: str) -> RpcException:
    return RpcException(f"NOT_IMPLEMENTED: {method} arrives with {issue}", NOT_IMPLEMENTED)


@plugin.init()
def init(options: dict, configuration: dict, plugin: Plugin, **kwargs: Any) -> dict | None:
    if runtime is None:
        return {"disable": MISSING}
    relays = [u.strip() for u in str(options.get("hive-relays", "")).split(",") if u.strip()]
    rpc = f"{configuration['lightning-dir']}/{configuration['rpc-file']}"
    try:
        runtime.start(rpc, configuration["lightning-dir"], relays)
    except Exception as exc:  # noqa: BLE001 - report why, and let lightningd carry on without us
        return {"disable": f"hive-agent could not start: {exc}"}
    plugin.log(f"hive-agent ready; nostr key {runtime.keys.public_key().to_hex()}")
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
def hive_status(plugin: Plugin) -> dict:
    """Show the hive agent: node summary, Nostr key and binding, relays, events seen, and
    fleet membership (hive id, this node's tier, member counts, a join in progress)."""
    return runtime.status()


@plugin.method("hive-members")
def hive_members(plugin: Plugin) -> dict:
    """List the hive's members (tier neophyte or member, status active, left or banned),
    the fleet-wide ban list and open ban proposals with their votes."""
    return hive(runtime.fleet_call, "members")


@plugin.method("hive-genesis")
def hive_genesis(plugin: Plugin) -> dict:
    """Create a new hive with this node as its admin and first full member; returns the
    hive id (hive_ + 16 hex digits)."""
    return hive(runtime.fleet_call, "genesis")


@plugin.method("hive-invite")
def hive_invite(plugin: Plugin, node_id: str, valid_hours: int = 24, requires: str = "") -> dict:
    """Issue a signed invite ticket for {node_id} only, valid {valid_hours} hours (1-168);
    {requires} is a comma-separated list of features the joiner must attest (splice,
    dual_fund, anchor, onion).  Only full members can invite."""
    names = [r.strip() for r in str(requires).split(",") if r.strip()]
    return hive(runtime.fleet_call, "invite", node_id, int(valid_hours), names)


@plugin.method("hive-join")
def hive_join(plugin: Plugin, ticket: str) -> dict:
    """Join a hive with an invite {ticket} naming this node: connects to the issuer and runs
    HELLO, CHALLENGE, ATTEST, WELCOME; `hive-status` shows progress or the refusal."""
    return hive(runtime.fleet_call, "join", ticket)


@plugin.method("hive-leave")
def hive_leave(plugin: Plugin, reason: str = "") -> dict:
    """Leave the hive voluntarily (with an optional {reason}): every member is told, this
    node forgets the hive; channels and funds stay exactly as they are."""
    return hive(runtime.fleet_call, "leave", reason)


@plugin.method("hive-vouch")
def hive_vouch(plugin: Plugin, node_id: str) -> dict:
    """Vouch for neophyte {node_id}; it becomes a member once max(2, 51 % of full members)
    have vouched (one, while the hive has a single full member)."""
    return hive(runtime.fleet_call, "vouch", node_id)


@plugin.method("hive-ban")
def hive_ban(plugin: Plugin, node_id: str, reason: str = "", approve: bool = True) -> dict:
    """Propose a fleet-wide ban of {node_id} giving a {reason}, or vote on the open proposal
    against it ({approve}=false votes against); the ban holds once max(2, 67 % of full
    members) approve, and every member then ignores that node."""
    return hive(runtime.fleet_call, "ban", node_id, reason, _flag(approve))


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() not in ("false", "0", "no")


@plugin.method("hive-topology")
def hive_topology(plugin: Plugin) -> dict:
    """Show the fleet's channel topology."""
    raise later("hive-topology", "fleet gossip (a later issue)")


@plugin.method("hive-pending")
def hive_pending(plugin: Plugin) -> dict:
    """List advisor commands waiting for the operator's approval."""
    return {"pending": hive(runtime.pending)}


@plugin.method("hive-approve")
def hive_approve(plugin: Plugin, id: str) -> dict:
    """Approve the pending advisor command {id} (or a unique prefix of at least 6 characters)."""
    return {"command_id": hive(runtime.vote, id, "approve"), "recorded": "approve"}


@plugin.method("hive-reject")
def hive_reject(plugin: Plugin, id: str) -> dict:
    """Reject the pending advisor command {id}; the advisor gets a REJECTED receipt."""
    return {"command_id": hive(runtime.vote, id, "reject"), "recorded": "reject"}


@plugin.method("hive-confirm")
def hive_confirm(plugin: Plugin, id: str) -> dict:
    """Confirm the approved high-danger advisor command {id} (the second step it needs)."""
    return {"command_id": hive(runtime.vote, id, "confirm"), "recorded": "confirm"}


@plugin.method("hive-grant")
def hive_grant(
    plugin: Plugin, advisor: str, schemas: list | str, tier: str = "standard", days: int = 90
) -> dict:
    """Grant advisor {advisor} a management credential for {schemas} (e.g. hive:fee-policy/*)
    at {tier} for {days} days; it is sent to the advisor gift-wrapped."""
    names = [schemas] if isinstance(schemas, str) else [str(x) for x in schemas]
    return hive(runtime.grant, advisor, tier, names, int(days))


@plugin.method("hive-revoke")
def hive_revoke(plugin: Plugin, credential_id: str) -> dict:
    """Revoke credential {credential_id} now and publish the revocation."""
    hive(runtime.revoke, credential_id)
    return {"revoked": credential_id}


@plugin.method("hive-credentials")
def hive_credentials(plugin: Plugin) -> dict:
    """List management credentials this node granted, with their state."""
    return {"credentials": hive(runtime.credentials)}


if __name__ == "__main__":
    plugin.run()
