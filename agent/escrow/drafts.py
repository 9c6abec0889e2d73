"""Parts of a ticket whose funding stopped half-way: refunded once their locktime passes.

A ticket's parts are locked one swap at a time, each committed as a draft (kv
`escrow-draft:<ticket>:<part>`: the mint and the locked part) with the inputs it spent.  If a
later part cannot be locked — the mint went down, a swap was refused — the ticket is never
sent, and the parts already locked are nobody's: the advisor has no ticket and never learns a
preimage.  Once such a draft's locktime has passed (the refund path opens at the mint), the
funder's loop swaps it back with the refund key, and the proofs and the draft's removal are
committed together.  A ticket that was saved, or whose funding is still running in this
process, is never touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.escrow.swaps import swap_once
from agent.store import escrow as repo
from events.escrow import Part

if TYPE_CHECKING:
    from agent.escrow.service import Escrow

DRAFT = "escrow-draft:"


def draft(mint: str, part: Part) -> dict[str, Any]:
    """What a draft holds: enough to refund the part without its ticket."""
    return {"mint": mint, "part": part.model_dump(mode="json")}


def stranded(escrow: Escrow, grace_s: int) -> list[tuple[str, int]]:
    """(ticket id, part) of drafts past their locktime whose ticket was never saved."""
    found = []
    for key, value in repo.records(escrow.agent.store, DRAFT).items():
        ticket_id, _, index = key.partition(":")
        if ticket_id in escrow.funding or not isinstance(value, dict) or not index.isdigit():
            continue  # being funded, or a draft of an older version (no mint recorded)
        part = Part.model_validate(value["part"])
        if escrow.now < part.locktime + grace_s:
            continue  # (the cheap check first: the ticket is asked for only past it)
        if repo.ticket(escrow.agent.store, ticket_id) is None:
            found.append((ticket_id, int(index)))
    return found


async def refund(escrow: Escrow, ticket_id: str, index: int) -> None:
    """Swap a stranded part back with the refund key (as a ticket part's final swap: a lost
    answer is restored from the mint); its draft goes in the same commit as the proofs."""
    key = f"{DRAFT}{ticket_id}:{index}"
    store = escrow.agent.store
    value = store.kv(key)
    if not isinstance(value, dict):
        return
    part, mint = Part.model_validate(value["part"]), str(value["mint"])
    wallet = await escrow.wallet(mint)

    def save(starts: str) -> None:  # the attempts' starts, kept in the draft
        with store.transaction(escrow.now) as tx:
            tx.set_kv(key, {**value, "swap_from": starts})

    async with wallet.exclusive():
        value = store.kv(key)  # (again under the lock: another process may have moved it)
        if not isinstance(value, dict):
            return
        fresh = await swap_once(
            escrow.agent, wallet, part, value.get("swap_from"), save,
            lambda: wallet.refund(part.proofs), f"stranded part {ticket_id}/{index}",
        )  # fmt: skip
    with store.transaction(escrow.now) as tx:
        repo.add_proofs(tx, mint, fresh, f"refund:{ticket_id}")
        repo.forget_draft(tx, ticket_id, index)
