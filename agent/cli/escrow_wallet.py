"""`hive-agent escrow invoice|pay|send|receive|restore` and `hive-agent mint`: the wallet
against a mint with a real Lightning backend.

invoice  NUT-04: an invoice to pay, wait for it (bounded), claim the ecash; --claim QUOTE later
pay      NUT-05: pay a bolt11 invoice with ecash (fee reserve shown, change kept)
send     a cashuB token of exactly AMOUNT sat, to hand to someone
receive  swap a token's proofs into this wallet (refused for mints not configured)
restore  NUT-09/NUT-13: recover the balance from the seed (derived from the agent key)
mint     a local FakeWallet Nutshell mint to try things out, until Ctrl-C
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.cli.apps import AppFactory
from agent.cli.common import Bind, Emit
from agent.cli.types import integer, seconds, some_sats
from agent.settings import Settings
from events.errors import InvalidParams, InvoiceUnpaid

Answer = tuple[dict[str, Any], str]


def _purse() -> Any:
    """The wallet module, imported when a wallet command runs (the Cashu library takes a
    second to import: every other command starts without it)."""
    from agent.escrow import purse

    return purse


def _run(
    args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory, act: Any
) -> int:
    from agent.cli.escrow import _run as run_escrow

    async def settled(a: argparse.Namespace, app: Any) -> Answer:
        if not getattr(a, "claim", None):  # claim paid quotes, settle melts a run left open
            await _purse().settle(app.escrow)
        return await act(a, app)  # type: ignore[no-any-return]

    return run_escrow(args, settings, emit, make, settled)


def _say(args: argparse.Namespace, text: str) -> None:
    """A line for the person at the terminal while the command runs (stderr under --json)."""
    print(text, file=sys.stderr if args.json else sys.stdout, flush=True)


# --- invoice ------------------------------------------------------------------------------


def _claimed(done: dict[str, Any]) -> Answer:
    body = {k: done[k] for k in ("quote", "mint", "amount", "minted")}
    if done.get("already_claimed"):
        return {**body, "already_claimed": True}, f"quote {done['quote']} was already claimed"
    return body, f"minted {done['minted']:,} sat at {done['mint']} (quote {done['quote']})"


def _unpaid(issued: dict[str, Any]) -> Answer:
    body = {**issued, "minted": 0}
    return body, (
        f"invoice issued, not yet paid: {issued['request']}\n"
        f"claim it once paid: hive-agent escrow invoice --claim {issued['quote']}"
    )


async def issue_and_wait(args: argparse.Namespace, app: Any, amount: int) -> Answer:
    issued = await _purse().invoice(app.escrow, amount, args.mint)
    if args.timeout > 0:
        _say(args, f"pay this invoice ({amount:,} sat, quote {issued['quote']}):")
        _say(args, issued["request"])

    ticked = []

    def tick(waited: float) -> None:  # one progress line, rewritten in place, on stderr
        ticked.append(waited)
        print(f"\rwaiting for payment… {waited:.0f}/{args.timeout:.0f} s", end="", file=sys.stderr)

    state = await _purse().wait_paid(app.escrow, issued["quote"], args.timeout, tick)
    if ticked:
        print(file=sys.stderr, flush=True)
    if state == "unpaid":
        return _unpaid(issued)
    return _claimed(await _purse().claim(app.escrow, issued["quote"]))


async def _invoice(args: argparse.Namespace, app: Any) -> Answer:
    if args.claim:
        return _claimed(await _purse().claim(app.escrow, args.claim))
    if args.amount is None:
        raise InvalidParams("give an amount, or --claim QUOTE")
    answer = await issue_and_wait(args, app, args.amount)
    if answer[0]["minted"] == 0 and args.timeout > 0:
        raise InvoiceUnpaid(
            f"not paid within {args.timeout:.0f} s; once paid:"
            f" hive-agent escrow invoice --claim {answer[0]['quote']}"
        )
    return answer


def cmd_invoice(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    return _run(args, settings, emit, make, _invoice)


# --- pay ----------------------------------------------------------------------------------


async def _pay(args: argparse.Namespace, app: Any) -> Answer:
    done = await _purse().pay(app.escrow, args.bolt11, args.mint)
    body = {k: done[k] for k in ("quote", "mint", "amount", "fee_reserve", "paid", "change")}
    body |= {"state": done["state"], "preimage": done["preimage"]}
    if done["state"] != "paid":
        return body, f"payment {done['state']} (quote {done['quote']}); checked again on next use"
    swap_fee = done.get("swap_fee", 0)
    mint_fees = f", {swap_fee:,} sat of mint fees" if swap_fee else ""
    return body | {"swap_fee": swap_fee}, (
        f"paid {done['amount']:,} sat (fee reserve {done['fee_reserve']:,} sat,"
        f" {done['change']:,} sat back as change{mint_fees}; {done['paid']:,} sat spent)"
    )


def cmd_pay(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    return _run(args, settings, emit, make, _pay)


# --- tokens -------------------------------------------------------------------------------


async def _send(args: argparse.Namespace, app: Any) -> Answer:
    done = await _purse().send(app.escrow, args.amount, args.mint)
    return done, done["token"]


def cmd_send(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    return _run(args, settings, emit, make, _send)


async def _receive(args: argparse.Namespace, app: Any) -> Answer:
    from agent.escrow.lightning import MAX_TOKEN_CHARS  # (imports the Cashu library)

    # stdin is read up to one character past the longest token: `cat /dev/zero | … -` ends
    text = sys.stdin.read(MAX_TOKEN_CHARS + 1) if args.token in ("-",) else args.token
    done = await _purse().receive(app.escrow, text, trust_mint=args.trust_mint)
    fee = f" ({done['fee']:,} sat of mint fees)" if done.get("fee") else ""
    return done, f"received {done['received']:,} sat at {done['mint']}{fee}"


def cmd_receive(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    return _run(args, settings, emit, make, _receive)


async def _restore(args: argparse.Namespace, app: Any) -> Answer:
    done = await _purse().restore(app.escrow)
    spent = done.get("found_spent", {})
    lines = [
        f"{m}: {v:,} sat restored" + (f", {spent[m]:,} sat found spent" if spent.get(m) else "")
        for m, v in done["restored"].items()
    ]
    return done, "\n".join(lines) or "no mints configured"


def cmd_restore(args: argparse.Namespace, settings: Settings, emit: Emit, make: AppFactory) -> int:
    from agent.cli.escrow import _run as run_escrow

    return run_escrow(args, settings, emit, make, _restore)


# --- a local mint -------------------------------------------------------------------------


def cmd_mint(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    from agent.escrow.mint import MintProcess

    workdir = args.dir or Path(tempfile.mkdtemp(prefix="hive-mint-"))
    mint = MintProcess(workdir, args.port, delay_s=args.delay)
    url = mint.start()
    emit({"url": url, "dir": str(workdir)}, f"mint (FakeWallet) at {url}  (Ctrl-C stops it)")
    try:
        while mint.running():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        mint.stop()
    return 0


# --- parsers ------------------------------------------------------------------------------


def register(sub: Any, esc: Any, relay_opt: argparse.ArgumentParser, bind: Bind) -> None:
    p = esc.add_parser("invoice", parents=[relay_opt], help="an invoice to mint ecash (NUT-04)")
    p.add_argument("amount", type=some_sats, nargs="?", help="sat")
    p.add_argument("--claim", metavar="QUOTE", help="claim an earlier quote once paid")
    p.add_argument("--timeout", type=seconds, default=300, help="seconds to wait (0: check once)")
    p.add_argument(
        "--no-wait", dest="timeout", action="store_const", const=-1.0, help="issue, do not check"
    )
    p.set_defaults(func=bind(cmd_invoice))
    p = esc.add_parser("pay", parents=[relay_opt], help="pay a bolt11 invoice (NUT-05)")
    p.add_argument("bolt11")
    p.set_defaults(func=bind(cmd_pay))
    p = esc.add_parser("send", parents=[relay_opt], help="a cashuB token of AMOUNT sat")
    p.add_argument("amount", type=some_sats)
    p.set_defaults(func=bind(cmd_send))
    p = esc.add_parser("receive", parents=[relay_opt], help="swap a token into this wallet")
    p.add_argument("token", help="cashuB…/cashuA… token, or - for stdin")
    p.add_argument("--trust-mint", action="store_true", help="accept a mint not configured")
    p.set_defaults(func=bind(cmd_receive))
    p = esc.add_parser("restore", parents=[relay_opt], help="recover ecash from the seed")
    p.set_defaults(func=bind(cmd_restore))
    for name in ("invoice", "pay", "send"):
        esc.choices[name].add_argument("--mint", help="default: the first of policy.json's mints")
    m = sub.add_parser("mint", help="run a local FakeWallet Cashu mint until Ctrl-C")
    m.add_argument("--port", type=integer, default=0)
    m.add_argument("--dir", type=Path, help="its database and log (default: a temp dir)")
    m.add_argument("--delay", type=float, default=0, help="seconds before invoices are paid")
    m.set_defaults(func=cmd_mint)
