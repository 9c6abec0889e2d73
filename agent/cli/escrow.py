"""`hive-agent escrow …`: Cashu escrow tickets from the command line, for both sides.

topup    mint ecash into this agent's wallet (a FakeWallet mint pays itself; else see invoice)
fund     operator: lock ecash for an advisor in a ticket and send it to them
list     tickets funded and held, part by part
show     one ticket, whole
redeem   advisor: swap a released part into fresh ecash (preimage + signature)
refund   operator: take back an unreleased part after its locktime
status   NUT-07 states at the mint, and any preimage a spend revealed
balance  unspent ecash per mint
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from pydantic import ValidationError

from agent.app import Standalone
from agent.cli import escrow_wallet
from agent.cli.apps import AppFactory
from agent.cli.common import Bind, Emit
from agent.cli.ids import resolving
from agent.cli.types import id_prefix, integer, msats, pubkey, sats, seconds
from agent.cli.views import pairs, since, table, when
from agent.escrow import checks
from agent.escrow.mint import normalize
from agent.escrow.planning import locked_until, plan_ticket, refusal
from agent.settings import Settings
from agent.store import escrow as repo
from events.errors import InvalidParams, MintNotAllowed
from events.escrow import Metric, TicketType

Answer = tuple[dict[str, Any], str]
Act = Callable[[argparse.Namespace, Standalone], Awaitable[Answer]]

OFFLINE_RELAY = "ws://127.0.0.1:9"  # named so the agent can be built; never connected


def _run(
    args: argparse.Namespace,
    settings: Settings,
    emit: Emit,
    make: AppFactory,
    act: Act,
    *,
    online: bool = False,
    check: Callable[[argparse.Namespace, Standalone], None] | None = None,
) -> int:
    """Build the agent, do `act` and print its answer.  Only funding sends anything over Nostr
    (`online`: the agent is started, and funds); the other actions touch only the store and
    the mint."""
    if not online and not args.relay:
        args.relay = [OFFLINE_RELAY]

    async def run() -> Answer:
        app = make(args, settings, funder=online)
        try:
            if check is not None:
                check(args, app)  # before connecting
            if online:
                async with app.agent:
                    return await act(args, app)
            return await act(args, app)
        finally:
            await app.close()

    result, text = anyio.run(run, backend="asyncio")
    emit(result, text)
    return 0


# --- the wallet -------------------------------------------------------------------------------


async def _topup(args: argparse.Namespace, app: Standalone) -> Answer:
    """An invoice, waited for up to --timeout (a FakeWallet mint pays at once): what was
    minted, or the invoice still to pay (never "minted 0 sat")."""
    from agent.cli.escrow_wallet import issue_and_wait

    body, text = await issue_and_wait(args, app, args.amount)
    return {**body, "invoice": body.get("request", "")}, text


def cmd_topup(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    return _run(args, settings, emit, make, _topup)


async def _balance(args: argparse.Namespace, app: Standalone) -> Answer:
    from agent.escrow.purse import settle

    await settle(app.escrow)  # claim invoices paid since, settle interrupted payments
    found = app.escrow.balances()
    rows = [(m, v) for m, v in found.items()]
    return {"balances": found}, table(["mint", "sat"], rows) if rows else "empty wallet"


def cmd_balance(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    return _run(args, settings, emit, make, _balance)


# --- operator: fund ---------------------------------------------------------------------------


def _milestones(args: argparse.Namespace) -> list[int] | None:
    if not args.milestones:
        return None
    try:
        return [int(x) for x in args.milestones.split(",")]
    except ValueError:
        raise InvalidParams(f"--milestones {args.milestones[:40]!r} is not n,n,…") from None


def _metric(args: argparse.Namespace) -> Metric | None:
    if args.metric_target is None:
        return None
    try:
        return Metric(
            channel=args.metric_channel, target=args.metric_target, window_s=args.metric_window
        )
    except ValidationError as exc:
        raise refusal(exc) from None


async def _fund(args: argparse.Namespace, app: Standalone) -> Answer:
    metric = _metric(args)
    milestones = _milestones(args)
    try:
        ticket = await app.escrow.fund(
            advisor=args.advisor,
            credential_id=args.credential,
            kind=TicketType(args.type),
            amount_sat=args.amount,
            schema_pattern=args.schema,
            max_danger=args.max_danger,
            commands=args.commands,
            milestones=milestones,
            bonus_sat=args.bonus,
            metric=metric,
            params_hash=args.params_hash,
            mint=args.mint,
            locktime_s=args.locktime_s,
        )
    except ValueError as exc:
        raise InvalidParams(str(exc).splitlines()[0][:200]) from None
    await app.agent.flush()
    return (
        {
            "ticket_id": ticket.ticket_id,
            "amount_sat": ticket.amount_sat,
            "parts": len(ticket.parts),
        },
        f"ticket {ticket.ticket_id}: {ticket.amount_sat:,} sat in {len(ticket.parts)} part(s)"
        f" for {ticket.advisor[:12]}…, sent",
    )


def _fund_check(args: argparse.Namespace, app: Standalone) -> None:
    """What funding would refuse, checked before anything connects: the mint, the parts."""
    mints = app.escrow.mints
    if not args.mint and not mints:
        raise MintNotAllowed("no mint to fund from: list one in policy.json's mints")
    if args.mint and normalize(args.mint) not in mints:
        allowed = ", ".join(mints) or "none"
        raise MintNotAllowed(f"{args.mint} is not in the operator's mints ({allowed})")
    now = app.agent.clock.now()
    plan_ticket(
        TicketType(args.type),
        args.amount,
        schema_pattern=args.schema,
        max_danger=args.max_danger,
        commands=args.commands,
        milestones=_milestones(args),
        bonus_sat=args.bonus,
        metric=_metric(args),
        params_hash=args.params_hash,
        mint=normalize(args.mint or mints[0]),
        advisor=args.advisor,
        credential_id=args.credential,
        locked_until=locked_until(now, args.max_danger, args.locktime_s),
        deadline=now + 1,
    )


def cmd_fund(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    return _run(args, settings, emit, make, _fund, online=True, check=_fund_check)


# --- tickets ----------------------------------------------------------------------------------


async def _list(args: argparse.Namespace, app: Standalone) -> Answer:
    rows = app.escrow.describe()
    shown = [
        (r["role"], r["ticket_id"], r["type"], r["amount_sat"],
         " ".join(f"{p['part_index']}:{p['state']}" for p in r["parts"]),
         checks.label(r["role"], r["checked"], short=True))
        for r in rows
    ]  # fmt: skip
    heads = ["role", "ticket", "type", "sat", "parts", "ecash"]
    text = table(heads, shown) if rows else "no tickets"
    return {"tickets": rows}, text


def cmd_list(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    return _run(args, settings, emit, make, _list)


async def _show(args: argparse.Namespace, app: Standalone) -> Answer:
    found = repo.ticket(app.agent.store, args.ticket_id)
    if found is None:
        raise InvalidParams(f"no ticket {args.ticket_id}")
    ticket, role, successes = found
    body = {
        "role": role,
        "successes": successes,
        "checked": repo.checked(app.agent.store, args.ticket_id),
        "ticket": json.loads(ticket.model_dump_json(exclude={"parts": {"__all__": {"proofs"}}})),
        "parts": repo.parts(app.agent.store, args.ticket_id),
    }
    return body, _ticket_text(ticket, role, successes, body["parts"], body["checked"])


def _ticket_text(
    ticket: Any, role: str, successes: int, parts: list[dict[str, Any]], checked: str | None
) -> str:
    head = pairs(
        [("ticket", ticket.ticket_id), ("role", role), ("type", ticket.type.value),
         ("amount", f"{ticket.amount_sat:,} sat"), ("mint", ticket.mint),
         ("node", ticket.node), ("advisor", ticket.advisor),
         ("credential", ticket.credential_id), ("created", since(ticket.created_at)),
         ("successes", successes), ("ecash", checks.label(role, checked))]
    )  # fmt: skip
    rows = [
        (p["part_index"], p["amount"], p["state"], when(p["locktime"]), since(p["updated_at"]),
         p["note"])
        for p in parts
    ]  # fmt: skip
    return head + "\n\n" + table(["part", "sat", "state", "locktime", "updated", "note"], rows)


def cmd_show(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    return _run(args, settings, emit, make, _show)


async def _status(args: argparse.Namespace, app: Standalone) -> Answer:
    found = await app.escrow.status(args.ticket_id)
    rows = [
        (p["part"], p["amount_sat"], "/".join(p["states"]),
         f"{p['preimage_revealed'][:16]}…" if p["preimage_revealed"] else None)
        for p in found["parts"]
    ]  # fmt: skip
    return found, table(["part", "sat", "states", "preimage revealed"], rows)


def cmd_status(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    return _run(args, settings, emit, make, _status)


def _got_back(args: argparse.Namespace, done: str, fresh: list[Any]) -> Answer:
    total = sum(p.amount for p in fresh)
    return {"ticket_id": args.ticket_id, "part": args.part, "received_sat": total}, (
        f"{done} part {args.part}: {total:,} sat back in the wallet"
    )


async def _redeem(args: argparse.Namespace, app: Standalone) -> Answer:
    return _got_back(args, "redeemed", await app.escrow.redeem(args.ticket_id, args.part))


def cmd_redeem(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    return _run(args, settings, emit, make, _redeem)


async def _refund(args: argparse.Namespace, app: Standalone) -> Answer:
    return _got_back(args, "refunded", await app.escrow.refund(args.ticket_id, args.part))


def cmd_refund(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    return _run(args, settings, emit, make, _refund)


# --- parsers ----------------------------------------------------------------------------------


def register(sub: Any, relay_opt: argparse.ArgumentParser, bind: Bind) -> None:
    esc = sub.add_parser("escrow", help="Cashu escrow tickets").add_subparsers(
        required=True, metavar="ACTION"
    )
    top = esc.add_parser("topup", parents=[relay_opt], help="mint ecash into the wallet")
    top.add_argument("--amount", type=sats, required=True, help="sat, e.g. 100k")
    top.add_argument("--mint", help="default: the first of policy.json's mints")
    top.add_argument("--timeout", type=seconds, default=0, help="seconds to wait for payment")
    top.set_defaults(func=bind(cmd_topup))
    _fund_options(esc.add_parser("fund", parents=[relay_opt], help="fund a ticket for an advisor"))
    esc.choices["fund"].set_defaults(
        func=bind(resolving("credential", "credential", cmd_fund, unknown_ok=True))
    )
    esc.add_parser("list", parents=[relay_opt], help="list tickets").set_defaults(
        func=bind(cmd_list)
    )
    esc.add_parser("balance", parents=[relay_opt], help="ecash per mint").set_defaults(
        func=bind(cmd_balance)
    )
    for name, text, command in (
        ("show", "one ticket", cmd_show),
        ("status", "NUT-07 states at the mint", cmd_status),
        ("redeem", "redeem a released part", cmd_redeem),
        ("refund", "refund an unreleased part after its locktime", cmd_refund),
    ):
        p = esc.add_parser(name, parents=[relay_opt], help=text)
        p.add_argument("ticket_id", type=id_prefix, help="ticket id or unique prefix")
        if name in ("redeem", "refund"):
            p.add_argument("--part", type=integer, default=0)
        p.set_defaults(func=bind(resolving("ticket_id", "ticket", command)))
    escrow_wallet.register(sub, esc, relay_opt, bind)
    for parser in esc.choices.values():
        parser.add_argument("--policy", help=argparse.SUPPRESS)


def _fund_options(fund: argparse.ArgumentParser) -> None:
    fund.add_argument("advisor", type=pubkey, help="the advisor (hex, npub or nprofile)")
    fund.add_argument(
        "--credential", type=id_prefix, required=True, help="the credential id (or prefix)"
    )
    fund.add_argument("--type", choices=[t.value for t in TicketType], default="single")
    fund.add_argument(
        "--amount", type=sats, required=True, help="sat, e.g. 10k (the base, for performance)"
    )
    fund.add_argument("--schema", required=True, help="e.g. 'hive:fee-policy/*'")
    fund.add_argument("--max-danger", type=integer, required=True)
    fund.add_argument("--commands", type=integer, default=1, help="batch size")
    fund.add_argument("--milestones", help="e.g. 1,2,4: commands completed at each milestone")
    fund.add_argument("--bonus", type=sats, default=0, help="performance bonus, sat")
    fund.add_argument(
        "--metric-target", type=msats, help="forward fees (msat; or 5k = 5,000 sat) for the bonus"
    )
    fund.add_argument("--metric-window", type=integer, default=48 * 3600, help="seconds")
    fund.add_argument("--metric-channel", help="count forwards on this channel only")
    fund.add_argument("--params-hash", help="bind the ticket to one command's parameters")
    fund.add_argument("--mint", help="default: the first of policy.json's mints")
    fund.add_argument("--locktime-s", type=integer, help="override the danger's escrow window")
