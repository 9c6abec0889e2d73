"""What the payee checks of a held ticket's ecash at its mint, before relying on it.

A ticket's shape and locks are checked when it arrives (intake.py), inside the inbound
transaction; whether its proofs are real ecash needs the mint, so it is checked afterwards,
by the advisor's running agent (`Escrow.step`, a few seconds a pass) or at once when a command
names it (`AdvisorService.advise`, `hive-agent advise --ticket`):

- every proof carries a DLEQ proof (NUT-12) that verifies against the mint's key for its
  amount in its keyset: the mint signed it (made-up proofs were found only at redemption,
  after the work was done);
- that keyset is in sat (a proof from a keyset in msat or another currency would be worth
  something else than the ticket says);
- the mint says every proof of a part still locked here is unspent (NUT-07): proofs already
  redeemed or refunded elsewhere pay nothing.  A proof pending at the mint (a swap under
  way) is asked about again later;
- what redeeming costs: a mint may charge a fee per proof spent (NUT-02 `input_fee_ppk`),
  which the payee pays out of the part, as every Cashu receiver does.  A part the fee would
  eat whole is refused; otherwise the fee is part of the verdict ("ok: …"), shown with the
  ticket;
- no keyset is retired (NUT-02 `final_expiry`) before the part's locktime: its ecash could
  stop being redeemable while the payee may still redeem it.

A mint that cannot be reached, or cannot tell, leaves the ticket unchecked (tried again); the
mint's own answer that it does not serve a keyset (NUT error 12001, or a keyset id of a
version no mint issues) fails it, and is remembered for a while so a flood of such tickets
asks once.  The verdict is stored with the ticket; tickets held before these checks existed
are `legacy` (their proofs carry no DLEQ proof) and are taken as they were.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio

from agent.store import escrow as repo
from events import dleq
from events.errors import (
    MintRefused,
    MintUnavailable,
    NotFound,
    TicketInvalid,
)
from events.escrow import Ticket, fee_of

if TYPE_CHECKING:
    from agent.escrow.service import Escrow
    from agent.escrow.wallet import CashuWallet, Keyset

log = logging.getLogger("hive.escrow")
OK, LEGACY = "ok", "legacy"
FEES = "ok: "  # a verdict "ok: <n> sat of mint fees to redeem" passes too
REFUSAL_TTL_S = 600  # how long the mint's "no such keyset" is believed without asking again
CHECK_TIMEOUT_S = 20.0  # a check a command waits for
ARRIVAL_WAIT_S = 5.0  # for a ticket a command names that has not arrived yet

# (mint, keyset id) → the keyset, or (when, why) the mint would not serve it
Keysets = dict[tuple[str, str], "Keyset | tuple[float, str]"]


def _unserved(refused: MintRefused) -> bool:
    """The mint's answer that it has no such keyset (NUT error 12001, as the wallet library
    words it), or a keyset id of a version no mint issues — not an error of its own."""
    text = refused.message
    return text.rstrip().endswith("(Code: 12001)") or text.startswith("Unsupported keyset version")


async def _keyset(wallet: CashuWallet, cache: Keysets, keyset_id: str) -> Keyset:
    slot = (wallet.mint_url, keyset_id)
    found = cache.get(slot)
    if found is None or (isinstance(found, tuple) and time.monotonic() > found[0]):
        try:
            found = cache[slot] = await wallet.keyset(keyset_id)
        except MintRefused as refused:
            if not _unserved(refused):
                raise  # (the mint cannot tell now: asked again later)
            found = cache[slot] = (time.monotonic() + REFUSAL_TTL_S, refused.message)
    if isinstance(found, tuple):
        raise TicketInvalid(f"the mint does not serve keyset {keyset_id}: {found[1]}")
    if found.unit != "sat":
        raise TicketInvalid(f"keyset {keyset_id} is in {found.unit}, not sat")
    return found


async def check_ecash(
    ticket: Ticket, wallet: CashuWallet, cache: Keysets, locked: set[int] | None = None
) -> int:
    """The mint's fees, in sat, for redeeming the parts still locked here (`locked`: part
    indexes; None: all).  TicketInvalid names the first proof that is not the mint's sat
    ecash, or whose keyset is retired before its part's locktime, or the first locked part
    whose fee eats it or whose ecash is spent; MintUnavailable or MintRefused if the mint
    cannot tell now (a pending proof included)."""
    fees = 0
    for part in ticket.parts:
        ppks = []
        for n, proof in enumerate(part.proofs):
            where = f"part {part.index}'s proof {n} ({proof.amount} sat)"
            if proof.dleq is None:  # (refused on arrival: events.escrow.check_locks)
                raise TicketInvalid(f"{where} carries no DLEQ proof (NUT-12)")
            keyset = await _keyset(wallet, cache, proof.id)
            key = keyset.keys.get(proof.amount)
            if key is None:
                raise TicketInvalid(f"{where}: keyset {proof.id} has no key for that amount")
            if not dleq.verify_proof(proof.secret, proof.C, proof.dleq, key):
                raise TicketInvalid(f"{where} was not signed by the mint (its DLEQ proof fails)")
            if keyset.final_expiry is not None and keyset.final_expiry < part.locktime:
                raise TicketInvalid(
                    f"{where}: the mint retires keyset {proof.id} at {keyset.final_expiry}, "
                    f"before the part's locktime {part.locktime}"
                )
            ppks.append(keyset.fee_ppk)
        fee = fee_of(ppks)
        if locked is not None and part.index not in locked:
            continue  # (redeemed, or on its way: its fee is paid or being paid)
        if fee >= part.amount_sat:
            raise TicketInvalid(
                f"part {part.index} pays nothing: redeeming its {part.amount_sat:,} sat costs "
                f"{fee:,} sat in mint fees"
            )
        fees += fee
    # one state check for every part still locked (the others are redeemed, or on their way
    # to be: spent by us, not by the funder)
    asked = [part for part in ticket.parts if locked is None or part.index in locked]
    answers = iter(await wallet.states([proof for part in asked for proof in part.proofs]))
    for part in asked:
        states = {next(answers)["state"] for _ in part.proofs}
        if "pending" in states:
            raise MintRefused(
                f"ticket {ticket.ticket_id}'s part {part.index} is pending at the mint (a swap"
                " under way): it cannot be checked now"
            )
        if states - {"unspent"}:
            raise TicketInvalid(
                f"part {part.index}'s ecash is already {', '.join(sorted(states - {'unspent'}))}"
            )
    return fees


def _ok(verdict: str | None) -> bool:
    """The check found the ecash good ('ok', or 'ok: <n> sat of mint fees to redeem')."""
    return verdict == OK or (verdict or "").startswith(FEES)


def passed(verdict: str | None) -> bool:
    """A stored verdict that lets a command rely on its ticket."""
    return _ok(verdict) or verdict == LEGACY


async def check_held(
    escrow: Escrow, ticket_id: str, _part: int = -1, *, again: bool = False
) -> str:
    """Check a held ticket's ecash now, unless a verdict is stored (`again`: anyway), and
    store the verdict: OK, or `CODE: message` (counted, logged).  A mint that cannot tell
    raises (MintUnavailable, MintRefused): tried again.  One check of a ticket at a time: the
    loop's and a command's wait for each other, and the second takes the first's verdict
    (not a second mint request, nor a refusal counted twice)."""
    lock = escrow.checking.setdefault(ticket_id, anyio.Lock())
    try:
        async with lock:
            verdict = None if again else repo.checked(escrow.agent.store, ticket_id)
            return verdict if verdict is not None else await _check(escrow, ticket_id)
    finally:
        if not lock.locked() and not lock.statistics().tasks_waiting:
            escrow.checking.pop(ticket_id, None)


async def _check(escrow: Escrow, ticket_id: str) -> str:
    found = repo.ticket(escrow.agent.store, ticket_id)
    if found is None or found[1] != "payee":
        raise NotFound(f"no ticket {ticket_id} is held by this agent")
    ticket = found[0]
    locked = {
        int(p["part_index"])
        for p in repo.parts(escrow.agent.store, ticket_id)
        if p["state"] == "locked"
    }
    wallet = await escrow.wallet(escrow.allowed_mint(ticket.mint))  # (configuration: raised)
    refusal: TicketInvalid | None = None
    try:
        fees = await check_ecash(ticket, wallet, escrow.keysets, locked)
        verdict = OK if not fees else f"{FEES}{fees:,} sat of mint fees to redeem"
    except TicketInvalid as error:
        refusal, verdict = error, str(error)
        log.warning("escrow: ticket %s from %s refused: %s", ticket_id, ticket.node[:16], error)
    with escrow.agent.store.transaction(escrow.now) as tx:
        repo.set_checked(tx, ticket_id, verdict)
        if refusal is not None:
            tx.count_errors({refusal.code: 1})
    return verdict


async def require_checked(
    escrow: Escrow, ticket_id: str, timeout_s: float = CHECK_TIMEOUT_S
) -> None:
    """Before a command names a ticket: it is held here (as its payee) and its ecash passed
    the check, made now if it was not yet; all within `timeout_s`.  NotFound, TicketInvalid
    or MintUnavailable otherwise.  A ticket held before these checks (`legacy`) passes."""
    deadline = anyio.current_time() + timeout_s
    held = repo.ticket(escrow.agent.store, ticket_id)
    with anyio.move_on_after(min(timeout_s, ARRIVAL_WAIT_S)):
        while held is None:  # (a CLI has just subscribed: the ticket may be on its way)
            await anyio.sleep(0.1)
            held = repo.ticket(escrow.agent.store, ticket_id)
    if held is None or held[1] != "payee":
        whose = "has not reached this agent" if held is None else "is one this agent funded"
        raise NotFound(f"ticket {ticket_id} {whose}: its ecash cannot be checked as its payee")
    verdict = repo.checked(escrow.agent.store, ticket_id)
    if verdict is None:
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
            verdict = await check_held(escrow, ticket_id)
        if verdict is None:
            raise MintUnavailable(
                f"ticket {ticket_id}'s mint did not answer the check within the command's "
                f"{timeout_s:g} s"
            )
    if not passed(verdict):
        reason = verdict.removeprefix(f"{TicketInvalid.code}: ")
        raise TicketInvalid(f"ticket {ticket_id} does not pay: {reason}")


def label(role: str, checked: str | None, *, short: bool = False) -> str:
    """A ticket's verdict for people (`escrow list`/`show`, the dashboard)."""
    if role != "payee":
        return "" if short else "ours (we locked it)"
    if checked is None:
        return "unchecked" if short else "not checked at the mint yet"
    if _ok(checked):
        if short:
            return OK
        fees = checked.removeprefix(FEES)
        return "ok: signed by the mint (DLEQ), unspent, in sat" + (f"; {fees}" if fees else "")
    if checked == LEGACY:
        return LEGACY if short else "legacy: held before ecash checks (no DLEQ proofs to check)"
    return "REFUSED" if short else checked
