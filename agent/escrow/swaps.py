"""The final swap of a ticket part (redeem or refund), where a lost answer loses nothing."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from agent.component import Messaging
from agent.crash import crash_point
from agent.store import escrow as repo
from events.errors import InvalidParams, MintRefused
from events.escrow import CashuProof, Part, Ticket

if TYPE_CHECKING:
    from agent.escrow.wallet import CashuWallet  # imports cashu (~0.6 s): only when used

log = logging.getLogger("hive.escrow")


async def final_swap(
    host: Messaging,
    ticket: Ticket,
    part_index: int,
    row: dict[str, Any],
    wallet: CashuWallet,
    swap: Callable[[], Awaitable[list[CashuProof]]],
) -> list[CashuProof]:
    """Swap a ticket part's locked proofs into fresh ones (see `swap_once`); its attempts'
    starts are kept in the part's row."""
    async with wallet.exclusive():
        # read again under the lock: another process may have added an attempt meanwhile
        current = next(
            p for p in repo.parts(host.store, ticket.ticket_id)
            if p["part_index"] == part_index
        )  # fmt: skip
        if current["state"] != row["state"]:
            raise InvalidParams(f"part {part_index} is {current['state']} now")

        def save(starts: str) -> None:
            with host.store.transaction(host.clock.now()) as tx:
                repo.set_part(tx, ticket.ticket_id, part_index, swap_from=starts)

        what = f"part {ticket.ticket_id}/{part_index}"
        part = ticket.parts[part_index]
        return await swap_once(host, wallet, part, current.get("swap_from"), save, swap, what)


async def swap_once(
    host: Messaging,
    wallet: CashuWallet,
    part: Part,
    recorded: str | None,
    save: Callable[[str], None],
    swap: Callable[[], Awaitable[list[CashuProof]]],
    what: str,
) -> list[CashuProof]:
    """Swap `part`'s locked proofs into fresh ones, where a lost answer loses nothing; the
    caller holds the wallet's lock (no other swap, in this process or another on this home,
    moves its NUT-13 counter meanwhile).

    Where this attempt's outputs start is saved (`save`, with the starts `recorded` before)
    before the swap is sent.  If the proofs turn out spent already — a swap whose answer a
    crash, a cancel or a timeout lost — the outputs are recovered from every start any
    attempt recorded (the library's database, else the mint: NUT-09)."""
    starts = [s for s in (recorded or "").split(",") if s]
    start = await wallet.next_outputs()
    if start not in starts:
        starts.append(start)
        save(",".join(starts))
    try:
        fresh: list[CashuProof] = await swap()
        crash_point("escrow.after_swap")
        return fresh
    except MintRefused:
        states = await wallet.states(part.proofs)
        if not all(s["state"] == "spent" for s in states):
            raise
    restored: list[CashuProof] = []
    total, worth = 0, part.amount_sat - wallet.input_fee(part.proofs)  # (what its swap gave)
    for begin in starts:  # every attempt: any of them may be the one that went through
        found = await wallet.restore(begin)  # in derivation order: its outputs first
        known = repo.known_secrets(host.store, [p.secret for p in found])
        for proof in found:
            if proof.secret in known or total + proof.amount > worth:
                break  # a later swap's outputs (already ours), or more than this part
            restored.append(proof)
            known.add(proof.secret)
            total += proof.amount
    log.warning("escrow: %s was swapped already; %d sat restored from the mint", what, total)
    return restored
