"""The fleet kernel: what every fleet protocol shares, and nothing any one of them owns.

Frame intake — size, type, magic, JSON, shape and signature (`events.fleet.parse_frame`; a
session frame, events/fleet/compact.py, carries no signature: only the types a component
declares `session` may, and its node is the BOLT 8 peer it came from) →
signer's node = the Lightning peer it came from → the sender's standing (not banned; a member
of our hive, except for the frame types a component accepts from strangers) → clock window →
duplicate id → the owning component, in two steps: `prepare` (reads the node, outside the lock
and the transaction, so no frame waits behind a Core Lightning RPC) and `apply` (its effects,
the seen id and any replies in one durable transaction) → an acknowledgement.  A refusal is a
typed error, counted in the store, answered with an `invalid` (or `retry_later`) ack, and
changes nothing else; a peer refused too often is muted for a minute (agent/ratelimit.py).

The per-peer outbox (durable, retried with backoff until acknowledged, at most `in_flight`
frames per peer per round) and the acknowledgements (`MSG_ACK`, handed to every component as
`on_ack`) are here too.  Nothing here holds state that is not in the store: a restart at any
point resumes from it.

A protocol plugs in as a `FleetComponent` that names the frame types it owns; see
agent/fleet/membership.py and agent/fleet/handshake.py.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import nostr_sdk as sdk

from agent import backoff
from agent.clock import Clock, SystemClock
from agent.errors import PeerNotConnected
from agent.fleet.component import (
    Effects,
    FleetComponent,
    FleetConfig,
    Ledger,
    Presence,
    Standing,
    Treatment,
    short,
)
from agent.fleet.intake import authentic, check_clock, handed_on
from agent.node.backend import NodeBackend
from agent.node.models import CustomMsg, Forward, NodeEvent, PeerConnected, PeerDisconnected
from agent.ratelimit import Strikes
from agent.store import fleet as db
from agent.store.db import Store, Tx
from events import fleet as wire
from events import lnsig
from events.crypto import pubkey_hex
from events.errors import (
    BadSignature,
    Banned,
    HiveError,
    Internal,
    InvalidPayload,
    Replayed,
)
from events.fleet import AckStatus, Message, MsgType, compact

log = logging.getLogger("hive.fleet")
BINDING_KV = "fleet_binding"
__all__ = [
    "Effects", "FleetComponent", "FleetConfig", "FleetKernel", "Ledger", "Presence", "Standing",
    "Treatment", "short",
]  # fmt: skip


class FleetKernel:
    def __init__(
        self,
        node: NodeBackend,
        store: Store,
        keys: sdk.Keys,
        *,
        clock: Clock | None = None,
        config: FleetConfig | None = None,
    ) -> None:
        self.node = node
        self.store = store
        self.keys = keys
        self.key = pubkey_hex(keys)
        self.clock = clock or SystemClock()
        self.config = config or FleetConfig()
        self.me = ""
        self.connected: set[str] = set()
        self.lock = anyio.Lock()  # one frame or operator command changes state at a time
        cfg = self.config  # peers muted for a while after too many refused frames:
        self.strikes = Strikes(cfg.refusals_per_minute, cfg.refusal_burst, cfg.mute_s)
        self.standing: Standing | None = None
        self.presence: Presence | None = None
        self.ledger: Ledger | None = None  # settlement inputs (the contribution component)
        self.treatment: Treatment | None = None  # members denied zero fees (anti-leech)
        self._components: list[FleetComponent] = []
        self._takers: list[FleetComponent] = []  # the components that take forwards
        self._routes: dict[MsgType, FleetComponent] = {}
        # frame types that travel in the compact unsigned envelope (acknowledgements of such
        # frames too): the owners' `session` declarations
        self._session: set[MsgType] = {MsgType.MSG_ACK}
        self._sending: dict[str, anyio.Lock] = {}  # one flush per peer at a time: no double sends
        self._wake = anyio.Event()

    def register(self, component: FleetComponent) -> None:
        session = component.session
        if not session <= component.owns - component.facts or session - set(compact.CODECS):
            raise ValueError("session frames are owned, not facts, and have a compact layout")
        for msg_type in component.owns:
            if msg_type in self._routes or msg_type == MsgType.MSG_ACK:
                raise ValueError(f"{msg_type.name} is owned already")
            self._routes[msg_type] = component
        self._session |= component.session
        self._components.append(component)
        if type(component).forwarded is not FleetComponent.forwarded:
            self._takers.append(component)  # it takes the node's forwards
        component.bind(self)

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self.me = (await self.node.info()).id
        self.connected = {p.id for p in await self.node.peers() if p.connected}

    async def run(self) -> None:
        """Forever: send what is due to connected peers, expire what waited too long.  Only this
        loop retries the outbox: a failed pass (the store locked past its timeout) is counted."""
        while True:
            try:
                timeout = await self._pass()
            except Exception as err:  # noqa: BLE001 — the loop never ends
                self._failed(self, "run", err)
                self._wake, timeout = anyio.Event(), 1.0
            with anyio.move_on_after(timeout):
                await self._wake.wait()

    async def _pass(self) -> float:
        """One pass of the loop; how long to wait for the next."""
        now = self.clock.now()
        with self.store.transaction(now, durable=False) as tx:
            db.expire_outbox(tx, now)
            db.prune_seen(tx, now - self.config.max_age_s - 3_600)
        for component in self._components:  # each in its own commit: a failure rolls back
            try:  # only its rows
                with self.store.transaction(now, durable=False) as tx:
                    component.housekeeping(tx, now)
            except Exception as err:  # noqa: BLE001 — one component never stops the loop
                self._failed(component, "housekeeping", err)
        for peer in sorted(self.connected):
            await self.flush(peer)
        for component in list(self._components):
            try:
                await component.tick()
            except Exception as err:  # noqa: BLE001 — one component never stops the loop
                self._failed(component, "tick", err)
        # a fresh event only now: the flushes above set the old one, and waiting on it
        # would spin this loop for as long as any peer is connected
        self._wake = anyio.Event()
        due = db.next_due(self.store, self.connected)
        cfg = self.config
        cap = min(60.0, cfg.handshake_retry_s / 2, float(cfg.gossip_gap_s))
        return cap if due is None else min(cap, max(0.05, due - self.clock.now()))

    def _failed(self, component: object, what: str, err: Exception) -> None:
        """Logged by kind only (a message may carry anything), counted, and the loop goes on."""
        code = err.code if isinstance(err, HiveError) else Internal.code
        log.warning(
            "fleet: %s.%s failed (%s); the loop goes on", type(component).__name__, what,
            type(err).__name__,
        )  # fmt: skip
        try:
            self.count(code)
        except Exception:  # noqa: BLE001 — the store itself is failing: the log says it
            log.warning("fleet: the failure could not be counted")

    async def serve(self, events: AsyncIterator[NodeEvent]) -> None:
        """Handle a node's event stream (simulator, or the plugin's hooks) until it ends."""
        async for event in events:
            await self.handle(event)

    async def handle(self, event: NodeEvent) -> None:
        """One node event; never raises (a failure is logged and counted)."""
        try:
            if isinstance(event, CustomMsg):
                if wire.is_hive_frame(event.payload) or len(event.payload) > wire.MAX_FRAME:
                    await self.receive(event.peer_id, event.payload)
            elif isinstance(event, PeerConnected):
                self.connected.add(event.peer_id)
                with self.store.transaction(self.clock.now(), durable=False) as tx:
                    db.wake_peer(tx, event.peer_id, float(self.clock.now()))
                self._wake.set()
            elif isinstance(event, PeerDisconnected):
                self.connected.discard(event.peer_id)
            elif isinstance(event, Forward):
                # to every component (the contribution ledger): its node reads first, then
                # one transaction per component; one failing never stops the stream
                for component in self._takers:
                    try:
                        prepared = await component.prepare_forward(event)
                        with self.store.transaction(self.clock.now(), durable=False) as tx:
                            component.forwarded(tx, event, prepared)
                    except Exception as err:  # noqa: BLE001 — counted, the stream goes on
                        self._failed(component, "forwarded", err)
        except Exception:
            log.exception("fleet: unexpected failure handling %s", type(event).__name__)
            self.count("INTERNAL")

    # --- inbound -------------------------------------------------------------------------

    async def receive(self, peer: str, payload: bytes) -> None:
        """One custom message from `peer` (its BOLT 8 authenticated node id)."""
        msg = self._frame_of(peer, payload)
        if msg is None:
            return
        owner = self._routes.get(msg.type)
        relayed = handed_on(peer, msg, owner, self.clock.now() - self.config.max_age_s)
        try:
            authentic(self._session, peer, msg, owner, relayed)
            if msg.type != MsgType.MSG_ACK:
                self._admissible(peer, msg, relayed)
                if owner is None:
                    raise InvalidPayload(f"{msg.type.name} is not expected here")
            # node reads next, outside the lock (no frame waits behind a lightningd RPC) —
            # but never for a frame already handled: a replay costs no RPC
            seen = owner is not None and db.seen_via(self.store, msg.node, msg.id) is not None
            skip = seen or relayed
            prepared = None if owner is None or skip else await owner.prepare(peer, msg)
        except HiveError as err:
            await self._refuse(peer, msg, err)
            return
        async with self.lock:
            try:
                if owner is None:
                    self._on_ack(peer, msg)
                    return
                self._admissible(peer, msg, relayed)  # again: a ban may have landed meanwhile
                via = db.seen_via(self.store, msg.node, msg.id)
                if via is not None:
                    # handled once only.  Seen inside a proof first: the direct copy is simply
                    # late.  Seen directly: a retry whose acknowledgement was lost, or a replay.
                    # A fact handed on again is no replay: its author's copy came first.
                    duplicate = Replayed(f"{msg.type.name} {msg.id[:12]}… was already handled")
                    if via == "direct" and not relayed:
                        self.refused(duplicate, peer)
                    if msg.type not in owner.unacked:
                        await self._ack(peer, msg, AckStatus.OK, duplicate)
                    return
                effects = self._apply(owner, peer, msg, prepared, relayed)
            except HiveError as err:
                await self._refuse(peer, msg, err)
                return
        if msg.type not in owner.unacked:
            await self._ack(peer, msg, AckStatus.OK, None)
        await self.after(effects)

    def _frame_of(self, peer: str, payload: bytes) -> Message | None:
        """The frame in `payload`; None if it does not parse or its sender is muted."""
        if self.strikes.muted(peer, self.clock.now()):
            return None
        try:
            if compact.is_compact(payload):  # a session frame: from `peer`, unsigned
                return compact.parse_compact(payload, peer)
            return wire.parse_frame(payload)
        except HiveError as err:
            self.refused(err, peer)
            return None

    async def _refuse(self, peer: str, msg: Message, err: HiveError) -> None:
        self.refused(err, peer)
        owner = self._routes.get(msg.type)
        if owner is not None:
            try:
                owner.on_refused(peer, msg, err)
            except Exception as exc:  # noqa: BLE001 — one component never stops intake
                self._failed(owner, "on_refused", exc)
        if not isinstance(err, Banned):
            # the sender may know more than we do yet (a join, a promotion, a proposal still
            # on its way): ask it to try again rather than refuse for good — the owner says
            later = (owner or FleetComponent).retry_later(err)
            status = AckStatus.RETRY_LATER if later else AckStatus.INVALID
            await self._ack(peer, msg, status, err)

    def _admissible(self, peer: str, msg: Message, relayed: bool = False) -> None:
        if self.standing is not None:
            self.standing.check_peer(self.store, peer)
        cfg = self.config
        check_clock(msg, self.clock.now(), cfg.future_skew_s, cfg.max_age_s, relayed)

    def _apply(
        self, owner: FleetComponent, peer: str, msg: Message, prepared: Any, relayed: bool
    ) -> Effects:
        now = self.clock.now()
        effects = Effects()
        # (a lost one is superseded or repaired; a light one's loss only delays)
        durable = msg.type not in owner.unacked and msg.type not in owner.light
        with self.store.transaction(now, durable=durable) as tx:
            if not owner.admits_strangers and self.standing is not None:
                self.standing.check_frame(tx, msg)
            if relayed:  # no presence: the relayer did not sign it, its author did not send it
                if self.standing is not None:
                    self.standing.check_relayer(tx, peer)
                owner.apply_fact(tx, peer, msg, effects)
                db.claim(tx, msg.node, msg.id, now, via="proof")
                return effects
            owner.apply(tx, peer, msg, prepared, effects)
            db.claim(tx, peer, msg.id, now)
            for component in self._components:
                component.heard(tx, peer)
        return effects

    def _on_ack(self, peer: str, msg: Message) -> None:
        body = msg.body_as(wire.MsgAck)
        now = self.clock.now()
        with self.store.transaction(now, durable=False) as tx:
            error = (
                f"{body.code}: {body.message}"
                if body.code and body.outcome != AckStatus.OK
                else None
            )
            if body.outcome == AckStatus.OK:
                db.acked(tx, peer, body.ref, "acked", float(now), None)
            elif body.outcome == AckStatus.INVALID:
                db.acked(tx, peer, body.ref, "failed", float(now), error)
            else:
                retry = now + self.config.retry_base_s
                db.acked(tx, peer, body.ref, "pending", retry, error)
            for component in self._components:
                component.on_ack(tx, peer, body)
                component.heard(tx, peer)

    # --- outbound ------------------------------------------------------------------------

    def frame(self, msg_type: MsgType, body: wire.Body, hive: str) -> tuple[str, bytes]:
        """A new signed frame from this node: (its id, its bytes)."""
        msg = self.message(msg_type, body, hive)
        return msg.id, msg.raw

    def message(self, msg_type: MsgType, body: wire.Body, hive: str, msg_id: str = "") -> Message:
        """A new frame from this node — signed; compact and unsigned for a session type — as
        the message a receiver would parse (`msg_id`: the id its type requires, else random)."""
        msg_id, now = msg_id or secrets.token_hex(16), self.clock.now()
        if msg_type in self._session and msg_type != MsgType.MSG_ACK:
            frame = compact.build_compact(msg_type, body, hive=hive, msg_id=msg_id, ts=now)
            return Message(
                type=msg_type, id=msg_id, hive=hive, sender_key="", node=self.me, ts=now,
                body=body, raw=frame, signed=False,
            )  # fmt: skip
        frame = wire.build_frame(
            self.keys, msg_type, body, hive=hive, msg_id=msg_id, node=self.me, ts=now
        )
        return Message(
            type=msg_type, id=msg_id, hive=hive, sender_key=self.key, node=self.me, ts=now,
            body=body, raw=frame,
        )  # fmt: skip

    async def originate(
        self,
        hive: str,
        msg_type: MsgType,
        body: wire.Body,
        recipients: Callable[[Tx], list[str]],
    ) -> Effects:
        """Sign a member message, apply it here exactly as a receiver would, and queue it for
        `recipients(tx)` — in one transaction.  The caller holds `lock`."""
        owner = self._routes[msg_type]
        now = self.clock.now()
        _, frame = self.frame(msg_type, body, hive)
        msg = wire.parse_frame(frame)
        fx = Effects()
        with self.store.transaction(now) as tx:
            peers = recipients(tx)
            owner.apply(tx, self.me, msg, None, fx)
            db.claim(tx, self.me, msg.id, now)
            self.enqueue_frame(tx, peers, msg, fx)
        return fx

    def enqueue(
        self, tx: Tx, peers: list[str], msg_type: MsgType, body: wire.Body, hive: str,
        fx: Effects, msg_id: str = "",
    ) -> Message:  # fmt: skip
        """One new frame, queued for each of `peers` (sent once the transaction commits)."""
        msg = self.message(msg_type, body, hive, msg_id)
        for peer in peers:
            db.enqueue(tx, peer, msg.id, msg_type, msg.raw, tx.now, self.config.outbox_ttl_s)
            fx.flush.add(peer)
        return msg

    def unacked(self, msg_type: int) -> bool:
        """True for a frame type its owner sends directly, never acknowledged or retried."""
        known = msg_type in MsgType._value2member_map_
        owner = self._routes.get(MsgType(msg_type)) if known else None
        return owner is not None and MsgType(msg_type) in owner.unacked

    def requeue(
        self, tx: Tx, peer: str, msg_id: str, msg_type: int, frame: bytes, fx: Effects
    ) -> None:
        """A frame queued for `peer` again, even if it was sent (and given up on) before."""
        db.requeue(tx, peer, msg_id, msg_type, frame, tx.now, self.config.outbox_ttl_s)
        fx.flush.add(peer)

    def enqueue_frame(self, tx: Tx, peers: list[str], msg: Message, fx: Effects) -> None:
        for peer in peers:
            db.enqueue(tx, peer, msg.id, msg.type, msg.raw, tx.now, self.config.outbox_ttl_s)
            fx.flush.add(peer)

    async def after(self, fx: Effects) -> None:
        """Carry out what a committed transaction asked for."""
        for decide in fx.then:
            fx.direct.extend(decide())
        for peer, frame in fx.direct:
            await self.send_direct(peer, frame)
        if len(fx.flush) <= 1:
            for peer in fx.flush:
                await self.flush(peer)
            return
        async with anyio.create_task_group() as tg:  # a fan-out goes to every peer at once
            for peer in sorted(fx.flush):
                tg.start_soon(self.flush, peer)

    def wake(self) -> None:
        """Run the loop's next pass now (something was queued or became due)."""
        self._wake.set()

    async def send_direct(self, peer: str, frame: bytes) -> None:
        try:
            await self.node.sendcustommsg(peer, frame)
        except HiveError as err:
            log.info("fleet: could not send to %s: %s", short(peer), err)

    async def _ack(self, peer: str, msg: Message, status: AckStatus, err: HiveError | None) -> None:
        body = wire.MsgAck(
            ref=msg.id, status=status.value,
            code=err.code if err else "", message=err.message[:280] if err else "",
        )  # fmt: skip
        if msg.signed or not msg.hive:
            _, frame = self.frame(MsgType.MSG_ACK, body, msg.hive)
        else:  # a session frame's acknowledgement is one too
            ts = self.clock.now()
            frame = compact.build_compact(
                MsgType.MSG_ACK, body, hive=msg.hive, msg_id=secrets.token_hex(16), ts=ts
            )
        await self.send_direct(peer, frame)

    async def flush(self, peer: str) -> None:
        """Send what is due to one connected peer; each attempt moves its next retry back."""
        if peer not in self.connected:
            return
        async with self._sending.setdefault(peer, anyio.Lock()):
            await self._flush_locked(peer)
        self._wake.set()

    async def _flush_locked(self, peer: str) -> None:
        now = self.clock.now()
        cfg = self.config
        for item in db.due(self.store, peer, float(now), cfg.in_flight):
            error = None
            try:
                await self.node.sendcustommsg(peer, item.frame)
            except PeerNotConnected:
                self.connected.discard(peer)
                return
            except HiveError as err:
                error = str(err)
            state = "pending"
            if item.attempts + 1 >= cfg.max_attempts:
                state, error = (
                    "failed",
                    error or f"no acknowledgement after {cfg.max_attempts} tries",
                )
            next_at = now + backoff.delay(item.attempts, cfg.retry_base_s, cfg.retry_cap_s, 0.25)
            with self.store.transaction(now, durable=False) as tx:
                db.sent(tx, item, next_at, state, error)

    # --- this node -------------------------------------------------------------------------

    async def binding(self) -> str:
        """The node's signmessage over our Nostr key (asked once, then kept)."""
        cached = self.store.kv(BINDING_KV)
        if isinstance(cached, dict) and cached.get("key") == self.key:
            return str(cached["zbase"])
        zbase = (await self.node.signmessage(self.key)).zbase
        if not lnsig.check(self.key, zbase, self.me):
            raise BadSignature("the node's signmessage does not verify for its own id")
        with self.store.transaction(self.clock.now()) as tx:
            tx.set_kv(BINDING_KV, {"key": self.key, "zbase": zbase})
        return zbase

    def refused(self, err: HiveError, peer: str) -> None:
        log.info("fleet: refused a message from %s: %s", short(peer), err)
        self.count(err.code)
        if not isinstance(err, Replayed) and self.strikes.strike(peer, self.clock.now()):
            log.warning("fleet: %s sent too many refused messages: ignored for %d s",
                        short(peer), self.strikes.mute_s)  # fmt: skip

    def count(self, code: str) -> None:
        with self.store.transaction(self.clock.now(), durable=False) as tx:
            tx.count_errors({code: 1})
