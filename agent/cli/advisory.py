"""`hive-agent node | credential | approvals | advise | receipts`: advisor commands from the
command line, for both sides."""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path
from typing import Any

import anyio

from agent.advisory import credentials as credentials_side
from agent.advisory import node as node_side
from agent.advisory import schemas
from agent.cli import advisoryviews as views
from agent.cli import catalogue
from agent.cli.apps import AppFactory, announce, node_app
from agent.cli.common import Bind, Emit
from agent.cli.ids import resolving
from agent.cli.types import id_prefix, integer, positive, pubkey, sats
from agent.clock import SystemClock
from agent.errors import CommandRefused, NoReceipt, exit_code_of
from agent.home_lock import lock_home
from agent.keys import load_key_file
from agent.node.backend import NodeBackend
from agent.settings import Settings
from agent.store import Store
from agent.store import advisory as repo
from agent.textsafe import inline
from events import receipt
from events.credential import Tier
from events.errors import HiveError, InvalidParams, Restricted, Unauthorized


def _simulated_node(args: argparse.Namespace, settings: Settings) -> tuple[NodeBackend, Any]:
    """Node 0 of a simulated ring network, restored from (and saved to) --sim-state."""
    import time

    from agent.node import sim_state
    from agent.node.sim import Network
    from agent.node.simnode import SimBackend

    path = Path(args.sim_state) if args.sim_state else settings.root / "sim-network.json"
    if path.exists():
        net = sim_state.load(path, time.monotonic)
    else:
        net = Network(seed=args.seed, clock=time.monotonic)
        ids = [net.add_node(f"node{i}", 50_000_000) for i in range(args.sim_nodes)]
        for i in range(args.sim_nodes):
            net.open_channel(
                ids[i], ids[(i + 1) % args.sim_nodes], 2_000_000, push_msat=800_000_000
            )
        path.parent.mkdir(parents=True, exist_ok=True)
    me = sorted(net.nodes, key=lambda n: net.nodes[n].alias)[0]
    journal = sim_state.Journal(net, path)
    return SimBackend(net, me, on_change=journal.save, on_policy=journal.policy), net


# --- node -------------------------------------------------------------------------------------


def _node_backend(args: argparse.Namespace, settings: Settings) -> tuple[NodeBackend, Any]:
    """lightningd over --cln-rpc, or a simulated node and the driver that delivers its events
    (forwards); the driver is None for a real node."""
    from agent.node.simnode import SimDriver

    if args.cln_rpc:
        from agent.node.cln import CLNBackend

        return CLNBackend(args.cln_rpc), None
    backend, net = _simulated_node(args, settings)
    return backend, SimDriver(net)


async def _serve_node(args: argparse.Namespace, settings: Settings, emit: Emit) -> None:
    backend, driver = _node_backend(args, settings)
    lock_home(settings.root, "node")
    app = node_app(args, settings, backend)
    async with app.agent as agent:
        await announce(app, args)  # relay lists and profile, only if they changed
        info = await backend.info()
        emit(
            {"agent": agent.pubkey, "node_id": info.id, "status": "running"},
            f"node agent {agent.pubkey} for node {info.id} ({info.alias}) running",
        )
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:
                for loop in app.loops():
                    tg.start_soon(loop)
                if driver is not None:
                    tg.start_soon(driver.run)

                async def stop() -> None:
                    async for _ in signals:
                        tg.cancel_scope.cancel()

                tg.start_soon(stop)
                if args.seconds:
                    await anyio.sleep(args.seconds)
                    tg.cancel_scope.cancel()
        await app.close()


