"""The management schema catalogue: one checked-in table of the 15 schema families (UPSTREAM §2),
their actions, minimum tiers and danger scores (refined by doc 02's amount bands), a pydantic
parameter model per action, what node state each touches, and how it runs on a `NodeBackend`.

Unknown schemas or actions and unknown or missing parameters are refused (INVALID_PARAMS /
NOT_IMPLEMENTED); an action at danger 5 or more must spell out every parameter.  Actions whose
execution this project does not perform (yet) are still parsed, scored and policy-checked, and
answer NOT_IMPLEMENTED instead of running.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from agent.node.backend import NodeBackend
from events.credential import Tier
from events.errors import InvalidParams, NotFound, NotImplementedYet, Restricted
from events.types import NodeId, first_error

Scid = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,10}x[0-9]{1,10}x[0-9]{1,5}$")]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NoParams(Params):
    pass


class SetFee(Params):
    channel: Scid
    fee_ppm: int = Field(ge=0, le=100_000)
    base_msat: int | None = Field(default=None, ge=0, le=100_000_000)


class SetAnchor(Params):
    channel: Scid
    target_fee_ppm: int = Field(ge=0, le=100_000)
    confidence: int = Field(default=50, ge=0, le=100)
    ttl_hours: int = Field(default=24, ge=1, le=24 * 30)
    reason: str = Field(default="", max_length=200)


class SetBulk(Params):
    fee_ppm: int = Field(ge=0, le=100_000)
    base_msat: int = Field(ge=0, le=100_000_000)


class HtlcMin(Params):
    channel: Scid
    htlc_min_msat: int = Field(ge=0)


class HtlcMax(Params):
    channel: Scid
    htlc_max_msat: int = Field(ge=0)


class ChannelRef(Params):
    channel: Scid


class Circular(Params):
    from_channel: Scid
    to_channel: Scid
    amount_sats: int = Field(ge=1, le=100_000_000)
    max_fee_ppm: int = Field(ge=0, le=1000)


class Amount(Params):
    amount_sats: int = Field(ge=1, le=2_100_000_000_000_000)


class Open(Params):
    peer: NodeId
    amount_sats: int = Field(ge=20_000, le=1_000_000_000)


class PeerRef(Params):
    peer: NodeId


class EmergencyClose(Params):
    channel: Scid
    amount_sats: int = Field(ge=1)  # the channel's capacity: checked before closing


class MakeInvoice(Params):
    amount_msat: int = Field(ge=1)
    label: str = Field(min_length=1, max_length=100)


class Pay(Params):
    bolt11: str = Field(min_length=10, max_length=2000)
    amount_sats: int = Field(ge=1)  # declared; checked against the invoice before paying
    max_fee_sats: int = Field(ge=0)


class Withdraw(Params):
    address: str = Field(min_length=10, max_length=120)
    amount_sats: int = Field(ge=546)


class Splice(Params):
    channel: Scid
    amount_sats: int = Field(ge=1)


class Named(Params):
    name: str = Field(min_length=1, max_length=100)


class ConfigSet(Params):
    key: str = Field(min_length=1, max_length=100)
    value: str = Field(max_length=500)


class Htlc(Params):
    payment_hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


Run = Callable[[NodeBackend, Any, str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ActionSpec:
    family: str
    name: str
    tier: Tier
    danger: Callable[[Any], int]
    params: type[Params]
    touches: str  # channel_policy | balances | channels | funds | none
    run: Run | None = None  # None: recognised, not executed by this project
    idempotent: bool = False
    moves_sats: Callable[[Any], int] = lambda p: 0
    max_fee_sats: Callable[[Any], int] = lambda p: 0
    opens_channel: bool = False
    # (channel, new fee ppm): the fee change is held to the credential's and preset's caps
    fee_change: Callable[[Any], tuple[str, int]] | None = None
    limit: Callable[[Any, ActionLimits], None] | None = None  # the action's own limits
    # after a crash mid-execution: whether it ran (its result) or None, asked of the node
    find_made: Callable[[NodeBackend, str], Awaitable[dict[str, Any] | None]] | None = None
    self_inspection: bool = False  # answered by the node's command processor itself
    emergency: bool = False  # may run in failsafe mode (within the failsafe budget)

    @property
    def schema(self) -> str:
        return f"hive:{self.family}/v1"


@dataclass(frozen=True)
class ActionLimits:
    """What an action's own limit hook may look at."""

    max_rebalance_sats: int  # the lower of the credential's and the policy preset's
    protected_channels: frozenset[str]


