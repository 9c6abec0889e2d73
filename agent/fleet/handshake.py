"""The join handshake, a fleet component: invite tickets, and HELLO → CHALLENGE → ATTEST →
WELCOME between a joiner and a full member (the only frames accepted from a node outside the
hive).  The joiner's progress is one store row (`fleet_joining`), so a restart resumes it; its
HELLO and ATTEST go direct and are sent again while unanswered, then it gives up."""

from __future__ import annotations

import secrets
from enum import StrEnum
from typing import Any

from agent import __version__
from agent.fleet import facts, roster
from agent.fleet.facts import FactKind
from agent.fleet.kernel import Effects, FleetComponent, short
from agent.node.models import ChannelState
from agent.store import fleet as db
from agent.store.db import Db, Tx
from events import fleet as wire
from events import lnsig
from events.errors import (
    BadSignature,
    Banned,
    Expired,
    InvalidParams,
    InvalidPayload,
    RateLimited,
    Replayed,
    Unauthorized,
)
from events.fleet import AckStatus, Message, MsgType

JOINING_KV = "fleet_joining"


class JoinState(StrEnum):
    """The joiner's progress (the `state` of its `fleet_joining` row)."""

    HELLO_SENT = "hello_sent"  # waiting for the issuer's CHALLENGE
    ATTESTED = "attested"  # ATTEST sent, waiting for WELCOME
    JOINED = "joined"  # a neophyte of the hive
    REFUSED = "refused"  # the issuer refused, or never answered; `error` says why


