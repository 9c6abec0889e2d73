"""Fleet membership over BOLT 1 custom messages.

`FleetService` is one member's side of the protocol: genesis, invite tickets, the join
handshake (HELLO → CHALLENGE → ATTEST → WELCOME), vouching and promotion, ban proposals and
votes, voluntary exit, and a durable per-peer outbox with acknowledgements.

Every inbound frame goes the same way: size, type, magic, JSON, shape and signature
(`events.fleet.parse_frame`) → signer's node = the Lightning peer it came from → clock window →
duplicate id → membership of the sender and the message's own rules → its effects, the seen id
and any replies in one durable transaction → an acknowledgement.  A refusal is a typed error,
counted in the store, answered with an `invalid` (or `retry_later`) acknowledgement, and
changes nothing else.  Nothing here holds state that is not in the store: a restart at any
point resumes from it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import nostr_sdk as sdk

from agent import __version__, backoff
from agent.clock import Clock, SystemClock
from agent.errors import PeerNotConnected
from agent.fleet.rules import ban_quorum, promotion_quorum
from agent.node.backend import NodeBackend
from agent.node.models import ChannelState, CustomMsg, NodeEvent, PeerConnected, PeerDisconnected
from agent.store import fleet as db
from agent.store.db import Store, Tx
from events import fleet as wire
from events import lnsig
from events.crypto import pubkey_hex
from events.errors import (
    BadSignature,
    Banned,
    Expired,
    HiveError,
    InvalidParams,
    InvalidPayload,
    NotFound,
    NotMember,
    RateLimited,
    Replayed,
    Restricted,
    Unauthorized,
)
from events.fleet import Message, MsgType

log = logging.getLogger("hive.fleet")
BINDING_KV = "fleet_binding"
JOINING_KV = "fleet_joining"
HANDSHAKE = {MsgType.HELLO, MsgType.CHALLENGE, MsgType.ATTEST, MsgType.WELCOME}


@dataclass(frozen=True)
class FleetConfig:
    challenge_ttl_s: int = 300
    hello_interval_s: int = 10  # one HELLO per peer per 10 s
    max_pending_challenges: int = 1000
    retry_base_s: float = 30.0  # outbox: base·2ⁿ + up to 25 % jitter, capped
    retry_cap_s: float = 3600.0
    max_attempts: int = 20
    outbox_ttl_s: int = 86_400
    in_flight: int = 10  # frames sent to one peer per round
    max_age_s: int = 86_400 + 3_600  # a queued message may wait a day for its peer
    future_skew_s: int = 300
    ban_ttl_s: int = 7 * 86_400
    max_ticket_hours: int = 168
    handshake_retry_s: float = 30.0  # a HELLO or ATTEST unanswered this long is sent again
    handshake_tries: int = 6
    features: tuple[str, ...] = ("anchor", "onion")


def short(node_id: str) -> str:
    return node_id[:12] + "…"


@dataclass
class _Effects:
    """What a handled message asks for once its transaction has committed."""

    direct: list[tuple[str, bytes]] = field(default_factory=list)
    flush: set[str] = field(default_factory=set)


class FleetService:
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
        self._lock = anyio.Lock()
        self._sending: dict[str, anyio.Lock] = {}  # one flush per peer at a time: no double sends
        self._wake = anyio.Event()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> FleetService:
        self.me = (await self.node.info()).id
        self.connected = {p.id for p in await self.node.peers() if p.connected}
        return self

    async def run(self) -> None:
        """Forever: send what is due to connected peers, expire what waited too long."""
        while True:
            self._wake = anyio.Event()
            now = self.clock.now()
            with self.store.transaction(now, durable=False) as tx:
                db.expire_outbox(tx, now)
                db.expire_proposals(tx, now - self.config.ban_ttl_s)
                db.prune_seen(tx, now - self.config.max_age_s - 3_600)
            for peer in sorted(self.connected):
                await self._flush(peer)
            await self._retry_join()
            due = db.next_due(self.store.conn, self.connected)
            cap = min(60.0, self.config.handshake_retry_s / 2)
            timeout = cap if due is None else min(cap, max(0.05, due - self.clock.now()))
            with anyio.move_on_after(timeout):
                await self._wake.wait()

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
        except Exception:
            log.exception("fleet: unexpected failure handling %s", type(event).__name__)
            self._count("INTERNAL")

    # --- operator commands ---------------------------------------------------------------

    async def genesis(self) -> dict[str, Any]:
        """Create a new hive with this node as its admin and first member."""
        async with self._lock:
            if db.hive(self.store.conn):
                raise InvalidParams("this node is already in a hive; leave it first")
            binding = await self._binding()
            now = self.clock.now()
            hive_id = "hive_" + secrets.token_hex(8)
            with self.store.transaction(now) as tx:
                db.set_hive(tx, db.Hive(hive_id, self.me, now, now))
                db.add_member(tx, self.me, self.key, binding, "member", now, promoted_at=now)
            return {"hive_id": hive_id, "admin": self.me, "tier": "member"}

    async def invite(
        self, invitee: str, valid_hours: int = 24, requires: list[str] | None = None
    ) -> dict[str, Any]:
        """A signed invite ticket naming `invitee`, expiring after `valid_hours`."""
        if not 1 <= valid_hours <= self.config.max_ticket_hours:
            raise InvalidParams(f"valid_hours must be 1–{self.config.max_ticket_hours}")
        bits = wire.requirement_bits(requires or [])
        if not wire.is_node_id(invitee):
            raise InvalidParams(f"{invitee!r:.80} is not a node id (66 hex digits)")
        async with self._lock:
            h = self._hive()
            self._full_member(self.me, self.key, "invite")
            if db.is_banned(self.store.conn, invitee):
                raise Banned(f"{short(invitee)} is banned from the hive")
            existing = db.member(self.store.conn, invitee)
            if existing and existing.status == "active":
                raise InvalidParams(f"{short(invitee)} is already a member")
            now = self.clock.now()
            body = wire.TicketBody(
                hive=h.hive_id, ticket_id=secrets.token_hex(16), issuer=self.me,
                issuer_key=self.key, invitee=invitee, issued_at=now,
                expires_at=now + valid_hours * 3600, requires=bits,
            )  # fmt: skip
            ticket = wire.sign_ticket(self.keys, body)
            text = wire.encode_ticket(ticket)
            with self.store.transaction(now) as tx:
                db.record_ticket(tx, ticket.ticket_id, invitee, self.me, ticket.expires_at, text)
            return {
                "ticket": text, "ticket_id": ticket.ticket_id, "invitee": invitee,
                "expires_at": ticket.expires_at, "requires": wire.requirement_names(bits),
            }  # fmt: skip

    async def join(self, text: str) -> dict[str, Any]:
        """Present an invite ticket to its issuer: connect and send HELLO.  The rest of the
        handshake runs as messages arrive; `status()` shows how far it got."""
        ticket = wire.decode_ticket(text)
        async with self._lock:
            if db.hive(self.store.conn):
                raise InvalidParams("this node is already in a hive; leave it first")
            if ticket.invitee != self.me:
                raise Unauthorized(f"this ticket names node {short(ticket.invitee)}, not this node")
            now = self.clock.now()
            if ticket.expires_at <= now:
                raise Expired("this invite ticket has expired; ask for a new one")
            if ticket.issuer not in self.connected:
                await self.node.connect(ticket.issuer)
                self.connected.add(ticket.issuer)
            hello = wire.Hello(ticket=text, supported_versions=[wire.VERSION])
            msg_id, frame = self._frame(MsgType.HELLO, hello, ticket.hive)
            joining = {
                "hive": ticket.hive, "issuer": ticket.issuer, "issuer_key": ticket.issuer_key,
                "ticket": text, "ticket_id": ticket.ticket_id, "state": "hello_sent",
                "sent": [msg_id], "error": None, "started_at": now,
                "frame": frame.hex(), "sent_at": now, "tries": 1,
            }  # fmt: skip
            with self.store.transaction(now) as tx:
                tx.set_kv(JOINING_KV, joining)
        await self._send_direct(ticket.issuer, frame)
        return {"state": "hello_sent", "hive": ticket.hive, "issuer": ticket.issuer}

    async def vouch(self, candidate: str) -> dict[str, Any]:
        """Vouch for a neophyte's promotion to member."""
        async with self._lock:
            h = self._hive()
            self._full_member(self.me, self.key, "vouch")
            target = db.member(self.store.conn, candidate)
            if target is None or target.status != "active":
                raise NotFound(f"{short(candidate)} is not an active member")
            if target.tier != "neophyte":
                raise InvalidParams(f"{short(candidate)} is already a full member")
            if any(v == self.me for v, _ in db.vouches(self.store.conn, candidate)):
                raise Replayed(f"this node already vouched for {short(candidate)}")
            effects = await self._originate(h, MsgType.VOUCH, wire.Vouch(candidate=candidate))
            state = self._promotion_state(candidate)
        await self._after(effects)
        return state

    async def ban(self, target: str, reason: str = "", approve: bool = True) -> dict[str, Any]:
        """Propose a fleet-wide ban of `target`, or vote on the open proposal against it."""
        if len(reason) > 280:
            raise InvalidParams("a ban reason is at most 280 characters")
        async with self._lock:
            h = self._hive()
            self._full_member(self.me, self.key, "vote on bans")
            if target == self.me:
                raise InvalidParams("a node cannot ban itself; use leave")
            if not wire.is_node_id(target):
                raise InvalidParams(f"{target!r:.80} is not a node id (66 hex digits)")
            if db.is_banned(self.store.conn, target):
                return {"target": target, "banned": True, "proposal_id": None}
            pid = db.open_proposal_for(self.store.conn, target)
            if pid is None:
                if not approve:
                    raise NotFound(f"there is no open ban proposal against {short(target)}")
                pid = secrets.token_hex(16)
                body: wire.Body = wire.BanProposal(proposal_id=pid, target=target, reason=reason)
                effects = await self._originate(h, MsgType.BAN_PROPOSAL, body)
            else:
                if any(v == self.me for v, _, _ in db.votes(self.store.conn, pid)):
                    raise Replayed(f"this node already voted on proposal {pid[:12]}…")
                body = wire.BanVote(proposal_id=pid, target=target, approve=approve)
                effects = await self._originate(h, MsgType.BAN_VOTE, body)
            state = self._ban_state(pid)
        await self._after(effects)
        return state

    async def leave(self, reason: str = "") -> dict[str, Any]:
        """Leave the hive: tell every member, then forget the hive.  Nothing stays locked."""
        async with self._lock:
            h = self._hive()
            now = self.clock.now()
            msg_id, frame = self._frame(MsgType.MEMBER_LEFT, wire.MemberLeft(reason=reason[:280]))
            effects = _Effects()
            with self.store.transaction(now) as tx:
                for m in db.members(tx):
                    if m.node_id != self.me:
                        db.enqueue(tx, m.node_id, msg_id, MsgType.MEMBER_LEFT, frame, now,
                                   self.config.outbox_ttl_s)  # fmt: skip
                        effects.flush.add(m.node_id)
                db.forget_hive(tx)
                tx.set_kv(JOINING_KV, None)
        await self._after(effects)
        return {"left": h.hive_id, "goodbyes_queued": len(effects.flush)}

    async def _retry_join(self) -> None:
        """The handshake's own messages go direct: an unanswered HELLO is sent again (a new
        one: the old challenge may be lost), an unanswered ATTEST as it was; then give up."""
        async with self._lock:
            joining = self.store.kv(JOINING_KV)
            if not joining or joining["state"] not in ("hello_sent", "attested"):
                return
            now = self.clock.now()
            if now - joining["sent_at"] < self.config.handshake_retry_s:
                return
            if joining["tries"] >= self.config.handshake_tries:
                joining.update(
                    state="refused",
                    error=f"EXPIRED: no answer from the issuer after {joining['tries']} tries; "
                    "check the connection and run hive-join again",
                )
                frame = b""
            else:
                if joining["state"] == "hello_sent":
                    hello = wire.Hello(ticket=joining["ticket"], supported_versions=[wire.VERSION])
                    msg_id, frame = self._frame(MsgType.HELLO, hello, joining["hive"])
                    joining["sent"] = [*joining["sent"], msg_id]
                else:
                    frame = bytes.fromhex(joining["frame"])
                joining.update(sent_at=now, tries=joining["tries"] + 1, frame=frame.hex())
            with self.store.transaction(now) as tx:
                tx.set_kv(JOINING_KV, joining)
        if frame:
            await self._send_direct(joining["issuer"], frame)

    # --- reads ---------------------------------------------------------------------------

    def members(self) -> dict[str, Any]:
        conn = self.store.conn
        return {
            "members": [m.public() for m in db.members(conn, status=None)],
            "bans": db.bans(conn),
            "ban_proposals": db.proposals(conn),
        }

    def status(self) -> dict[str, Any]:
        conn = self.store.conn
        h = db.hive(conn)
        mine = db.member(conn, self.me)
        active = db.members(conn)
        return {
            "node_id": self.me,
            "nostr_pubkey": self.key,
            "hive_id": h.hive_id if h else None,
            "admin": h.admin if h else None,
            "tier": mine.tier if mine and h else None,
            "members": {
                "member": sum(m.tier == "member" for m in active),
                "neophyte": sum(m.tier == "neophyte" for m in active),
            },
            "bans": len(db.bans(conn)),
            "joining": self.store.kv(JOINING_KV),
            "outbox": db.outbox_counts(conn),
            "refused": self.store.error_counts(),
        }

    def view(self) -> dict[str, Any]:
        """What every member must agree on: hive, active members with tiers, bans."""
        conn = self.store.conn
        h = db.hive(conn)
        return {
            "hive_id": h.hive_id if h else None,
            "members": {m.node_id: m.tier for m in db.members(conn)},
            "bans": sorted(b["target"] for b in db.bans(conn)),
        }

    # --- inbound -------------------------------------------------------------------------

    async def receive(self, peer: str, payload: bytes) -> None:
        """One custom message from `peer` (its BOLT 8 authenticated node id)."""
        try:
            msg = wire.parse_frame(payload)
        except HiveError as err:
            self._refused(err, peer)
            return
        async with self._lock:
            try:
                if msg.node != peer:
                    raise Unauthorized(
                        f"message signed for node {short(msg.node)} arrived from {short(peer)}"
                    )
                if msg.type == MsgType.MSG_ACK:
                    self._on_ack(peer, msg)
                    return
                if db.is_banned(self.store.conn, peer):
                    raise Banned(f"{short(peer)} is banned from the hive; ignored")
                self._check_clock(msg)
                via = db.seen_via(self.store.conn, peer, msg.id)
                if via is not None:
                    # handled once only.  Seen inside a proof first: the direct copy is simply
                    # late.  Seen directly: a retry whose acknowledgement was lost, or a replay.
                    duplicate = Replayed(f"{msg.type.name} {msg.id[:12]}… was already handled")
                    if via == "direct":
                        self._refused(duplicate, peer)
                    await self._ack(peer, msg, "ok", duplicate)
                    return
                effects = await self._handle(peer, msg)
            except HiveError as err:
                self._refused(err, peer)
                if not isinstance(err, Banned):
                    # the sender may know more than we do yet (a join, a promotion, a proposal
                    # still on its way): ask it to try again rather than refuse for good
                    later = isinstance(err, NotMember | NotFound | Restricted)
                    await self._ack(peer, msg, "retry_later" if later else "invalid", err)
                return
        await self._ack(peer, msg, "ok", None)
        await self._after(effects)

    def _check_clock(self, msg: Message) -> None:
        now = self.clock.now()
        if msg.ts > now + self.config.future_skew_s:
            raise Expired(f"the message is dated {msg.ts - now} s in the future")
        if msg.ts < now - self.config.max_age_s:
            raise Expired(
                f"the message is {now - msg.ts} s old; the limit is {self.config.max_age_s} s"
            )

    async def _handle(self, peer: str, msg: Message) -> _Effects:
        now = self.clock.now()
        effects = _Effects()
        # the few checks that need the node run before the transaction opens
        has_channel = False
        binding = ""
        if msg.type == MsgType.HELLO:
            has_channel = any(
                c.peer_id == peer and c.state == ChannelState.NORMAL
                for c in await self.node.channels()
            )
        elif msg.type == MsgType.CHALLENGE:
            binding = await self._binding()
        with self.store.transaction(now) as tx:
            if msg.type == MsgType.HELLO:
                self._on_hello(tx, peer, msg, has_channel, effects)
            elif msg.type == MsgType.CHALLENGE:
                self._on_challenge(tx, peer, msg, binding, effects)
            elif msg.type == MsgType.ATTEST:
                self._on_attest(tx, peer, msg, effects)
            elif msg.type == MsgType.WELCOME:
                self._on_welcome(tx, peer, msg, effects)
            else:
                h = self._hive(tx)
                if msg.hive != h.hive_id:
                    raise NotMember(
                        f"the message is for hive {msg.hive or '(none)'}, not {h.hive_id}"
                    )
                self._apply(tx, msg, effects)
            db.claim(tx, peer, msg.id, now)
        return effects

    def _apply(self, tx: Tx, msg: Message, effects: _Effects) -> None:
        """A member's message (received, or one of our own) and its consequences."""
        handlers = {
            MsgType.MEMBER_JOINED: self._on_member_joined,
            MsgType.VOUCH: self._on_vouch,
            MsgType.PROMOTION: self._on_promotion,
            MsgType.BAN_PROPOSAL: self._on_ban_proposal,
            MsgType.BAN_VOTE: self._on_ban_vote,
            MsgType.BAN: self._on_ban,
            MsgType.MEMBER_LEFT: self._on_member_left,
        }
        handler = handlers.get(msg.type)
        if handler is None:
            raise InvalidPayload(f"{msg.type.name} is not expected here")
        handler(tx, msg, effects)

    # --- handshake: the member's side ---------------------------------------------------

    def _on_hello(self, tx: Tx, peer: str, msg: Message, has_channel: bool, fx: _Effects) -> None:
        h = self._hive(tx)
        body = msg.body_as(wire.Hello)
        existing = db.member(tx, peer)
        if existing and existing.status == "active":
            raise Replayed(f"{short(peer)} is already a member")
        ticket = self._check_ticket(tx, h, body.ticket, peer, at=tx.now)
        if msg.hive != h.hive_id:
            raise Unauthorized("HELLO names another hive than its ticket")
        if not has_channel:
            raise Unauthorized("HELLO is accepted only from a peer with a channel to a member")
        now = tx.now
        previous = db.challenge(tx, peer)
        if previous and now - previous[3] < self.config.hello_interval_s:
            raise RateLimited(
                f"one HELLO per {self.config.hello_interval_s} s per peer; try again shortly"
            )
        pending = db.pending_challenges(tx, now - self.config.challenge_ttl_s)
        if pending >= self.config.max_pending_challenges:
            raise RateLimited("too many joins are pending here; try again later")
        nonce = secrets.token_hex(32)
        db.put_challenge(tx, peer, nonce, ticket.ticket_id, msg.sender_key, now)
        body_c = wire.Challenge(
            nonce=nonce, ticket_id=ticket.ticket_id, ttl_s=self.config.challenge_ttl_s
        )
        _, frame = self._frame(MsgType.CHALLENGE, body_c, h.hive_id)
        fx.direct.append((peer, frame))

    def _on_attest(self, tx: Tx, peer: str, msg: Message, fx: _Effects) -> None:
        h = self._hive(tx)
        body = msg.body_as(wire.Attest)
        pending = db.challenge(tx, peer)
        if pending is None:
            raise Unauthorized("ATTEST without a pending challenge; send HELLO first")
        nonce, ticket_id, hello_key, created = pending
        if tx.now - created > self.config.challenge_ttl_s:
            raise Expired("the challenge expired; start again with HELLO")
        if msg.sender_key != hello_key:
            raise BadSignature("ATTEST is signed by another key than the HELLO it answers")
        if body.manifest.nonce != nonce:
            raise Unauthorized("ATTEST answers a different challenge")
        ticket = self._check_admission(tx, h, msg, at=tx.now)
        if ticket.ticket_id != ticket_id:
            raise Unauthorized("ATTEST presents another ticket than its HELLO")
        db.drop_challenge(tx, peer)
        self._admit(tx, msg, ticket, joined_at=tx.now)
        members = [
            wire.MemberEntry(
                node_id=m.node_id, pubkey=m.pubkey, binding=m.binding, tier=m.tier,
                joined_at=m.joined_at, promoted_at=m.promoted_at,
            )
            for m in db.members(tx)
        ]  # fmt: skip
        bans = [wire.BanEntry(**b) for b in db.bans(tx)]
        welcome = wire.Welcome(
            tier="neophyte", admin=h.admin, created_at=h.created_at, members=members, bans=bans
        )
        self._enqueue(tx, [peer], MsgType.WELCOME, welcome, h.hive_id, fx)
        others = [m.node_id for m in db.members(tx) if m.node_id not in (self.me, peer)]
        joined = wire.MemberJoined(attest=msg.raw.hex(), joined_at=tx.now)
        self._enqueue(tx, others, MsgType.MEMBER_JOINED, joined, h.hive_id, fx)

    def _check_ticket(self, tx: Tx, h: db.Hive, text: str, invitee: str, *, at: int) -> wire.Ticket:
        ticket = wire.decode_ticket(text)
        if ticket.hive != h.hive_id:
            raise Unauthorized("the invite ticket is for another hive")
        if ticket.invitee != invitee:
            raise Unauthorized(
                f"the invite ticket names node {short(ticket.invitee)}, not {short(invitee)}"
            )
        issuer = db.member(tx, ticket.issuer)
        if issuer is None or issuer.status != "active" or issuer.tier != "member":
            raise NotMember("the invite ticket's issuer is not a full member of this hive")
        if issuer.pubkey != ticket.issuer_key:
            raise BadSignature("the invite ticket is not signed by its issuer's bound key")
        if ticket.expires_at <= at:
            raise Expired("the invite ticket has expired")
        used = db.ticket_used_by(tx, ticket.ticket_id)
        if used is not None:
            raise Replayed(f"the invite ticket was already used by {short(used)}")
        return ticket

    def _check_admission(self, tx: Tx, h: db.Hive, attest: Message, *, at: int) -> wire.Ticket:
        """Everything any member can check about an ATTEST: its ticket, manifest and binding."""
        body = attest.body_as(wire.Attest)
        if attest.hive != h.hive_id:
            raise Unauthorized("ATTEST names another hive")
        ticket = self._check_ticket(tx, h, body.ticket, attest.node, at=at)
        manifest = body.manifest
        if manifest.node_id != attest.node or manifest.pubkey != attest.sender_key:
            raise Unauthorized("the manifest names another node or key than its signer")
        if not lnsig.check(manifest.pubkey, body.binding, attest.node):
            raise BadSignature(
                f"node {short(attest.node)} did not sign this Nostr key (signmessage binding)"
            )
        missing = [n for n in wire.requirement_names(ticket.requires) if n not in manifest.features]
        if missing:
            raise Restricted(f"the invite requires {', '.join(missing)}, which this node lacks")
        return ticket

    def _admit(self, tx: Tx, attest: Message, ticket: wire.Ticket, *, joined_at: int) -> None:
        body = attest.body_as(wire.Attest)
        db.use_ticket(
            tx, ticket.ticket_id, ticket.invitee, ticket.issuer, ticket.expires_at,
            attest.node, tx.now,
        )  # fmt: skip
        db.add_member(
            tx, attest.node, attest.sender_key, body.binding, "neophyte", joined_at,
            manifest=body.manifest.model_dump(),
        )  # fmt: skip

    # --- handshake: the joiner's side ---------------------------------------------------

    def _joining(self, tx: Tx, peer: str, msg: Message, state: str) -> dict[str, Any]:
        joining = self.store.kv(JOINING_KV)
        if not joining or joining["issuer"] != peer:
            raise Unauthorized("no join in progress with this peer")
        if joining["state"] != state:
            raise Replayed(f"the join is at {joining['state']}, not expecting {msg.type.name}")
        if msg.sender_key != joining["issuer_key"] or msg.hive != joining["hive"]:
            raise BadSignature("not signed by the ticket's issuer for the ticket's hive")
        return dict(joining)

    def _on_challenge(self, tx: Tx, peer: str, msg: Message, binding: str, fx: _Effects) -> None:
        joining = self._joining(tx, peer, msg, "hello_sent")
        body = msg.body_as(wire.Challenge)
        if body.ticket_id != joining["ticket_id"]:
            raise Unauthorized("the challenge is for another ticket")
        manifest = wire.Manifest(
            node_id=self.me, pubkey=self.key, version=__version__,
            features=list(self.config.features), timestamp=tx.now, nonce=body.nonce,
        )  # fmt: skip
        attest = wire.Attest(ticket=joining["ticket"], manifest=manifest, binding=binding)
        msg_id, frame = self._frame(MsgType.ATTEST, attest, joining["hive"])
        joining.update(
            state="attested", sent=[*joining["sent"], msg_id], frame=frame.hex(),
            sent_at=tx.now, tries=1,
        )  # fmt: skip
        tx.set_kv(JOINING_KV, joining)
        fx.direct.append((peer, frame))

    def _on_welcome(self, tx: Tx, peer: str, msg: Message, fx: _Effects) -> None:
        joining = self._joining(tx, peer, msg, "attested")
        body = msg.body_as(wire.Welcome)
        for entry in body.members:
            if not lnsig.check(entry.pubkey, entry.binding, entry.node_id):
                raise BadSignature(f"WELCOME lists {short(entry.node_id)} with a bad binding")
        if not any(e.node_id == self.me and e.pubkey == self.key for e in body.members):
            raise InvalidPayload("WELCOME does not list this node")
        db.set_hive(tx, db.Hive(joining["hive"], body.admin, body.created_at, tx.now))
        for e in body.members:
            db.add_member(
                tx, e.node_id, e.pubkey, e.binding, e.tier, e.joined_at, promoted_at=e.promoted_at
            )
        for b in body.bans:
            db.ban(tx, b.target, b.reason, b.decided_at, "welcome")
        db.use_ticket(tx, joining["ticket_id"], self.me, peer, 0, self.me, tx.now)
        joining.update(state="joined", error=None)
        tx.set_kv(JOINING_KV, joining)

    def _on_ack(self, peer: str, msg: Message) -> None:
        body = msg.body_as(wire.MsgAck)
        now = self.clock.now()
        with self.store.transaction(now, durable=False) as tx:
            error = f"{body.code}: {body.message}" if body.code and body.status != "ok" else None
            if body.status == "ok":
                db.acked(tx, peer, body.ref, "acked", float(now), None)
            elif body.status == "invalid":
                db.acked(tx, peer, body.ref, "failed", float(now), error)
            else:
                retry = now + self.config.retry_base_s
                db.acked(tx, peer, body.ref, "pending", retry, error)
            joining = self.store.kv(JOINING_KV)
            ours = bool(joining) and joining["issuer"] == peer and body.ref in joining["sent"]
            if error and ours and body.code != RateLimited.code:
                joining.update(error=error, state="refused")
                tx.set_kv(JOINING_KV, joining)

    # --- members' messages ----------------------------------------------------------------

    def _on_member_joined(self, tx: Tx, msg: Message, fx: _Effects) -> None:
        self._member(tx, msg.node, msg.sender_key)
        body = msg.body_as(wire.MemberJoined)
        inner = wire.parse_frame(bytes.fromhex(body.attest))
        if inner.type != MsgType.ATTEST:
            raise InvalidPayload("MEMBER_JOINED must carry the joiner's ATTEST")
        existing = db.member(tx, inner.node)
        if existing and existing.status == "active":
            return  # already known (e.g. from WELCOME): nothing to do
        if db.is_banned(tx, inner.node):
            raise Banned(f"{short(inner.node)} is banned from the hive")
        ticket = self._check_admission(tx, self._hive(tx), inner, at=inner.ts)
        self._admit(tx, inner, ticket, joined_at=body.joined_at)

    def _on_vouch(self, tx: Tx, msg: Message, fx: _Effects) -> None:
        self._member(tx, msg.node, msg.sender_key, full=True, what="vouch")
        body = msg.body_as(wire.Vouch)
        candidate = db.member(tx, body.candidate)
        if candidate is None:
            raise NotFound(f"{short(body.candidate)} is not a member here (yet)")
        if body.candidate == msg.node:
            raise InvalidPayload("a member cannot vouch for itself")
        if candidate.status != "active":
            raise InvalidPayload(f"{short(body.candidate)} is no longer an active member")
        if db.add_vouch(tx, body.candidate, msg.node, msg.raw.hex(), tx.now):
            self._evaluate(tx, fx)

    def _on_promotion(self, tx: Tx, msg: Message, fx: _Effects) -> None:
        """A promotion another member decided.  Accepted on its own proof: vouches signed by
        the members of the electorate it names, at least the quorum for that electorate.
        Views of who is a full member can differ for a while (messages cross); judging each
        decision by the electorate it was made with, rather than by our own view, keeps every
        member's result independent of the order messages arrive in."""
        self._member(tx, msg.node, msg.sender_key)
        body = msg.body_as(wire.Promotion)
        candidate = db.member(tx, body.candidate)
        if candidate is None:
            raise NotFound(f"{short(body.candidate)} is not a member here (yet)")
        electorate = self._electorate(tx, body.electorate, body.candidate)
        vouchers: set[str] = set()
        for raw in body.vouches:
            inner = self._proof(tx, raw, MsgType.VOUCH, electorate)
            if inner.body_as(wire.Vouch).candidate != body.candidate:
                raise InvalidPayload("a PROMOTION carries a vouch for someone else")
            vouchers.add(inner.node)
            db.add_vouch(tx, body.candidate, inner.node, raw, tx.now)
        if len(vouchers) < promotion_quorum(len(electorate)):
            raise InvalidPayload(
                f"{len(vouchers)} vouches do not reach the quorum for {len(electorate)} members"
            )
        if candidate.status == "active":
            db.promote(tx, body.candidate, tx.now)
        self._evaluate(tx, fx)

    def _on_ban(self, tx: Tx, msg: Message, fx: _Effects) -> None:
        """A ban another member decided, accepted on its own proof (as `_on_promotion`)."""
        self._member(tx, msg.node, msg.sender_key)
        body = msg.body_as(wire.Ban)
        electorate = self._electorate(tx, body.electorate, body.target)
        proposal = self._proof(tx, body.proposal, MsgType.BAN_PROPOSAL, electorate)
        p = proposal.body_as(wire.BanProposal)
        if p.target != body.target:
            raise InvalidPayload("a BAN carries a proposal against someone else")
        db.add_proposal(tx, p.proposal_id, p.target, proposal.node, p.reason, body.proposal, tx.now)
        db.add_vote(tx, p.proposal_id, proposal.node, True, body.proposal, tx.now)
        yes = {proposal.node}
        for raw in body.votes:
            vote = self._proof(tx, raw, MsgType.BAN_VOTE, electorate)
            v = vote.body_as(wire.BanVote)
            if v.proposal_id != p.proposal_id or not v.approve:
                raise InvalidPayload("a BAN carries a vote that is not an approval of it")
            yes.add(vote.node)
            db.add_vote(tx, p.proposal_id, vote.node, True, raw, tx.now)
        if len(yes) < ban_quorum(len(electorate)):
            raise InvalidPayload(
                f"{len(yes)} approvals do not reach the quorum for {len(electorate)} members"
            )
        if not db.is_banned(tx, body.target):
            self._enact_ban(tx, body.target, p.reason, p.proposal_id)
        self._evaluate(tx, fx)

    def _electorate(self, tx: Tx, names: list[str], subject: str) -> set[str]:
        electorate = set(names)
        if len(electorate) != len(names) or subject in electorate:
            raise InvalidPayload("the electorate repeats a node or includes the subject")
        for node in electorate:
            if db.member(tx, node) is None:
                raise NotFound(f"the electorate names {short(node)}, not known here (yet)")
        return electorate

    def _proof(self, tx: Tx, raw_hex: str, want: MsgType, electorate: set[str]) -> Message:
        """A frame carried inside a decision: signed by a member of its electorate with that
        member's bound key, for this hive.  Marked seen, so its direct copy is a late one."""
        try:
            inner = wire.parse_frame(bytes.fromhex(raw_hex))
        except ValueError:
            raise InvalidPayload("an embedded frame is not hex") from None
        if inner.type != want:
            raise InvalidPayload(f"expected an embedded {want.name}, got {inner.type.name}")
        if inner.hive != self._hive(tx).hive_id:
            raise InvalidPayload("an embedded frame belongs to another hive")
        if inner.node not in electorate:
            raise InvalidPayload(f"{short(inner.node)} signed, but is not in the electorate")
        signer = db.member(tx, inner.node)
        if signer is None or signer.pubkey != inner.sender_key:
            raise BadSignature(f"the embedded {want.name} is not signed by its node's bound key")
        db.claim(tx, inner.node, inner.id, tx.now, via="proof")
        return inner

    def _on_ban_proposal(self, tx: Tx, msg: Message, fx: _Effects) -> None:
        self._member(tx, msg.node, msg.sender_key, full=True, what="propose bans")
        body = msg.body_as(wire.BanProposal)
        if body.target == msg.node:
            raise InvalidPayload("a member cannot propose to ban itself")
        raw = msg.raw.hex()
        if db.add_proposal(tx, body.proposal_id, body.target, msg.node, body.reason, raw, tx.now):
            db.add_vote(tx, body.proposal_id, msg.node, True, raw, tx.now)
            self._evaluate(tx, fx)

    def _on_ban_vote(self, tx: Tx, msg: Message, fx: _Effects) -> None:
        self._member(tx, msg.node, msg.sender_key, full=True, what="vote on bans")
        body = msg.body_as(wire.BanVote)
        found = db.proposal(tx, body.proposal_id)
        if found is None:
            raise NotFound(f"ban proposal {body.proposal_id[:12]}… is not known here (yet)")
        if found["target"] != body.target:
            raise InvalidPayload("the vote names another target than its proposal")
        if db.add_vote(tx, body.proposal_id, msg.node, body.approve, msg.raw.hex(), tx.now):
            self._evaluate(tx, fx)

    def _on_member_left(self, tx: Tx, msg: Message, fx: _Effects) -> None:
        self._member(tx, msg.node, msg.sender_key)
        if db.set_status(tx, msg.node, "left", tx.now):
            db.drop_peer(tx, msg.node, "the member left the hive")
            self._evaluate(tx, fx)

    # --- governance ------------------------------------------------------------------------

    def _voters(self, tx: db.Db, exclude: str = "") -> list[str]:
        return [m.node_id for m in db.members(tx) if m.tier == "member" and m.node_id != exclude]

    def _evaluate(self, tx: Tx, fx: _Effects) -> None:
        """Apply every promotion and ban the recorded vouches and votes now carry, and tell
        every member, with the proof and the electorate counted (see `_on_promotion`).

        Repeated until nothing changes: a promotion adds a voter, a ban removes one.
        """
        hive_id = self._hive(tx).hive_id
        while True:
            progressed = False
            for m in db.members(tx):
                if m.tier != "neophyte":
                    continue
                voters = set(self._voters(tx, m.node_id))
                got = {v: f for v, f in db.vouches(tx, m.node_id) if v in voters}
                enough = voters and len(got) >= promotion_quorum(len(voters))
                if enough and db.promote(tx, m.node_id, tx.now):
                    progressed = True
                    proof = wire.Promotion(
                        candidate=m.node_id, electorate=sorted(voters),
                        vouches=[got[v] for v in sorted(got)],
                    )  # fmt: skip
                    self._broadcast(tx, MsgType.PROMOTION, proof, hive_id, fx)
            for listed in db.proposals(tx):
                p = db.proposal(tx, listed["proposal_id"])
                if p is None or p["state"] != "open":
                    continue
                voters = set(self._voters(tx, p["target"]))
                yes = {v: f for v, a, f in db.votes(tx, p["proposal_id"]) if a and v in voters}
                if voters and len(yes) >= ban_quorum(len(voters)):
                    self._enact_ban(tx, p["target"], p["reason"], p["proposal_id"])
                    progressed = True
                    proof_b = wire.Ban(
                        target=p["target"], electorate=sorted(voters), proposal=p["frame"],
                        votes=[f for v, f in sorted(yes.items()) if f != p["frame"]],
                    )  # fmt: skip
                    self._broadcast(tx, MsgType.BAN, proof_b, hive_id, fx, skip=p["target"])
            if not progressed:
                return

    def _enact_ban(self, tx: Tx, target: str, reason: str, proposal_id: str) -> None:
        db.ban(tx, target, reason, tx.now, proposal_id)
        db.set_status(tx, target, "banned", tx.now)
        db.drop_peer(tx, target, "the node was banned")
        db.drop_challenge(tx, target)

    def _broadcast(
        self, tx: Tx, msg_type: MsgType, body: wire.Body, hive: str, fx: _Effects, skip: str = ""
    ) -> None:
        peers = [m.node_id for m in db.members(tx) if m.node_id not in (self.me, skip)]
        self._enqueue(tx, peers, msg_type, body, hive, fx)

    def _promotion_state(self, candidate: str) -> dict[str, Any]:
        conn = self.store.conn
        m = db.member(conn, candidate)
        voters = set(self._voters(conn, candidate))
        got = {v for v, _ in db.vouches(conn, candidate)} & voters
        return {
            "candidate": candidate, "vouches": len(got),
            "quorum": promotion_quorum(len(voters)), "tier": m.tier if m else None,
        }  # fmt: skip

    def _ban_state(self, pid: str) -> dict[str, Any]:
        conn = self.store.conn
        p = db.proposal(conn, pid)
        assert p is not None
        voters = set(self._voters(conn, p["target"]))
        yes = {v for v, a, _ in db.votes(conn, pid) if a} & voters
        return {
            "proposal_id": pid, "target": p["target"], "yes": len(yes),
            "quorum": ban_quorum(len(voters)), "banned": db.is_banned(conn, p["target"]),
        }  # fmt: skip

    # --- our own messages -------------------------------------------------------------------

    async def _originate(self, h: db.Hive, msg_type: MsgType, body: wire.Body) -> _Effects:
        """Sign a member message, apply it here exactly as a receiver would, and queue it for
        every other active member — in one transaction."""
        now = self.clock.now()
        _, frame = self._frame(msg_type, body, h.hive_id)
        msg = wire.parse_frame(frame)
        fx = _Effects()
        with self.store.transaction(now) as tx:
            peers = [m.node_id for m in db.members(tx) if m.node_id != self.me]
            self._apply(tx, msg, fx)
            db.claim(tx, self.me, msg.id, now)
            self._enqueue_frame(tx, peers, msg, fx)
        return fx

    def _frame(self, msg_type: MsgType, body: wire.Body, hive: str = "") -> tuple[str, bytes]:
        if not hive:
            h = db.hive(self.store.conn)
            hive = h.hive_id if h else ""
        msg_id = secrets.token_hex(16)
        frame = wire.build_frame(
            self.keys, msg_type, body, hive=hive, msg_id=msg_id, node=self.me, ts=self.clock.now()
        )
        return msg_id, frame

    def _enqueue(
        self, tx: Tx, peers: list[str], msg_type: MsgType, body: wire.Body, hive: str, fx: _Effects
    ) -> None:
        if not peers:
            return
        msg_id, frame = self._frame(msg_type, body, hive)
        for peer in peers:
            db.enqueue(tx, peer, msg_id, msg_type, frame, tx.now, self.config.outbox_ttl_s)
            fx.flush.add(peer)

    def _enqueue_frame(self, tx: Tx, peers: list[str], msg: Message, fx: _Effects) -> None:
        for peer in peers:
            db.enqueue(tx, peer, msg.id, msg.type, msg.raw, tx.now, self.config.outbox_ttl_s)
            fx.flush.add(peer)

    async def _after(self, fx: _Effects) -> None:
        for peer, frame in fx.direct:
            await self._send_direct(peer, frame)
        for peer in sorted(fx.flush):
            await self._flush(peer)

    async def _send_direct(self, peer: str, frame: bytes) -> None:
        try:
            await self.node.sendcustommsg(peer, frame)
        except HiveError as err:
            log.info("fleet: could not send to %s: %s", short(peer), err)

    async def _ack(self, peer: str, msg: Message, status: str, err: HiveError | None) -> None:
        body = wire.MsgAck(
            ref=msg.id, status=status,
            code=err.code if err else "", message=err.message[:280] if err else "",
        )  # fmt: skip
        _, frame = self._frame(MsgType.MSG_ACK, body, msg.hive)
        await self._send_direct(peer, frame)

    async def _flush(self, peer: str) -> None:
        """Send what is due to one connected peer; each attempt moves its next retry back."""
        if peer not in self.connected:
            return
        async with self._sending.setdefault(peer, anyio.Lock()):
            await self._flush_locked(peer)
        self._wake.set()

    async def _flush_locked(self, peer: str) -> None:
        now = self.clock.now()
        cfg = self.config
        for item in db.due(self.store.conn, peer, float(now), cfg.in_flight):
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

    # --- helpers ---------------------------------------------------------------------------

    def _hive(self, tx: Any = None) -> db.Hive:
        h = db.hive(tx if tx is not None else self.store.conn)
        if h is None:
            raise NotMember("this node is not in a hive (hive-genesis or hive-join first)")
        return h

    def _member(
        self, tx: Any, node: str, key: str, *, full: bool = False, what: str = ""
    ) -> db.Member:
        if db.is_banned(tx, node):
            raise Banned(f"{short(node)} is banned from the hive")
        m = db.member(tx, node)
        if m is None or m.status != "active":
            raise NotMember(f"{short(node)} is not an active member of this hive")
        if m.pubkey != key:
            raise BadSignature(f"signed by a key that is not {short(node)}'s bound Nostr key")
        if full and m.tier != "member":
            raise Restricted(f"only full members may {what}; {short(node)} is a {m.tier}")
        return m

    def _full_member(self, node: str, key: str, what: str) -> db.Member:
        return self._member(self.store.conn, node, key, full=True, what=what)

    async def _binding(self) -> str:
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

    def _refused(self, err: HiveError, peer: str) -> None:
        log.info("fleet: refused a message from %s: %s", short(peer), err)
        self._count(err.code)

    def _count(self, code: str) -> None:
        with self.store.transaction(self.clock.now(), durable=False) as tx:
            tx.count_errors({code: 1})