def _rebalance_cap(p: Circular, limits: ActionLimits) -> None:
    if p.amount_sats > limits.max_rebalance_sats:
        raise Restricted(f"rebalances are limited to {limits.max_rebalance_sats:,} sat")


def _no_protected_channels(p: Any, limits: ActionLimits) -> None:
    if limits.protected_channels:
        raise Restricted("a bulk fee change would touch protected channels")


async def _rebalance_made(node: NodeBackend, key: str) -> dict[str, Any] | None:
    found = await node.find_rebalance(key)
    return None if found is None else found.model_dump()


def fixed(n: int) -> Callable[[Any], int]:
    return lambda p: n


# --- executors ------------------------------------------------------------------------------


async def _info(node: NodeBackend, p: Any, key: str) -> dict[str, Any]:
    return (await node.info()).model_dump()


async def _channels(node: NodeBackend, p: Any, key: str) -> dict[str, Any]:
    return {"channels": [c.model_dump(mode="json") for c in await node.channels()]}


async def _balance(node: NodeBackend, p: Any, key: str) -> dict[str, Any]:
    return (await node.funds()).model_dump()


async def _set_fee(node: NodeBackend, p: SetFee, key: str) -> dict[str, Any]:
    chan = await node.set_fees(p.channel, ppm=p.fee_ppm, base_msat=p.base_msat)
    return {"channel": chan.short_channel_id, "policy": chan.policy.model_dump()}


async def _set_anchor(node: NodeBackend, p: SetAnchor, key: str) -> dict[str, Any]:
    chan = await node.set_fees(p.channel, ppm=p.target_fee_ppm)
    return {"channel": chan.short_channel_id, "policy": chan.policy.model_dump()}


async def _set_bulk(node: NodeBackend, p: SetBulk, key: str) -> dict[str, Any]:
    changed = []
    for chan in await node.channels():
        await node.set_fees(chan.short_channel_id, ppm=p.fee_ppm, base_msat=p.base_msat)
        changed.append(chan.short_channel_id)
    return {"channels": changed}


async def _htlc_min(node: NodeBackend, p: HtlcMin, key: str) -> dict[str, Any]:
    chan = await node.set_fees(p.channel, htlc_min_msat=p.htlc_min_msat)
    return {"channel": chan.short_channel_id, "policy": chan.policy.model_dump()}


async def _htlc_max(node: NodeBackend, p: HtlcMax, key: str) -> dict[str, Any]:
    chan = await node.set_fees(p.channel, htlc_max_msat=p.htlc_max_msat)
    return {"channel": chan.short_channel_id, "policy": chan.policy.model_dump()}


async def _circular(node: NodeBackend, p: Circular, key: str) -> dict[str, Any]:
    paid = await node.rebalance(
        p.from_channel, p.to_channel, p.amount_sats * 1000, max_fee_ppm=p.max_fee_ppm, label=key
    )
    return paid.model_dump()


async def _open(node: NodeBackend, p: Open, key: str) -> dict[str, Any]:
    chan = await node.open_channel(p.peer, p.amount_sats)
    return {"channel": chan.short_channel_id, "capacity_sat": chan.capacity_sat}


async def _close(node: NodeBackend, p: ChannelRef, key: str) -> dict[str, Any]:
    await node.close_channel(p.channel)
    return {"closed": p.channel}


async def _close_emergency(node: NodeBackend, p: EmergencyClose, key: str) -> dict[str, Any]:
    chan = {c.short_channel_id: c for c in await node.channels()}.get(p.channel)
    if chan is None or chan.capacity_sat != p.amount_sats:
        raise InvalidParams(f"no open channel {p.channel} of {p.amount_sats:,} sat")
    await node.close_channel(p.channel)
    return {"closed": p.channel, "capacity_sat": chan.capacity_sat}


async def _connect(node: NodeBackend, p: PeerRef, key: str) -> dict[str, Any]:
    await node.connect(p.peer)
    return {"connected": p.peer}


async def _invoice(node: NodeBackend, p: MakeInvoice, key: str) -> dict[str, Any]:
    return (await node.invoice(p.amount_msat, p.label)).model_dump()


async def _pay(node: NodeBackend, p: Pay, key: str) -> dict[str, Any]:
    amount = (await node.decode_invoice(p.bolt11)).amount_msat
    if amount != p.amount_sats * 1000:
        raise InvalidParams(
            f"the invoice is for {amount:,} msat, not the declared {p.amount_sats:,} sat"
        )
    return (await node.pay(p.bolt11, max_fee_msat=p.max_fee_sats * 1000)).model_dump()


