"""What the payee checks of a held ticket's ecash at its mint, before relying on it.

A ticket's shape and locks are checked when it arrives (intake.py), inside the inbound
transaction; whether its proofs are real ecash needs the mint, so it is checked afterwards,
by the advisor's running agent (`Escrow.step`) or at once by `hive-agent advise --ticket`:

- every proof carries a DLEQ proof (NUT-12) that verifies against the mint's key for its
  amount in its keyset: the mint signed it (made-up proofs were found only at redemption,
  after the work was done);
- that keyset is in sat (a proof from a keyset in msat or another currency would be worth
  something else than the ticket says);
- the mint says every proof is unspent (NUT-07): proofs already redeemed or refunded
  elsewhere pay nothing.

A mint that cannot be reached leaves the ticket unchecked (tried again); a mint that answers
that it does not know the keyset fails it.  The verdict is stored with the ticket.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agent.store import escrow as repo
from events import dleq
from events.errors import MintRefused, NotFound, TicketInvalid
from events.escrow import Ticket

if TYPE_CHECKING:
    from agent.escrow.service import Escrow
    from agent.escrow.wallet import CashuWallet

log = logging.getLogger("hive.escrow")
OK = "ok"

# (mint, keyset id) → (unit, {amount: key}), or why the mint would not serve it
Keysets = dict[tuple[str, str], tuple[str, dict[int, str]] | str]


async def _keys(wallet: CashuWallet, cache: Keysets, keyset_id: str) -> dict[int, str]:
    slot = (wallet.mint_url, keyset_id)
    if slot not in cache:
        try:
            cache[slot] = await wallet.keyset(keyset_id)
        except MintRefused as refused:
            if "keyset" not in refused.message.lower():
                raise  # (an error of the mint's own, not an answer about this keyset)
            cache[slot] = refused.message  # remembered: a flood of them asks once
    found = cache[slot]
    if isinstance(found, str):
        raise TicketInvalid(f"the mint does not serve keyset {keyset_id}: {found}")
    unit, keys = found
    if unit != "sat":
        raise TicketInvalid(f"keyset {keyset_id} is in {unit}, not sat")
    return keys


async def check_ecash(ticket: Ticket, wallet: CashuWallet, cache: Keysets) -> None:
    """Raise TicketInvalid naming the first proof that is not the mint's unspent sat ecash;
    MintUnavailable or MintRefused (of a state check) if the mint cannot tell now."""
    for part in ticket.parts:
        for n, proof in enumerate(part.proofs):
            where = f"part {part.index}'s proof {n} ({proof.amount} sat)"
            if proof.dleq is None:  # (refused on arrival: events.escrow.check_locks)
                raise TicketInvalid(f"{where} carries no DLEQ proof (NUT-12)")
            key = (await _keys(wallet, cache, proof.id)).get(proof.amount)
            if key is None:
                raise TicketInvalid(f"{where}: keyset {proof.id} has no key for that amount")
            if not dleq.verify_proof(proof.secret, proof.C, proof.dleq, key):
                raise TicketInvalid(f"{where} was not signed by the mint (its DLEQ proof fails)")
        states = await wallet.states(part.proofs)
        spent = sorted({s["state"] for s in states} - {"unspent"})
        if spent:
            raise TicketInvalid(f"part {part.index}'s ecash is already {', '.join(spent)}")


async def check_held(escrow: Escrow, ticket_id: str, _part: int = -1) -> str:
    """Check a held ticket's ecash now and store the verdict: OK, or `CODE: message` (counted,
    logged).  A mint that cannot tell raises (MintUnavailable, MintRefused): tried again."""
    found = repo.ticket(escrow.agent.store, ticket_id)
    if found is None or found[1] != "payee":
        raise NotFound(f"no ticket {ticket_id} is held by this agent")
    ticket = found[0]
    wallet = await escrow.wallet(ticket.mint)  # one of our mints: intake.admit checked it
    try:
        await check_ecash(ticket, wallet, escrow.keysets)
        verdict = OK
    except TicketInvalid as error:
        verdict = str(error)
        log.warning("escrow: ticket %s from %s refused: %s", ticket_id, ticket.node[:16], error)
    with escrow.agent.store.transaction(escrow.now) as tx:
        repo.set_checked(tx, ticket_id, verdict)
        if verdict != OK:
            tx.count_errors({TicketInvalid.code: 1})
    return verdict


async def require_checked(escrow: Escrow, ticket_id: str) -> None:
    """Before a command names a held ticket (`advise --ticket`): its ecash passed the check,
    made now if it was not yet; TicketInvalid if it failed.  A ticket not held here (it may
    still be on the way) passes: the node's receipt is what pays."""
    verdict = repo.checked(escrow.agent.store, ticket_id)
    held = repo.ticket(escrow.agent.store, ticket_id)
    if held is not None and held[1] == "payee" and verdict is None:
        verdict = await check_held(escrow, ticket_id)
    if verdict is not None and verdict != OK:
        reason = verdict.removeprefix(f"{TicketInvalid.code}: ")
        raise TicketInvalid(f"ticket {ticket_id} does not pay: {reason}")