def cmd_node(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    anyio.run(_serve_node, args, settings, emit, backend="asyncio")
    return 0


# --- credential -------------------------------------------------------------------------------


def cmd_credential_list(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    rows = repo.credentials(Store(settings.store_file))
    emit({"credentials": rows}, views.credentials(rows))
    return 0


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    """The grant's validity and limits, as both the check and the issue take them."""
    return {
        "days": args.days,
        "max_fee_change_pct": args.max_fee_change_pct,
        "max_rebalance_sats": args.max_rebalance_sats,
        "max_daily_actions": args.max_daily_actions,
    }


async def _grant(args: argparse.Namespace, settings: Settings, make: AppFactory) -> dict[str, Any]:
    app = make(args, settings)
    async with app.agent as agent:
        grant = app.credentials.issue(args.advisor, args.tier, args.schema, **_limits(args))
        cred = grant.credential
        waiting = await agent.flush()
        return {
            "delivered": not waiting,
            "credential_id": cred.credential_id,
            "advisor": cred.advisor,
            "tier": cred.tier.value,
            "valid_until": cred.valid_until,
        }


def cmd_credential_grant(
    args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory
) -> int:
    credentials_side.new_credential(  # checked before connecting to anything
        load_key_file(settings.key_file).public_key().to_hex(),
        args.advisor,
        args.tier,
        args.schema,
        now=SystemClock().now(),
        **_limits(args),
    )
    result = anyio.run(_grant, args, settings, make, backend="asyncio")
    emit(result, views.granted(result))
    return 0


async def revoke_with(
    args: argparse.Namespace, settings: Settings, make: AppFactory
) -> dict[str, Any]:
    app = make(args, settings)
    async with app.agent as agent:
        await app.credentials.revoke(args.credential_id)
        waiting = await agent.flush()
        return {"revoked": args.credential_id, "published": not waiting}


def cmd_credential_revoke(
    args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory
) -> int:
    result = anyio.run(revoke_with, args, settings, make, backend="asyncio")
    emit(result, views.revoked(result))
    return 0


# --- approvals --------------------------------------------------------------------------------


def cmd_approvals_list(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    rows = node_side.pending(Store(settings.store_file))
    emit({"pending": rows}, views.pending(rows))
    return 0


def _vote(args: argparse.Namespace, settings: Settings, emit: Emit, step: str) -> int:
    store = Store(settings.store_file)
    found = node_side.vote(store, args.id, step, SystemClock().now())
    emit(
        {"command_id": found, "recorded": step},
        f"{step} recorded for {found}; the running node applies it",
    )
    return 0


def cmd_approve(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    return _vote(args, settings, emit, "approve")


def cmd_reject(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    return _vote(args, settings, emit, "reject")


def cmd_confirm(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    return _vote(args, settings, emit, "confirm")


# --- advise -----------------------------------------------------------------------------------


def _params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidParams(f"parameters are key=value, got {pair!r}")
        lowered = value.lower()
        out[key] = (
            int(value)
            if value.isascii() and value.lstrip("-").isdigit() and len(value) < 19
            else {"true": True, "false": False}.get(lowered, value)
        )
    return out


async def _advise(
    args: argparse.Namespace,
    settings: Settings,
    make: AppFactory,
    schema: str,
    params: dict[str, Any],
) -> dict[str, Any]:
    deadline: float = anyio.current_time() + args.timeout  # --timeout bounds the whole command

    def left() -> float:
        return max(0.0, deadline - anyio.current_time())

    app = make(args, settings)
    async with app.agent as agent:
        try:  # (the wallets a ticket's check or a redemption opened are closed at the end)
            advisor = app.advisor
            cmd, _ = await advisor.advise(  # (a ticket named is checked at its mint first)
                args.node,
                schema,
                args.action,
                params,
                dry_run=args.dry_run,
                ticket=args.ticket,
                wait=False,
                timeout_s=left(),
            )
            if not args.json:
                mode = " (dry run)" if args.dry_run else ""
                print(inline(f"sent {cmd.command_id}: {schema} {args.action}{mode}"), flush=True)
            first = await advisor.wait_for(cmd.command_id, left(), final=False)
            if first is not None and first.status.value == "queued" and args.wait:
                if not args.json:
                    waiting = inline(str(first.result.get("waiting_for")))  # the node's words
                    print(f"queued: {waiting} ...", flush=True)
                first = await advisor.wait_for(cmd.command_id, left(), final=True) or first
            await agent.flush(min(left(), agent.relays.publish_timeout_s))
            paid = None
            if first is not None and first.preimage:  # the receipt opened an escrow ticket
                await app.escrow.step()  # redeem at once (a running `hive-agent run` would too)
                paid = first.preimage
            return {
                "command_id": cmd.command_id,
                "receipt": None if first is None else first.model_dump(mode="json"),
                "preimage": paid,
            }
        finally:
            await app.close()


def _receipt_text(r: dict[str, Any] | None) -> str:
    if r is None:
        return "no receipt yet (the command stays in the outbox and the node's queue)"
    if r["error"]:
        return f"{r['status']}: {r['error']['code']}: {r['error']['message']}"
    return f"{r['status']} (danger {r['danger']}): {json.dumps(r['result'], sort_keys=True)}"


def _failure(r: dict[str, Any] | None, args: argparse.Namespace) -> HiveError | None:
    """What went wrong, as a typed error (its exit status), or None for an answer: a receipt,
    or a 'queued' one unless --wait asked for the final receipt."""
    if r is None or (r["status"] == "queued" and args.wait):
        waited = "no receipt" if r is None else "no final receipt (still queued)"
        return NoReceipt(f"{waited} within {args.timeout:g} s")
    if r["error"] is not None and r["status"] != "queued":
        what = f"{r['schema_ref']} {r['action']}"
        return CommandRefused(f"the node refused {what} ({r['error']['code']})")
    return None


def _check_credential(settings: Settings, node: str, schema: str) -> None:
    """The credential we hold for `node` must allow `schema` (the node's own test), checked
    before connecting: UNAUTHORIZED without one, RESTRICTED outside it."""
    grant = repo.active_held(Store(settings.store_file), node, SystemClock().now())
    if grant is None:
        raise Unauthorized(f"we hold no valid credential for node {node[:16]}…")
    if not grant.credential.allows(schema):
        raise Restricted(f"the credential does not allow {schema}")


def cmd_advise(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    schema = args.schema if args.schema.startswith("hive:") else f"hive:{args.schema}/v1"
    params = _params(args.params)
    # the node's own check (same code), made first: nothing is sent that it would refuse
    schemas.parse_params(schemas.lookup(schema, args.action), params)
    _check_credential(settings, args.node, schema)
    result = anyio.run(_advise, args, settings, make, schema, params, backend="asyncio")
    failure = _failure(result["receipt"], args)
    if failure is not None:
        result["error"] = failure.to_dict()
    emit(result, _receipt_text(result["receipt"]))
    if failure is not None and not args.json:
        raise failure  # one `error: CODE: …` line on stderr, and its exit status
    return 0 if failure is None else exit_code_of(failure)


# --- receipts ---------------------------------------------------------------------------------


def cmd_receipts_list(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    held = repo.held_receipts(Store(settings.store_file), args.node)
    emit({"receipts": [r.model_dump(mode="json") for r in held]}, views.receipts(held))
    return 0


def cmd_receipts_verify(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    held = repo.held_receipts(Store(settings.store_file), args.node)
    chains: dict[str, list[receipt.Receipt]] = {}
    for r in held:
        chains.setdefault(r.credential_id, []).append(r)
    for chain in chains.values():
        receipt.verify_chain(chain)  # raises a typed error naming the first problem
    counts = {cid: len(c) for cid, c in chains.items()}
    emit(
        {"verified": counts},
        "\n".join(f"{cid}: {n} receipts, chain complete and signed" for cid, n in counts.items())
        or "no receipts",
    )
    return 0


# --- parsers ----------------------------------------------------------------------------------


def register(sub: Any, relay_opt: argparse.ArgumentParser, bind: Bind) -> None:
    """node, credential, approvals, advise and receipts."""
    node = sub.add_parser("node", parents=[relay_opt], help="run the node side of advisor commands")
    node.add_argument("--cln-rpc", help="lightningd's RPC socket (default: a simulated node)")
    node.add_argument("--sim-state", help="where the simulated network is kept (default: home)")
    node.add_argument("--sim-nodes", type=integer, default=5)
    node.add_argument("--seed", type=integer, default=1)
    node.add_argument("--policy", help="policy.json (default: home)")
    node.add_argument("--seconds", type=positive, help="stop after this long")
    node.set_defaults(func=cmd_node)
    _register_credential(sub, relay_opt, bind)
    _register_approvals(sub)
    _register_advise(sub, relay_opt, bind)
    catalogue.register(sub)
    rec = sub.add_parser("receipts", help="receipts held (advisor side)").add_subparsers(
        required=True, metavar="ACTION"
    )
    for name, func in (("list", cmd_receipts_list), ("verify", cmd_receipts_verify)):
        p = rec.add_parser(name, help=f"{name} receipts")
        p.add_argument("--node", type=pubkey)
        p.set_defaults(func=func)


def _register_credential(sub: Any, relay_opt: argparse.ArgumentParser, bind: Bind) -> None:
    cred = sub.add_parser("credential", help="management credentials").add_subparsers(
        required=True, metavar="ACTION"
    )
    grant = cred.add_parser("grant", parents=[relay_opt], help="grant an advisor a credential")
    grant.add_argument("advisor", type=pubkey, help="the advisor (hex, npub1… or nprofile1…)")
    grant.add_argument("--tier", choices=[t.value for t in Tier], default="standard")
    grant.add_argument(
        "--schema", action="append", required=True, help="e.g. 'hive:fee-policy/*' (repeatable)"
    )
    grant.add_argument("--max-fee-change-pct", type=integer, default=50)
    grant.add_argument("--max-rebalance-sats", type=sats, default=1_000_000, help="e.g. 1M")
    grant.add_argument("--max-daily-actions", type=integer, default=100)
    grant.add_argument("--days", type=integer, default=90, help="validity (at most 730)")
    grant.add_argument("--policy", help=argparse.SUPPRESS)
    grant.set_defaults(func=bind(cmd_credential_grant))
    listing = cred.add_parser("list", help="credentials granted and held")
    listing.set_defaults(func=cmd_credential_list)
    revoke = cred.add_parser("revoke", parents=[relay_opt], help="revoke a credential now")
    revoke.add_argument("credential_id", type=id_prefix, help="credential id or unique prefix")
    revoke.add_argument("--policy", help=argparse.SUPPRESS)
    revoke.set_defaults(func=bind(resolving("credential_id", "credential", cmd_credential_revoke)))


def _register_approvals(sub: Any) -> None:
    appr = sub.add_parser("approvals", help="commands waiting for the operator").add_subparsers(
        required=True, metavar="ACTION"
    )
    appr.add_parser("list", help="what waits").set_defaults(func=cmd_approvals_list)
    for name, func in (("approve", cmd_approve), ("reject", cmd_reject), ("confirm", cmd_confirm)):
        vote = appr.add_parser(name, help=f"{name} a waiting command")
        vote.add_argument("id", type=id_prefix, help="command id or unique prefix")
        vote.set_defaults(func=resolving("id", "command", func))


def _register_advise(sub: Any, relay_opt: argparse.ArgumentParser, bind: Bind) -> None:
    adv = sub.add_parser("advise", parents=[relay_opt], help="send a command to a node")
    adv.add_argument("node", type=pubkey, help="the node agent (hex, npub or nprofile)")
    adv.add_argument("schema", help="e.g. fee-policy or hive:fee-policy/v1")
    adv.add_argument("action")
    adv.add_argument("params", nargs="*", help="key=value")
    adv.add_argument("--dry-run", action="store_true")
    adv.add_argument(
        "--wait", action="store_true", help="wait through approval for the final receipt"
    )
    adv.add_argument("--timeout", type=positive, default=30)
    adv.add_argument(
        "--ticket", type=id_prefix, help="the escrow ticket (or id prefix) that pays for it"
    )
    adv.set_defaults(func=bind(resolving("ticket", "ticket", cmd_advise, unknown_ok=True)))
