"""`hive-agent escrow …`: Cashu escrow tickets from the command line, for both sides.

topup    mint ecash into this agent's wallet (a FakeWallet mint pays itself)
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
from collections.abc import Callable
from typing import Any

import anyio

from agent.app import Standalone
from agent.cli.advisory import Emit
from agent.cli.apps import AppFactory
from agent.cli.types import integer, pubkey
from agent.settings import Settings
from agent.store import escrow as repo
from events.errors import InvalidParams
from events.escrow import Metric, TicketType


def cmd_escrow(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    action = args.escrow_command
    online = action in ("fund",)  # only funding sends anything over Nostr

    if not online and not args.relay:  # offline actions touch only the store and the mint
        args.relay = ["ws://127.0.0.1:9"]  # never connected

    async def run() -> tuple[dict[str, Any], str]:
        app = make(args, settings, funder=online)
        try:
            if online:
                async with app.agent:
                    return await _act(args, app)
            return await _act(args, app)
        finally:
            await app.close()

    result, text = anyio.run(run, backend="asyncio")
    emit(result, text)
    return 0


async def _act(args: argparse.Namespace, app: Standalone) -> tuple[dict, str]:
    escrow, agent = app.escrow, app.agent
    action = args.escrow_command
    if action == "topup":
        done = await escrow.topup(args.amount, args.mint)
        return done, f"minted {done['minted']:,} sat at {done['mint']}"
    if action == "balance":
        found = escrow.balances()
        return {"balances": found}, "\n".join(
            f"{m}: {v:,} sat" for m, v in found.items()
        ) or "empty wallet"
    if action == "fund":
        metric = None
        if args.metric_target is not None:
            metric = Metric(
                channel=args.metric_channel, target=args.metric_target, window_s=args.metric_window
            )
        milestones = [int(x) for x in args.milestones.split(",")] if args.milestones else None
        try:
            ticket = await escrow.fund(
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
        await agent.flush()
        return (
            {
                "ticket_id": ticket.ticket_id,
                "amount_sat": ticket.amount_sat,
                "parts": len(ticket.parts),
            },
            f"ticket {ticket.ticket_id}: {ticket.amount_sat:,} sat in {len(ticket.parts)} part(s)"
            f" for {ticket.advisor[:12]}…, sent",
        )
    if action == "list":
        rows = escrow.describe()
        lines = [
            f"{r['role']:<6} {r['ticket_id']}  {r['type']:<11} {r['amount_sat']:>7,} sat  "
            + " ".join(f"{p['part_index']}:{p['state']}" for p in r["parts"])
            for r in rows
        ]
        return {"tickets": rows}, "\n".join(lines) or "no tickets"
    if action == "show":
        found = repo.ticket(agent.store, args.ticket_id)
        if found is None:
            raise InvalidParams(f"no ticket {args.ticket_id}")
        ticket, role, successes = found
        body = {
            "role": role,
            "successes": successes,
            "ticket": json.loads(
                ticket.model_dump_json(exclude={"parts": {"__all__": {"proofs"}}})
            ),
            "parts": repo.parts(agent.store, args.ticket_id),
        }
        return body, json.dumps(body, indent=2)
    if action == "status":
        found = await escrow.status(args.ticket_id)
        lines = [
            f"part {p['part']}: {p['amount_sat']:,} sat, {'/'.join(p['states'])}"
            + (
                f", preimage revealed {p['preimage_revealed'][:16]}…"
                if p["preimage_revealed"]
                else ""
            )
            for p in found["parts"]
        ]
        return found, "\n".join(lines)
    part = args.part
    if action == "redeem":
        fresh = await escrow.redeem(args.ticket_id, part)
    else:
        fresh = await escrow.refund(args.ticket_id, part)
    total = sum(p.amount for p in fresh)
    return {"ticket_id": args.ticket_id, "part": part, "received_sat": total}, (
        f"{action}ed part {part}: {total:,} sat back in the wallet"
    )


def register(sub: Any, relay_opt: argparse.ArgumentParser, bind: Callable[..., Any]) -> None:
    esc = sub.add_parser("escrow", help="Cashu escrow tickets").add_subparsers(
        dest="escrow_command", required=True, metavar="ACTION"
    )
    top = esc.add_parser("topup", parents=[relay_opt], help="mint ecash into the wallet")
    top.add_argument("--amount", type=integer, required=True)
    top.add_argument("--mint", help="default: the first of policy.json's mints")
    fund = esc.add_parser("fund", parents=[relay_opt], help="fund a ticket for an advisor")
    fund.add_argument("advisor", type=pubkey, help="the advisor (hex, npub or nprofile)")
    fund.add_argument("--credential", required=True, help="the advisor's credential id")
    fund.add_argument("--type", choices=[t.value for t in TicketType], default="single")
    fund.add_argument(
        "--amount", type=integer, required=True, help="sat (the base, for performance)"
    )
    fund.add_argument("--schema", required=True, help="e.g. 'hive:fee-policy/*'")
    fund.add_argument("--max-danger", type=integer, required=True)
    fund.add_argument("--commands", type=integer, default=1, help="batch size")
    fund.add_argument("--milestones", help="e.g. 1,2,4: commands completed at each milestone")
    fund.add_argument("--bonus", type=integer, default=0, help="performance bonus, sat")
    fund.add_argument("--metric-target", type=integer, help="forward fees (msat) for the bonus")
    fund.add_argument("--metric-window", type=integer, default=48 * 3600, help="seconds")
    fund.add_argument("--metric-channel", help="count forwards on this channel only")
    fund.add_argument("--params-hash", help="bind the ticket to one command's parameters")
    fund.add_argument("--mint", help="default: the first of policy.json's mints")
    fund.add_argument("--locktime-s", type=integer, help="override the danger's escrow window")
    for name in ("list", "balance"):
        esc.add_parser(
            name, parents=[relay_opt], help="list tickets" if name == "list" else "ecash per mint"
        )
    for name, text in (
        ("show", "one ticket"),
        ("status", "NUT-07 states at the mint"),
        ("redeem", "redeem a released part"),
        ("refund", "refund an unreleased part after its locktime"),
    ):
        p = esc.add_parser(name, parents=[relay_opt], help=text)
        p.add_argument("ticket_id")
        if name in ("redeem", "refund"):
            p.add_argument("--part", type=integer, default=0)
    for name in esc.choices:
        esc.choices[name].add_argument("--policy", help=argparse.SUPPRESS)
        esc.choices[name].set_defaults(func=bind(cmd_escrow))
