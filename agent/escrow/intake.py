"""The tickets an advisor keeps: what it checks of a ticket sent to it before it is stored.

A ticket must pay this agent, come from the node that funds it (and gets the refund), be at
one of this agent's mints, name no credential that another node granted, be locked exactly as
its parts say (NUT-14, checked proof by proof) and carry no lock another held ticket carries
(the same ecash cannot pay twice).  Held tickets are bounded in the store: per node, those
with a part still locked; in all, those naming no credential this agent holds (kept, since
its grant may still be on the way).  RATE_LIMITED is not remembered: the ticket is read again
once there is room.
"""

from __future__ import annotations

from agent.escrow.mint import normalize
from agent.store import Tx
from agent.store import escrow as repo
from events import escrow
from events.errors import MintNotAllowed, RateLimited, TicketInvalid, Unauthorized
from events.escrow import Ticket

MAX_LIVE_PER_NODE = 100  # tickets held from one node with a part still locked
MAX_UNVOUCHED = 100  # tickets held that name no credential this agent holds


def admit(tx: Tx, ticket: Ticket, *, sender: str, me: str, mints: list[str]) -> None:
    """Raise the typed refusal of the first check `ticket` fails; None if it may be kept."""
    if ticket.advisor != me:
        raise Unauthorized("this ticket pays another advisor")
    if ticket.node != sender or ticket.refund_pubkey != sender:
        raise Unauthorized("a ticket must come from the node that funds it")
    if normalize(ticket.mint) not in mints:
        raise MintNotAllowed(f"{ticket.mint} is not one of this agent's mints")
    cred = repo.credential_of(tx, ticket.credential_id)
    if cred is not None and cred != (ticket.node, "held"):
        raise Unauthorized("the ticket names a credential its node did not grant us")
    if repo.live_tickets_from(tx, ticket.node) >= MAX_LIVE_PER_NODE:
        raise RateLimited(f"{MAX_LIVE_PER_NODE} tickets of this node are still locked here")
    if cred is None and repo.unvouched_tickets(tx) >= MAX_UNVOUCHED:
        raise RateLimited(f"{MAX_UNVOUCHED} tickets naming no credential we hold are here")
    escrow.check_locks(ticket)
    for part in ticket.parts:
        held = repo.part_by_hash(tx, "payee", part.lock_hash)
        if held is not None and held["ticket_id"] != ticket.ticket_id:
            raise TicketInvalid(
                f"part {part.index}'s lock is already held in ticket {held['ticket_id']}"
            )