async def _withdraw(node: NodeBackend, p: Withdraw, key: str) -> dict[str, Any]:
    return {"txid": await node.withdraw(p.address, p.amount_sats)}


def _by_amount(limit: int, below: int, above: int) -> Callable[[Any], int]:
    return lambda p: below if p.amount_sats < limit else above


S, A, M, D = Tier.STANDARD, Tier.ADVANCED, Tier.MONITOR, Tier.ADMIN
CATALOGUE: list[ActionSpec] = [
    # family, action, tier, danger, params, touches, run, ...
    ActionSpec("monitor", "get_info", M, fixed(1), NoParams, "none", _info, True),
    ActionSpec("monitor", "list_channels", M, fixed(1), NoParams, "none", _channels, True),
    ActionSpec("monitor", "get_balance", M, fixed(1), NoParams, "none", _balance, True),
    ActionSpec(
        "monitor", "budget", M, fixed(1), NoParams, "none", None, True, self_inspection=True
    ),
    ActionSpec(
        "fee-policy",
        "set_single",
        S,
        fixed(2),
        SetFee,
        "channel_policy",
        _set_fee,
        True,
        fee_change=lambda p: (p.channel, p.fee_ppm),
    ),
    ActionSpec(
        "fee-policy",
        "set_anchor",
        S,
        fixed(2),
        SetAnchor,
        "channel_policy",
        _set_anchor,
        True,
        fee_change=lambda p: (p.channel, p.target_fee_ppm),
    ),
    ActionSpec(
        "fee-policy",
        "set_bulk",
        A,
        fixed(5),
        SetBulk,
        "channel_policy",
        _set_bulk,
        True,
        limit=_no_protected_channels,
    ),
    ActionSpec("htlc-policy", "set_min", S, fixed(3), HtlcMin, "channel_policy", _htlc_min, True),
    ActionSpec("htlc-policy", "set_max", S, fixed(4), HtlcMax, "channel_policy", _htlc_max, True),
    ActionSpec("forwarding", "disable", S, fixed(4), ChannelRef, "channel_policy"),
    ActionSpec("forwarding", "enable", S, fixed(2), ChannelRef, "channel_policy"),
    ActionSpec("forwarding", "hints", A, fixed(3), ChannelRef, "none"),
    ActionSpec(
        "rebalance",
        "circular",
        A,
        _by_amount(100_000, 3, 5),
        Circular,
        "balances",
        _circular,
        moves_sats=lambda p: p.amount_sats,
        max_fee_sats=lambda p: p.amount_sats * p.max_fee_ppm // 1_000_000,
        limit=_rebalance_cap,
        find_made=_rebalance_made,
    ),
    ActionSpec(
        "rebalance", "swap_in", A, fixed(5), Amount, "funds", moves_sats=lambda p: p.amount_sats
    ),
    ActionSpec(
        "rebalance", "swap_out", A, fixed(6), Amount, "funds", moves_sats=lambda p: p.amount_sats
    ),
    ActionSpec(
        "channel",
        "open",
        A,
        _by_amount(1_000_000, 5, 6),
        Open,
        "channels",
        _open,
        moves_sats=lambda p: p.amount_sats,
        opens_channel=True,
    ),
    ActionSpec(
        "channel", "batch_open", A, fixed(7), Amount, "channels", moves_sats=lambda p: p.amount_sats
    ),
    ActionSpec("channel", "close", A, fixed(6), ChannelRef, "channels", _close),
    ActionSpec("channel", "force_close", A, fixed(7), ChannelRef, "channels"),
    ActionSpec("channel", "close_all", D, fixed(10), NoParams, "channels"),
    ActionSpec(
        "splice", "splice_in", A, fixed(6), Splice, "channels", moves_sats=lambda p: p.amount_sats
    ),
    ActionSpec(
        "splice", "splice_out", A, fixed(7), Splice, "channels", moves_sats=lambda p: p.amount_sats
    ),
    ActionSpec("peer", "connect", S, fixed(2), PeerRef, "none", _connect, True),
    ActionSpec("peer", "disconnect", S, fixed(3), PeerRef, "none"),
    ActionSpec("payment", "invoice", S, fixed(1), MakeInvoice, "none", _invoice),
    ActionSpec(
        "payment",
        "pay",
        A,
        _by_amount(10_000, 4, 6),
        Pay,
        "balances",
        _pay,
        moves_sats=lambda p: p.amount_sats,
        max_fee_sats=lambda p: p.max_fee_sats,
    ),
    ActionSpec(
        "wallet",
        "withdraw",
        D,
        _by_amount(100_000, 6, 8),
        Withdraw,
        "funds",
        _withdraw,
        moves_sats=lambda p: p.amount_sats,
    ),
    ActionSpec("wallet", "sweep", D, fixed(9), NoParams, "funds"),
    ActionSpec("plugin", "start", D, fixed(7), Named, "none"),
    ActionSpec("plugin", "stop", D, fixed(7), Named, "none"),
    ActionSpec("config", "set", D, fixed(4), ConfigSet, "none"),
    ActionSpec("backup", "restore", D, fixed(10), Named, "none"),
    ActionSpec("emergency", "stop_node", D, fixed(8), NoParams, "none"),
    ActionSpec("emergency", "close_all", D, fixed(10), NoParams, "channels"),
    ActionSpec("emergency", "ban_peer", A, fixed(4), PeerRef, "none", emergency=True),
    ActionSpec(  # a cooperative close (6) of a channel to a peer that threatens the node
        "emergency",
        "close_channel",
        A,
        fixed(6),
        EmergencyClose,
        "channels",
        _close_emergency,
        moves_sats=lambda p: p.amount_sats,
        emergency=True,
    ),
    ActionSpec("htlc-mgmt", "list_stuck", M, fixed(1), NoParams, "none"),
    ActionSpec("htlc-mgmt", "settle", A, fixed(7), Htlc, "balances"),
    ActionSpec("htlc-mgmt", "fail", A, fixed(7), Htlc, "balances"),
    ActionSpec("htlc-mgmt", "force_resolve", A, fixed(8), Htlc, "balances"),
]
BY_KEY = {(spec.schema, spec.name): spec for spec in CATALOGUE}
FAMILIES = sorted({spec.family for spec in CATALOGUE})


