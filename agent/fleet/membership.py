"""Membership and governance, a fleet component: genesis, the news of a member who joined,
vouching and promotion, ban proposals, votes and bans, voluntary exit — and the kernel's
`Standing` (banned peers are not heard; member frames must be for our hive).

Every decision (a promotion, a ban) is announced by whoever sees its quorum first, carrying
its proof: the signed vouches or votes and the electorate counted.  Quorums count active full
members (seen within 24 h, as the kernel's `Presence` port says) and this node.  Receivers
judge a decision by the electorate it names, not by their own view of who is a full member,
so every member's result is independent of the order messages arrive in — provided the named
electorate is plausible here (at least half the voters this node counts).  The quorum rules
are pure (agent/fleet/rules.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from agent.fleet import decisions, facts, roster
from agent.fleet.facts import FactKind
from agent.fleet.kernel import Effects, FleetComponent, short
from agent.fleet.rules import (
    ban_quorum,
    plausible_electorate,
    promotion_quorum,
)
from agent.fleet.rules import electorate as voters_of
from agent.store import fleet as db
from agent.store.db import Db, Tx
from events import fleet as wire
from events.errors import (
    BadSignature,
    Banned,
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

# open ban proposals one member may hold (it votes on an open one rather than propose again):
# beyond, RATE_LIMITED — else a member's flood of proposals, each against any node id, was
# stored and weighed by every membership frame after it
MAX_OPEN_PROPOSALS = 20


class Membership(FleetComponent):
    owns = frozenset(
        {
            MsgType.MEMBER_JOINED, MsgType.VOUCH, MsgType.PROMOTION, MsgType.BAN_PROPOSAL,
            MsgType.BAN_VOTE, MsgType.BAN, MsgType.MEMBER_LEFT,
        }
    )  # fmt: skip
    facts = frozenset({MsgType.MEMBER_JOINED, MsgType.PROMOTION, MsgType.BAN, MsgType.MEMBER_LEFT})

    def __init__(self, on_leave: Callable[[Tx], None] | None = None) -> None:
        self._on_leave = on_leave  # what else a departure clears (the join in progress)

    # --- Standing (asked by the kernel for every frame) -----------------------------------

    def check_peer(self, store: Db, peer: str) -> None:
        if db.is_banned(store, peer):
            raise Banned(f"{short(peer)} is banned from the hive; ignored")

    def check_frame(self, tx: Tx, msg: Message) -> None:
        h = roster.current_hive(tx)
        if msg.hive != h.hive_id:
            raise NotMember(f"the message is for hive {msg.hive or '(none)'}, not {h.hive_id}")

    def check_relayer(self, tx: Tx, peer: str) -> None:
        m = db.member(tx, peer)
        if m is None or m.status != "active":
            raise Unauthorized(
                f"{short(peer)} is not an active member: it may not hand on others' messages"
            )

    # --- operator commands ---------------------------------------------------------------

    async def genesis(self) -> dict[str, Any]:
        """Create a new hive with this node as its admin and first member."""
        k = self.kernel
        async with k.lock:
            if db.hive(k.store):
                raise InvalidParams("this node is already in a hive; leave it first")
            binding = await k.binding()
            now = k.clock.now()
            hive_id = "hive_" + secrets.token_hex(8)
            with k.store.transaction(now) as tx:
                db.set_hive(tx, db.Hive(hive_id, k.me, now, now))
                db.add_member(tx, k.me, k.key, binding, "member", now, promoted_at=now)
            return {"hive_id": hive_id, "admin": k.me, "tier": "member"}

    async def vouch(self, candidate: str) -> dict[str, Any]:
        """Vouch for a neophyte's promotion to member."""
        k = self.kernel
        async with k.lock:
            h = roster.current_hive(k.store)
            roster.active_member(k.store, k.me, k.key, full=True, what="vouch")
            target = db.member(k.store, candidate)
            if target is None or target.status != "active":
                raise NotFound(f"{short(candidate)} is not an active member")
            if target.tier != "neophyte":
                raise InvalidParams(f"{short(candidate)} is already a full member")
            if any(v == k.me for v, _ in db.vouches(k.store, candidate)):
                raise Replayed(f"this node already vouched for {short(candidate)}")
            effects = await self._originate(h, MsgType.VOUCH, wire.Vouch(candidate=candidate))
            state = _promotion_state(k.store, candidate, set(self._voters(k.store, candidate)))
        await k.after(effects)
        return state

    async def ban(self, target: str, reason: str = "", approve: bool = True) -> dict[str, Any]:
        """Propose a fleet-wide ban of `target`, or vote on the open proposal against it."""
        k = self.kernel
        if len(reason) > 280:
            raise InvalidParams("a ban reason is at most 280 characters")
        async with k.lock:
            h = roster.current_hive(k.store)
            roster.active_member(k.store, k.me, k.key, full=True, what="vote on bans")
            if target == k.me:
                raise InvalidParams("a node cannot ban itself; use leave")
            if not wire.is_node_id(target):
                raise InvalidParams(f"{target!r:.80} is not a node id (66 hex digits)")
            if db.is_banned(k.store, target):
                return {"target": target, "banned": True, "proposal_id": None}
            pid = db.open_proposal_for(k.store, target)
            if pid is None:
                if not approve:
                    raise NotFound(f"there is no open ban proposal against {short(target)}")
                pid = secrets.token_hex(16)
                body: wire.Body = wire.BanProposal(proposal_id=pid, target=target, reason=reason)
                effects = await self._originate(h, MsgType.BAN_PROPOSAL, body)
            else:
                if any(v == k.me for v, _, _ in db.votes(k.store, pid)):
                    raise Replayed(f"this node already voted on proposal {pid[:12]}…")
                body = wire.BanVote(proposal_id=pid, target=target, approve=approve)
                effects = await self._originate(h, MsgType.BAN_VOTE, body)
            state = _ban_state(k.store, pid, lambda target: self._voters(k.store, target))
        await k.after(effects)
        return state

    async def leave(self, reason: str = "") -> dict[str, Any]:
        """Leave the hive: tell every member, then forget the hive.  Nothing stays locked."""
        k = self.kernel
        async with k.lock:
            h = roster.current_hive(k.store)
            now = k.clock.now()
            effects = Effects()
            with k.store.transaction(now) as tx:
                others = [m.node_id for m in db.members(tx) if m.node_id != k.me]
                body = wire.MemberLeft(reason=reason[:280])
                k.enqueue(tx, others, MsgType.MEMBER_LEFT, body, h.hive_id, effects)
                db.forget_hive(tx)
                if self._on_leave is not None:
                    self._on_leave(tx)
        await k.after(effects)
        return {"left": h.hive_id, "goodbyes_queued": len(effects.flush)}

    # --- reads ---------------------------------------------------------------------------

    def members(self) -> dict[str, Any]:
        store = self.kernel.store
        return {
            "members": [m.public() for m in db.members(store, status=None)],
            "bans": db.bans(store),
            "ban_proposals": db.proposals(store),
        }

    def summary(self) -> dict[str, Any]:
        k = self.kernel
        store = k.store
        h = db.hive(store)
        mine = db.member(store, k.me)
        active = db.members(store)
        return {
            "hive_id": h.hive_id if h else None,
            "admin": h.admin if h else None,
            "tier": mine.tier if mine and h else None,
            "members": {
                "member": sum(m.tier == "member" for m in active),
                "neophyte": sum(m.tier == "neophyte" for m in active),
            },
            "bans": len(db.bans(store)),
        }

    def view(self) -> dict[str, Any]:
        """What every member must agree on: hive, active members with tiers, bans."""
        store = self.kernel.store
        h = db.hive(store)
        return {
            "hive_id": h.hive_id if h else None,
            "members": {m.node_id: m.tier for m in db.members(store)},
            "bans": sorted(b["target"] for b in db.bans(store)),
        }

    # --- the kernel's calls --------------------------------------------------------------

    def apply(self, tx: Tx, peer: str, msg: Message, prepared: Any, fx: Effects) -> None:
        handlers = {
            MsgType.MEMBER_JOINED: self._on_member_joined,
            MsgType.VOUCH: self._on_vouch,
            MsgType.PROMOTION: self._on_promotion,
            MsgType.BAN_PROPOSAL: self._on_ban_proposal,
            MsgType.BAN_VOTE: self._on_ban_vote,
            MsgType.BAN: self._on_ban,
            MsgType.MEMBER_LEFT: self._on_member_left,
        }
        handlers[msg.type](tx, msg, fx)

    def housekeeping(self, tx: Tx, now: int) -> None:
        db.expire_proposals(tx, now - self.kernel.config.ban_ttl_s)
        if db.hive(tx) is None:
            facts.clear(tx)
            return
        active = {m.node_id for m in db.members(tx)}
        facts.drop(tx, {FactKind.JOIN, FactKind.PROMOTION}, keep=active)
        facts.drop(tx, {FactKind.BAN}, keep={b["target"] for b in db.bans(tx)})
        facts.expire(tx, now)

    # --- facts handed on by a member (anti-entropy) ---------------------------------------

    def apply_fact(self, tx: Tx, relayer: str, msg: Message, fx: Effects) -> None:
        """A decision handed on by `relayer`.  One we already reflect (the member known, the
        promotion or ban in force, the leave recorded) is kept as a fact without judging its
        proof again — only its author's bound key is checked — since it changes nothing;
        anything else is judged exactly as if its author had sent it now."""
        author = db.member(tx, msg.node)
        if author is None:
            raise NotMember(f"{short(msg.node)}, the author, is not known here (yet)")
        if author.pubkey != msg.sender_key:
            raise BadSignature(f"not signed by {short(msg.node)}'s bound key")
        subject = decisions.subject(msg)
        if decisions.reflected(tx, msg, subject, self.kernel.config.future_skew_s):
            decisions.record(tx, msg, subject)
        else:
            self.apply(tx, msg.node, msg, None, fx)

    # --- members' messages ---------------------------------------------------------------

    def _on_member_joined(self, tx: Tx, msg: Message, fx: Effects) -> None:
        roster.active_member(tx, msg.node, msg.sender_key)
        body = msg.body_as(wire.MemberJoined)
        inner = wire.parse_frame(bytes.fromhex(body.attest))
        if inner.type != MsgType.ATTEST:
            raise InvalidPayload("MEMBER_JOINED must carry the joiner's ATTEST")
        existing = db.member(tx, inner.node)
        if existing and existing.status == "active":
            decisions.record(tx, msg, inner.node)  # already known (e.g. from WELCOME)
            return
        if db.is_banned(tx, inner.node):
            raise Banned(f"{short(inner.node)} is banned from the hive")
        ticket = roster.check_admission(tx, roster.current_hive(tx), inner, at=inner.ts)
        roster.admit(tx, inner, ticket, joined_at=body.joined_at)
        decisions.record(tx, msg, inner.node)

    def _on_vouch(self, tx: Tx, msg: Message, fx: Effects) -> None:
        roster.active_member(tx, msg.node, msg.sender_key, full=True, what="vouch")
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

    def _on_promotion(self, tx: Tx, msg: Message, fx: Effects) -> None:
        """A promotion another member decided, accepted on its own proof: vouches signed by
        the members of the electorate it names, at least the quorum for that electorate."""
        roster.active_member(tx, msg.node, msg.sender_key)
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
            decisions.record(tx, msg, body.candidate)
        self._evaluate(tx, fx)

    def _on_ban(self, tx: Tx, msg: Message, fx: Effects) -> None:
        """A ban another member decided, accepted on its own proof (as `_on_promotion`)."""
        roster.active_member(tx, msg.node, msg.sender_key)
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
        decisions.record(tx, msg, body.target)
        self._evaluate(tx, fx)

    def _on_ban_proposal(self, tx: Tx, msg: Message, fx: Effects) -> None:
        roster.active_member(tx, msg.node, msg.sender_key, full=True, what="propose bans")
        body = msg.body_as(wire.BanProposal)
        if body.target == msg.node:
            raise InvalidPayload("a member cannot propose to ban itself")
        if db.proposal(tx, body.proposal_id) is None and (
            len(db.open_proposals(tx, msg.node)) >= MAX_OPEN_PROPOSALS
        ):
            raise RateLimited(f"{short(msg.node)} holds {MAX_OPEN_PROPOSALS} open ban proposals")
        raw = msg.raw.hex()
        if db.add_proposal(tx, body.proposal_id, body.target, msg.node, body.reason, raw, tx.now):
            db.add_vote(tx, body.proposal_id, msg.node, True, raw, tx.now)
            self._evaluate(tx, fx)

    def _on_ban_vote(self, tx: Tx, msg: Message, fx: Effects) -> None:
        roster.active_member(tx, msg.node, msg.sender_key, full=True, what="vote on bans")
        body = msg.body_as(wire.BanVote)
        found = db.proposal(tx, body.proposal_id)
        if found is None:
            raise NotFound(f"ban proposal {body.proposal_id[:12]}… is not known here (yet)")
        if found["target"] != body.target:
            raise InvalidPayload("the vote names another target than its proposal")
        if db.add_vote(tx, body.proposal_id, msg.node, body.approve, msg.raw.hex(), tx.now):
            self._evaluate(tx, fx)

    def _on_member_left(self, tx: Tx, msg: Message, fx: Effects) -> None:
        m = roster.active_member(tx, msg.node, msg.sender_key)
        if msg.ts < m.joined_at - self.kernel.config.future_skew_s:
            raise Replayed(f"a leave dated before {short(msg.node)} (re)joined the hive")
        decisions.record(tx, msg, msg.node)
        if db.set_status(tx, msg.node, "left", tx.now):
            db.drop_peer(tx, msg.node, "the member left the hive")
            decisions.forget(tx)
            self._evaluate(tx, fx)

    # --- governance ----------------------------------------------------------------------

    def _electorate(self, tx: Tx, names: list[str], subject: str) -> set[str]:
        electorate = set(names)
        if len(electorate) != len(names) or subject in electorate:
            raise InvalidPayload("the electorate repeats a node or includes the subject")
        for node in electorate:  # voters: full members, not banned (a neophyte's or a banned
            m = db.member(tx, node)  # node's signature decides nothing, inside a proof either)
            if m is None:
                raise NotFound(f"the electorate names {short(node)}, not known here (yet)")
            if m.status == "banned" or m.tier != "member":
                what = "banned" if m.status == "banned" else f"a {m.tier}"
                err = InvalidPayload if m.status == "banned" else Restricted  # (retried)
                raise err(f"the electorate names {short(node)}, {what} here: not a voter")
        ours = len(self._voters(tx, subject))
        if not plausible_electorate(len(electorate), ours):
            raise InvalidPayload(
                f"the electorate names {len(electorate)} voters; {ours} are active here"
            )
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
        if inner.hive != roster.current_hive(tx).hive_id:
            raise InvalidPayload("an embedded frame belongs to another hive")
        if inner.node not in electorate:
            raise InvalidPayload(f"{short(inner.node)} signed, but is not in the electorate")
        signer = db.member(tx, inner.node)
        if signer is None or signer.pubkey != inner.sender_key:
            raise BadSignature(f"the embedded {want.name} is not signed by its node's bound key")
        db.claim(tx, inner.node, inner.id, tx.now, via="proof")
        return inner

    def _voters(self, store: Db, exclude: str = "") -> list[str]:
        """Who votes on `exclude`: active full members (seen within 24 h) and this node."""
        k = self.kernel
        full = [m.node_id for m in db.members(store) if m.tier == "member"]
        if k.presence is None:  # nothing tracks presence: every full member counts
            return [m for m in full if m != exclude]
        now = store.now if isinstance(store, Tx) else k.clock.now()
        return sorted(voters_of(full, k.presence.active(store, now), k.me, exclude))

    def _evaluate(self, tx: Tx, fx: Effects) -> None:
        """Apply every promotion and ban the recorded vouches and votes now carry, and tell
        every member, with the proof and the electorate counted.

        Repeated until nothing changes: a promotion adds a voter, a ban removes one.
        """
        hive_id = roster.current_hive(tx).hive_id
        while self._promote_due(tx, hive_id, fx) | self._ban_due(tx, hive_id, fx):
            pass

    def _promote_due(self, tx: Tx, hive_id: str, fx: Effects) -> bool:
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
                news = self._broadcast(tx, MsgType.PROMOTION, proof, hive_id, fx)
                decisions.record(tx, news, m.node_id)
        return progressed

    def _ban_due(self, tx: Tx, hive_id: str, fx: Effects) -> bool:
        progressed = False
        for pid in db.open_proposals(tx):  # (the closed ones weigh nothing)
            p = db.proposal(tx, pid)
            if p is None or p["state"] != "open":
                continue
            voters = set(self._voters(tx, p["target"]))
            yes = {v: f for v, a, f in db.votes(tx, p["proposal_id"]) if a and v in voters}
            if voters and len(yes) >= ban_quorum(len(voters)):
                self._enact_ban(tx, p["target"], p["reason"], p["proposal_id"])
                progressed = True
                proof = wire.Ban(
                    target=p["target"], electorate=sorted(voters), proposal=p["frame"],
                    votes=[f for v, f in sorted(yes.items()) if f != p["frame"]],
                )  # fmt: skip
                news = self._broadcast(tx, MsgType.BAN, proof, hive_id, fx, skip=p["target"])
                decisions.record(tx, news, p["target"])
        return progressed

    def _enact_ban(self, tx: Tx, target: str, reason: str, proposal_id: str) -> None:
        db.ban(tx, target, reason, tx.now, proposal_id)
        db.set_status(tx, target, "banned", tx.now)
        db.drop_peer(tx, target, "the node was banned")
        db.drop_challenge(tx, target)
        decisions.forget(tx)

    def _broadcast(
        self, tx: Tx, msg_type: MsgType, body: wire.Body, hive: str, fx: Effects, skip: str = ""
    ) -> Message:
        peers = [m.node_id for m in db.members(tx) if m.node_id not in (self.kernel.me, skip)]
        return self.kernel.enqueue(tx, peers, msg_type, body, hive, fx)

    async def _originate(self, h: db.Hive, msg_type: MsgType, body: wire.Body) -> Effects:
        me = self.kernel.me

        def others(tx: Tx) -> list[str]:
            return [m.node_id for m in db.members(tx) if m.node_id != me]

        return await self.kernel.originate(h.hive_id, msg_type, body, others)


def _promotion_state(store: Db, candidate: str, voters: set[str]) -> dict[str, Any]:
    m = db.member(store, candidate)
    got = {v for v, _ in db.vouches(store, candidate)} & voters
    return {
        "candidate": candidate, "vouches": len(got),
        "quorum": promotion_quorum(len(voters)), "tier": m.tier if m else None,
    }  # fmt: skip


def _ban_state(store: Db, pid: str, voters_of: Callable[[str], list[str]]) -> dict[str, Any]:
    p = db.proposal(store, pid)
    assert p is not None
    voters = set(voters_of(p["target"]))
    yes = {v for v, a, _ in db.votes(store, pid) if a} & voters
    return {
        "proposal_id": pid, "target": p["target"], "yes": len(yes),
        "quorum": ban_quorum(len(voters)), "banned": db.is_banned(store, p["target"]),
    }  # fmt: skip
