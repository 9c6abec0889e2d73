"""Three checks of the kernel's frame intake (agent/fleet/kernel.py), apart so the kernel
stays one screenful per concern: whether a frame is a fact handed on rather than sent live,
whether it is authentic for the peer it came from, and whether it is of its time."""

from __future__ import annotations

from agent.fleet.component import FleetComponent, short
from events.errors import Expired, Unauthorized
from events.fleet import Message, MsgType


def handed_on(peer: str, msg: Message, owner: FleetComponent | None, oldest_live: int) -> bool:
    """A fact handed on, not sent live: signed by another member than `peer`, or by `peer`
    itself but older than any live frame may be (its author handing on its own fact by
    anti-entropy, to a member back from days away) — judged as a proof either way."""
    if msg.node != peer:
        return True
    return owner is not None and msg.type in owner.facts and msg.ts < oldest_live


def authentic(
    session: set[MsgType], peer: str, msg: Message, owner: FleetComponent | None, relayed: bool
) -> None:
    """Unauthorized unless `msg` is signed, or of a type that travels unsigned (`session`: its
    sender then is `peer`); and unless its signer is `peer`, or it is a fact handed on."""
    if not msg.signed and msg.type not in session:
        raise Unauthorized(f"a {msg.type.name} frame must be signed")
    if relayed and (owner is None or msg.type not in owner.facts):
        raise Unauthorized(f"message signed for node {short(msg.node)} arrived from {short(peer)}")


def check_clock(msg: Message, now: int, future_skew_s: int, max_age_s: int, relayed: bool) -> None:
    """A message from the future is refused; an old one only if it came live (a fact handed
    on is as old as what it proves: its replays are the component's to judge)."""
    if msg.ts > now + future_skew_s:
        raise Expired(f"the message is dated {msg.ts - now} s in the future")
    if not relayed and msg.ts < now - max_age_s:
        raise Expired(f"the message is {now - msg.ts} s old; the limit is {max_age_s} s")
