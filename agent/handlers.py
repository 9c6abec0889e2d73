"""The transport's own handlers for inbound events (profiles, relay lists, gift wraps, notes):
each runs inside the pipeline's transaction, writes its effect through `Tx`, and raises a typed
error to refuse.  Gift wraps are opened here (after the flood limit) and their rumors dispatched
by kind to the components' rumor handlers.
"""

from __future__ import annotations

import time

import nostr_sdk as sdk

from agent.clock import Clock
from agent.component import Routes, Wiring
from agent.inbound import Handler, RumorHandler
from agent.ratelimit import WrapGuard
from agent.store import Tx
from events import agent_info, nip13, nip59, note, relay_lists
from events.base import NostrEvent
from events.errors import HiveError, PowTooLow, RateLimited, WrongKind
from events.kinds import Kind
from events.nip59 import Unwrapped


def on_agent_info(clock: Clock) -> Handler:
    def handle(event: NostrEvent, tx: Tx) -> None:
        info = agent_info.parse(event, now=clock.now())
        tx.save_profile(info.author, info.created_at, info.id, info.payload.model_dump_json())

    return handle


def on_relay_list(event: NostrEvent, tx: Tx) -> None:
    if event.kind == Kind.RELAY_LIST:
        relays, bits = relay_lists.parse_relay_list(event), 0
    else:
        relays, bits = relay_lists.parse_dm_relays(event), relay_lists.dm_pow(event)
    tx.save_relay_list(event.pubkey, event.kind, event.created_at, relays, bits)


NOTES_PER_SENDER_PER_DAY = 100
NOTES_PER_DAY = 1000


def on_note(clock: Clock) -> RumorHandler:
    """Store a note — at most 100 a day from one sender and 1,000 a day from all together
    (each may be 28 KiB and fresh keys are free: unbounded, strangers filled the store by the
    gigabyte a day); past that RATE_LIMITED."""

    def handle(opened: Unwrapped, tx: Tx) -> None:
        msg = note.parse(opened.rumor, now=clock.now()).payload
        day = tx.now - 86400
        if tx.notes_since(day, opened.sender) >= NOTES_PER_SENDER_PER_DAY:
            raise RateLimited(f"at most {NOTES_PER_SENDER_PER_DAY} notes a day from one sender")
        if tx.notes_since(day) >= NOTES_PER_DAY:
            raise RateLimited(f"at most {NOTES_PER_DAY:,} notes a day")
        if tx.claim_msg_id(opened.sender, msg.msg_id):  # same note re-sent: applied once
            tx.add_note(msg.msg_id, opened.sender, msg.text, msg.reply_to)

    return handle


def on_gift_wrap(
    keys: sdk.Keys, clock: Clock, rumors: dict[int, RumorHandler], guard: WrapGuard
) -> Handler:
    def handle(event: NostrEvent, tx: Tx) -> None:
        if guard.min_pow and nip13.leading_zero_bits(event.id) < guard.min_pow:
            raise PowTooLow(f"gift wraps to this agent need {guard.min_pow} bits of work")
        try:
            seal = nip59.open_wrap(keys, event, now=clock.now(), admit=admit)
        except RateLimited:
            raise
        except HiveError:
            _count_failure(guard)
            raise
        try:
            opened = nip59.open_seal(keys, seal, event.id)
        except HiveError:
            _count_failure(guard)
            raise
        handler = rumors.get(opened.rumor.kind)
        if handler is None:
            raise WrongKind(f"no handler for private messages of kind {opened.rumor.kind}")
        handler(opened, tx)

    def admit(sender: str) -> None:
        if not guard.admit(sender, time.monotonic()):
            raise RateLimited("too many messages from senders this agent does not know")

    handle.verifies_signature = True  # type: ignore[attr-defined]  # see Inbound._one
    return handle


def _count_failure(guard: WrapGuard) -> None:
    """Spend the budget for wraps that do not open; past it, refuse without remembering."""
    if not guard.failed(time.monotonic()):
        raise RateLimited("too many gift wraps that do not open") from None


def core_wiring(
    keys: sdk.Keys, clock: Clock, rumors: dict[int, RumorHandler], guard: WrapGuard
) -> Wiring:
    """The handlers every agent runs: profiles, relay lists, notes, and the gift-wrap opener,
    which dispatches on `rumors` (the table the agent fills from its components)."""
    return Wiring(
        handlers={
            Kind.AGENT_INFO: on_agent_info(clock),
            Kind.RELAY_LIST: on_relay_list,
            Kind.DM_RELAYS: on_relay_list,
            Kind.GIFT_WRAP: on_gift_wrap(keys, clock, rumors, guard),
        },
        rumors={Kind.NOTE: on_note(clock)},
    )


def core_routes(keys: sdk.Keys, clock: Clock, guard: WrapGuard | None = None) -> Routes:
    """The transport's own routing tables alone (for tools and tests that feed a pipeline)."""
    routes = Routes()
    routes.add(core_wiring(keys, clock, routes.rumors, guard or WrapGuard()))
    return routes