class Handshake(FleetComponent):
    owns = frozenset({MsgType.HELLO, MsgType.CHALLENGE, MsgType.ATTEST, MsgType.WELCOME})
    admits_strangers = True

    # --- operator commands ---------------------------------------------------------------

    async def invite(
        self, invitee: str, valid_hours: int = 24, requires: list[str] | None = None
    ) -> dict[str, Any]:
        """A signed invite ticket naming `invitee`, expiring after `valid_hours`."""
        k = self.kernel
        if not 1 <= valid_hours <= k.config.max_ticket_hours:
            raise InvalidParams(f"valid_hours must be 1–{k.config.max_ticket_hours}")
        bits = wire.requirement_bits(requires or [])
        if not wire.is_node_id(invitee):
            raise InvalidParams(f"{invitee!r:.80} is not a node id (66 hex digits)")
        async with k.lock:
            h = roster.current_hive(k.store)
            roster.active_member(k.store, k.me, k.key, full=True, what="invite")
            if db.is_banned(k.store, invitee):
                raise Banned(f"{short(invitee)} is banned from the hive")
            existing = db.member(k.store, invitee)
            if existing and existing.status == "active":
                raise InvalidParams(f"{short(invitee)} is already a member")
            now = k.clock.now()
            body = wire.TicketBody(
                hive=h.hive_id, ticket_id=secrets.token_hex(16), issuer=k.me,
                issuer_key=k.key, invitee=invitee, issued_at=now,
                expires_at=now + valid_hours * 3600, requires=bits,
            )  # fmt: skip
            ticket = wire.sign_ticket(k.keys, body)
            text = wire.encode_ticket(ticket)
            with k.store.transaction(now) as tx:
                db.record_ticket(tx, ticket.ticket_id, invitee, k.me, ticket.expires_at, text)
            return {
                "ticket": text, "ticket_id": ticket.ticket_id, "invitee": invitee,
                "expires_at": ticket.expires_at, "requires": wire.requirement_names(bits),
            }  # fmt: skip

    async def join(self, text: str) -> dict[str, Any]:
        """Present an invite ticket to its issuer: connect and send HELLO.  The rest of the
        handshake runs as messages arrive; `joining()` shows how far it got."""
        k = self.kernel
        ticket = wire.decode_ticket(text)
        async with k.lock:
            if db.hive(k.store):
                raise InvalidParams("this node is already in a hive; leave it first")
            if ticket.invitee != k.me:
                raise Unauthorized(f"this ticket names node {short(ticket.invitee)}, not this node")
            now = k.clock.now()
            if ticket.expires_at <= now:
                raise Expired("this invite ticket has expired; ask for a new one")
        if ticket.issuer not in k.connected:
            # outside the lock: lightningd answers `connect` only after this plugin's own
            # peer_connected hook, and frames from other peers keep flowing meanwhile
            await k.node.connect(ticket.issuer)
            k.connected.add(ticket.issuer)
        async with k.lock:
            if db.hive(k.store):
                raise InvalidParams("this node is already in a hive; leave it first")
            now = k.clock.now()  # the connect may have taken a while
            hello = wire.Hello(ticket=text, supported_versions=[wire.VERSION])
            msg_id, frame = k.frame(MsgType.HELLO, hello, ticket.hive)
            joining = {
                "hive": ticket.hive, "issuer": ticket.issuer, "issuer_key": ticket.issuer_key,
                "ticket": text, "ticket_id": ticket.ticket_id, "state": JoinState.HELLO_SENT,
                "sent": [msg_id], "error": None, "started_at": now,
                "frame": frame.hex(), "sent_at": now, "tries": 1,
            }  # fmt: skip
            with k.store.transaction(now) as tx:
                tx.set_kv(JOINING_KV, joining)
        await k.send_direct(ticket.issuer, frame)
        return {"state": JoinState.HELLO_SENT, "hive": ticket.hive, "issuer": ticket.issuer}

    def joining(self) -> dict[str, Any] | None:
        found = self.kernel.store.kv(JOINING_KV)
        return found if isinstance(found, dict) else None

    def forget(self, tx: Tx) -> None:
        """The node left its hive: no join is in progress either."""
        tx.set_kv(JOINING_KV, None)

    # --- the kernel's calls --------------------------------------------------------------

    async def prepare(self, peer: str, msg: Message) -> Any:
        k = self.kernel
        if msg.type == MsgType.HELLO:  # only a peer with a channel to us may knock
            # … and lightningd is asked only for a knock that could be let in: any connected
            # peer can send HELLO, and every one would cost a listpeerchannels
            self._knock(k.store, peer, msg, k.clock.now())
            return any(
                c.peer_id == peer and c.state == ChannelState.NORMAL
                for c in await k.node.channels()
            )
        if msg.type == MsgType.CHALLENGE:
            return await k.binding()
        return None

    def apply(self, tx: Tx, peer: str, msg: Message, prepared: Any, fx: Effects) -> None:
        if msg.type == MsgType.HELLO:
            self._on_hello(tx, peer, msg, bool(prepared), fx)
        elif msg.type == MsgType.CHALLENGE:
            self._on_challenge(tx, peer, msg, str(prepared), fx)
        elif msg.type == MsgType.ATTEST:
            self._on_attest(tx, peer, msg, fx)
        else:
            self._on_welcome(tx, peer, msg)

    def on_ack(self, tx: Tx, peer: str, ack: wire.MsgAck) -> None:
        """A refusal of our HELLO or ATTEST ends the join (a rate limit only delays it)."""
        joining = self.kernel.store.kv(JOINING_KV)
        waiting = (JoinState.HELLO_SENT, JoinState.ATTESTED)  # a late refusal undoes no join
        ours = bool(joining) and joining["issuer"] == peer and ack.ref in joining["sent"]
        ours = ours and joining["state"] in waiting
        if ours and ack.outcome != AckStatus.OK and ack.code and ack.code != RateLimited.code:
            joining.update(error=f"{ack.code}: {ack.message}", state=JoinState.REFUSED)
            tx.set_kv(JOINING_KV, joining)

    async def tick(self) -> None:
        """The handshake's own messages go direct: an unanswered HELLO is sent again (a new
        one: the old challenge may be lost), an unanswered ATTEST as it was; then give up."""
        k = self.kernel
        async with k.lock:
            joining = k.store.kv(JOINING_KV)
            if not joining or joining["state"] not in (JoinState.HELLO_SENT, JoinState.ATTESTED):
                return
            now = k.clock.now()
            if now - joining["sent_at"] < k.config.handshake_retry_s:
                return
            if joining["tries"] >= k.config.handshake_tries:
                then = (  # after ATTEST the issuer may have admitted us: its WELCOME may come
                    "its WELCOME still completes the join if it comes; else ask the issuer"
                    if joining["state"] == JoinState.ATTESTED
                    else "check the connection and run hive-join again"
                )
                joining.update(
                    state=JoinState.REFUSED, gave_up=joining["state"],
                    error=f"EXPIRED: no answer from the issuer after {joining['tries']} tries; "
                    + then,
                )  # fmt: skip
                frame = b""
            else:
                if joining["state"] == JoinState.HELLO_SENT:
                    hello = wire.Hello(ticket=joining["ticket"], supported_versions=[wire.VERSION])
                    msg_id, frame = k.frame(MsgType.HELLO, hello, joining["hive"])
                    joining["sent"] = [*joining["sent"], msg_id]
                else:
                    frame = bytes.fromhex(joining["frame"])
                joining.update(sent_at=now, tries=joining["tries"] + 1, frame=frame.hex())
            with k.store.transaction(now) as tx:
                tx.set_kv(JOINING_KV, joining)
        if frame:
            await k.send_direct(joining["issuer"], frame)

    # --- the member's side ---------------------------------------------------------------

    def _knock(self, store: Db, peer: str, msg: Message, now: int) -> wire.Ticket:
        """What a HELLO must pass that the store alone can tell: its ticket (ours, for the
        peer, unused, unexpired), no member yet, and one HELLO per peer per interval."""
        cfg = self.kernel.config
        h = roster.current_hive(store)
        body = msg.body_as(wire.Hello)
        existing = db.member(store, peer)
        if existing and existing.status == "active":
            raise Replayed(f"{short(peer)} is already a member")
        ticket = roster.check_ticket(store, h, body.ticket, peer, at=now)
        if msg.hive != h.hive_id:
            raise Unauthorized("HELLO names another hive than its ticket")
        previous = db.challenge(store, peer)
        if previous and now - previous[3] < cfg.hello_interval_s:
            raise RateLimited(f"one HELLO per {cfg.hello_interval_s} s per peer; try again shortly")
        return ticket

    def _on_hello(self, tx: Tx, peer: str, msg: Message, has_channel: bool, fx: Effects) -> None:
        cfg = self.kernel.config
        h = roster.current_hive(tx)
        ticket = self._knock(tx, peer, msg, tx.now)
        if not has_channel:
            raise Unauthorized("HELLO is accepted only from a peer with a channel to a member")
        if db.pending_challenges(tx, tx.now - cfg.challenge_ttl_s) >= cfg.max_pending_challenges:
            raise RateLimited("too many joins are pending here; try again later")
        nonce = secrets.token_hex(32)
        db.put_challenge(tx, peer, nonce, ticket.ticket_id, msg.sender_key, tx.now)
        body_c = wire.Challenge(nonce=nonce, ticket_id=ticket.ticket_id, ttl_s=cfg.challenge_ttl_s)
        _, frame = self.kernel.frame(MsgType.CHALLENGE, body_c, h.hive_id)
        fx.direct.append((peer, frame))

    def _on_attest(self, tx: Tx, peer: str, msg: Message, fx: Effects) -> None:
        k = self.kernel
        h = roster.current_hive(tx)
        body = msg.body_as(wire.Attest)
        pending = db.challenge(tx, peer)
        if pending is None:
            raise Unauthorized("ATTEST without a pending challenge; send HELLO first")
        nonce, ticket_id, hello_key, created = pending
        if tx.now - created > k.config.challenge_ttl_s:
            raise Expired("the challenge expired; start again with HELLO")
        if msg.sender_key != hello_key:
            raise BadSignature("ATTEST is signed by another key than the HELLO it answers")
        if body.manifest.nonce != nonce:
            raise Unauthorized("ATTEST answers a different challenge")
        ticket = roster.check_admission(tx, h, msg, at=tx.now)
        if ticket.ticket_id != ticket_id:
            raise Unauthorized("ATTEST presents another ticket than its HELLO")
        db.drop_challenge(tx, peer)
        roster.admit(tx, msg, ticket, joined_at=tx.now)
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
        k.enqueue(tx, [peer], MsgType.WELCOME, welcome, h.hive_id, fx)
        others = [m.node_id for m in db.members(tx) if m.node_id not in (k.me, peer)]
        joined = wire.MemberJoined(attest=msg.raw.hex(), joined_at=tx.now)
        news = k.enqueue(tx, others, MsgType.MEMBER_JOINED, joined, h.hive_id, fx)
        facts.record(tx, FactKind.JOIN, msg.node, news)  # the admission, as every member knows it

    # --- the joiner's side ---------------------------------------------------------------

    def _joining(self, peer: str, msg: Message, state: JoinState) -> dict[str, Any]:
        joining = self.kernel.store.kv(JOINING_KV)
        if not joining or joining["issuer"] != peer:
            raise Unauthorized("no join in progress with this peer")
        # the issuer admitted us at our ATTEST: its WELCOME is the truth, though we stopped
        # waiting for it (else it would count a neophyte that does not know it is one)
        late = state == JoinState.ATTESTED and joining.get("gave_up") == state
        if joining["state"] != state and not (late and joining["state"] == JoinState.REFUSED):
            raise Replayed(f"the join is at {joining['state']}, not expecting {msg.type.name}")
        if msg.sender_key != joining["issuer_key"] or msg.hive != joining["hive"]:
            raise BadSignature("not signed by the ticket's issuer for the ticket's hive")
        return dict(joining)

    def _on_challenge(self, tx: Tx, peer: str, msg: Message, binding: str, fx: Effects) -> None:
        k = self.kernel
        joining = self._joining(peer, msg, JoinState.HELLO_SENT)
        body = msg.body_as(wire.Challenge)
        if body.ticket_id != joining["ticket_id"]:
            raise Unauthorized("the challenge is for another ticket")
        manifest = wire.Manifest(
            node_id=k.me, pubkey=k.key, version=__version__,
            features=list(k.config.features), timestamp=tx.now, nonce=body.nonce,
        )  # fmt: skip
        attest = wire.Attest(ticket=joining["ticket"], manifest=manifest, binding=binding)
        msg_id, frame = k.frame(MsgType.ATTEST, attest, joining["hive"])
        joining.update(
            state=JoinState.ATTESTED, sent=[*joining["sent"], msg_id], frame=frame.hex(),
            sent_at=tx.now, tries=1,
        )  # fmt: skip
        tx.set_kv(JOINING_KV, joining)
        fx.direct.append((peer, frame))

    def _on_welcome(self, tx: Tx, peer: str, msg: Message) -> None:
        k = self.kernel
        joining = self._joining(peer, msg, JoinState.ATTESTED)
        body = msg.body_as(wire.Welcome)
        for entry in body.members:
            if not lnsig.check(entry.pubkey, entry.binding, entry.node_id):
                raise BadSignature(f"WELCOME lists {short(entry.node_id)} with a bad binding")
        if not any(e.node_id == k.me and e.pubkey == k.key for e in body.members):
            raise InvalidPayload("WELCOME does not list this node")
        db.set_hive(tx, db.Hive(joining["hive"], body.admin, body.created_at, tx.now))
        for e in body.members:
            db.add_member(
                tx, e.node_id, e.pubkey, e.binding, e.tier, e.joined_at, promoted_at=e.promoted_at
            )
        for b in body.bans:
            db.ban(tx, b.target, b.reason, b.decided_at, "welcome")
        db.use_ticket(tx, joining["ticket_id"], k.me, peer, 0, k.me, tx.now)
        joining.update(state=JoinState.JOINED, error=None)
        tx.set_kv(JOINING_KV, joining)