def lookup(schema: str, action: str) -> ActionSpec:
    """The catalogue entry; NotFound-style INVALID_PARAMS for an unknown schema or action."""
    spec = BY_KEY.get((schema, action))
    if spec is None:
        known = schema.split("/", 1)[0].removeprefix("hive:") in FAMILIES
        what = f"action {action!r} of {schema}" if known else f"schema {schema!r}"
        raise InvalidParams(f"unknown {what}")
    return spec


def parse_params(spec: ActionSpec, raw: dict[str, Any]) -> Params:
    """Validate parameters; at danger ≥ 5 every field must be given explicitly."""
    try:
        params = spec.params.model_validate(raw)
    except ValidationError as exc:
        problem = first_error(exc, "params")
        raise InvalidParams(f"{spec.schema} {spec.name}: {problem}") from None
    if spec.danger(params) >= 5:
        missing = set(spec.params.model_fields) - set(raw)
        if missing:
            raise InvalidParams(
                f"dangerous actions must give every parameter; missing {', '.join(sorted(missing))}"
            )
    return params


async def execute(spec: ActionSpec, node: NodeBackend, params: Params, key: str) -> dict[str, Any]:
    """Run the action on the node (NotImplementedYet for recognised but unexecuted actions)."""
    if spec.run is None:
        raise NotImplementedYet(
            f"{spec.schema} {spec.name} is recognised but not executed by this version"
        )
    return await spec.run(node, params, key)


def channels_named(params: Params) -> list[str]:
    return [
        getattr(params, f) for f in ("channel", "from_channel", "to_channel") if hasattr(params, f)
    ]


async def touched_state(
    spec: ActionSpec, node: NodeBackend, params: Params, channels: list[Any] | None = None
) -> dict[str, Any]:
    """The node state this action touches (its hash goes into the receipt, before and after);
    `channels`: a listing just taken, instead of asking the node again."""
    if spec.touches == "none":
        return {}
    if spec.touches == "funds":
        return (await node.funds()).model_dump()
    listing = channels if channels is not None else await node.channels()
    chans = {c.short_channel_id: c for c in listing}
    if spec.touches == "channels":
        return {
            s: {"peer": c.peer_id, "capacity_sat": c.capacity_sat} for s, c in sorted(chans.items())
        }
    named = channels_named(params) or sorted(chans)
    for scid in named:
        if scid not in chans:
            raise NotFound(f"no open channel {scid}")
    if spec.touches == "balances":
        return {s: {"local_msat": chans[s].local_msat} for s in named}
    return {s: chans[s].policy.model_dump() for s in named}
