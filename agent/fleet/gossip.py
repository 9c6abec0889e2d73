"""State gossip, a fleet component: each member's signed state record (GOSSIP), sent when a
change crosses a threshold or the heartbeat is due, accepted only from the owner's bound key
with a growing version, forwarded once so members without a channel to each other converge;
and presence (when each member was last heard from).

Our record is built from the node (channels, funds) outside any transaction; its version is
bumped and committed with the record before the frame leaves, so a crash never reuses one.
Records travel as direct sends, not through the durable outbox: a lost one is superseded by
the next change or heartbeat (and repaired by anti-entropy), never worth retrying for a day.
The decisions are pure (agent/fleet/gossip_rules.py); uptime is agent/fleet/uptime.py.

Our record is trimmed to what fits in a frame with a full forwarding path (10 hops), the
smallest channels cut first.  An owner mints at most one version per `gossip_gap_s`; a
receiver refuses faster minting (RATE_LIMITED) from the stored record's timestamp.  A
forwarding path may name only active members.  Records sent, accepted, forwarded and refused
(by code) are counted in the store.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import anyio

from agent.fleet import facts, roster, uptime
from agent.fleet import gossip_rules as rules
from agent.fleet.facts import FactKind
from agent.fleet.kernel import Effects, FleetComponent, FleetKernel, short
from agent.node.models import Channel, ChannelState
from agent.store import fleet as db
from agent.store import gossip as gdb
from agent.store import presence as pdb
from agent.store.db import Db, Tx
from events import fleet as wire
from events.canonical import canonical
from events.errors import (
    BadSignature,
    Banned,
    HiveError,
    InvalidPayload,
    NotMember,
    Replayed,
    TooLarge,
)
from events.fleet import ChannelEntry, Message, MsgType, StateRecord
from events.fleet.gossip import (
    MAX_CHANNELS,
    MAX_PATH,
    MAX_TTL,
    record_verifies,
    sign_record,
)

log = logging.getLogger("hive.fleet.gossip")
ACTIVE_S = 86_400  # a member heard from within a day is active
STATES = {ChannelState.NORMAL: "normal", ChannelState.PENDING: "pending"}
SCID = re.compile(r"[0-9]{1,8}x[0-9]{1,6}x[0-9]{1,5}")  # as events.fleet.gossip.Scid
SAT, MSAT, MAX_PPM, MAX_CLTV = 2**53 - 1, 2**63 - 1, 10_000_000, 65_535  # the wire's bounds
FULL_PATH = ["03" + "f" * 64] * MAX_PATH  # the longest path a forwarded copy can carry


def channel_entry(ch: Channel) -> ChannelEntry | None:
    """The fleet's view of one channel; None for one the record cannot carry (no real short
    channel id yet, e.g. CLN's `pending:…`).  Policy fields beyond the model's bounds are
    clamped: the node's own numbers never make our record unbuildable."""
    if SCID.fullmatch(ch.short_channel_id) is None or ch.state not in STATES:
        return None
    p = ch.policy
    try:
        return ChannelEntry(
            peer=ch.peer_id, scid=ch.short_channel_id, capacity_sat=_clamp(ch.capacity_sat, SAT),
            balance=rules.balance_step(ch.local_msat, ch.capacity_sat),
            fee_base_msat=_clamp(p.base_msat, MSAT), fee_ppm=_clamp(p.ppm, MAX_PPM),
            htlc_min_msat=_clamp(p.htlc_min_msat, MSAT),
            htlc_max_msat=_clamp(p.htlc_max_msat, MSAT),
            cltv_delta=_clamp(p.cltv_delta, MAX_CLTV), state=STATES[ch.state],
        )  # fmt: skip
    except ValueError:  # a peer id the wire cannot name: the channel is left out
        return None


def _clamp(value: int, top: int) -> int:
    return min(max(value, 0), top)


class Gossip(FleetComponent):
    owns = frozenset({MsgType.GOSSIP})
    unacked = frozenset({MsgType.GOSSIP})

    def __init__(self) -> None:
        self.rate = rules.PeerRate()
        self.started_at: int | None = None
        self._checked_at = 0
        self._told: dict[str, int] = {}  # peer → the version of our record it has from us
        self._best: dict[str, tuple[int, int]] = {}  # owner → (version, TTL) forwarded best

    def bind(self, kernel: FleetKernel) -> None:
        super().bind(kernel)
        cfg = kernel.config
        rules.check_options(cfg.gossip_threshold_pct, cfg.heartbeat_s)
        self.rate = rules.PeerRate(cfg.gossip_gap_s)

    # --- our own record --------------------------------------------------------------------

    async def tick(self) -> None:
        k = self.kernel
        now = k.clock.now()
        for (peer, owner), frame in self.rate.due_streams(now):
            self._tally("sent" if owner == k.me else "forwarded", 1)
            await k.send_direct(peer, frame)
        if now - self._checked_at >= k.config.gossip_gap_s:
            try:
                await self.check()
            except HiveError as err:  # the node did not answer, the record would not fit…
                log.info("gossip: our state record was not sent: %s", err)
                k.count(err.code)

    async def check(self, *, force: bool = False) -> dict[str, Any]:
        """Build our record from the node; send it if a threshold or the heartbeat says so
        (or `force`).  What was decided, and the version sent."""
        k = self.kernel
        now = self._checked_at = k.clock.now()
        self.started_at = self.started_at or now
        h = db.hive(k.store)
        me = db.member(k.store, k.me)
        if h is None or me is None or me.status != "active":  # left, banned: nothing to tell
            return {"sent": False, "why": ["not in a hive"]}
        wait = rules.mint_wait(now, gdb.own_version(k.store)[1], k.config.gossip_gap_s)
        if force and 0 < wait <= k.config.gossip_gap_s:  # forced: after the gap, not before
            await anyio.sleep(wait)
            now = self._checked_at = k.clock.now()
        draft = self._fit(h.hive_id, await self._snapshot(now))
        async with k.lock:
            last = gdb.state(k.store, k.me)
            _, sent_at = gdb.own_version(k.store)
            wait = rules.mint_wait(now, sent_at, k.config.gossip_gap_s)
            decision = rules.decide(
                None if last is None else StateRecord.model_validate_json(last.record),
                draft, since_last_s=now - sent_at, threshold_pct=k.config.gossip_threshold_pct,
                heartbeat_s=k.config.heartbeat_s,
            )  # fmt: skip
            why = [w.value for w in decision.why] + (["forced"] if force else [])
            if wait == 0 and (last is None or decision.send or force):
                frame, version = self._commit(h.hive_id, draft, now)
                sent = True
            elif last is None:  # our clock is behind our last version: wait for it
                return {"sent": False, "why": [*why, "minted too recently"]}
            else:
                frame, version, sent = b"", last.version, False
        for peer in [p for p in self._told if p not in k.connected]:
            del self._told[peer]
            self.rate.forget(peer)
        # the news to everyone; else our current record to members new to us
        to = [p for p in self._targets(k.store) if sent or self._told.get(p) != version]
        if to and last is not None and not sent:
            if now - last.ts > rules.PAST_WINDOW_S - 600:  # too near the receivers' window
                return await self.check(force=True)
            frame = self._reframe(h.hive_id, last)
        for peer in to:
            await self._send(peer, k.me, frame, now)
            self._told[peer] = version
        return {"sent": sent, "why": why, "version": version}

    def _reframe(self, hive: str, last: gdb.StateRow) -> bytes:
        """Our current record in a new frame (the signed record unchanged), for connected
        members that have not had it from us since they connected: a new member, a peer back."""
        record = StateRecord.model_validate_json(last.record)
        body = wire.Gossip(record=record, sig=last.sig, ttl=MAX_TTL, path=[])
        return self.kernel.frame(MsgType.GOSSIP, body, hive)[1]

    def _fit(self, hive: str, record: StateRecord) -> StateRecord:
        """`record` with as many of its channels (largest first, as sorted) as fit in a frame
        forwarded over a full path, with the largest version: the smallest are cut."""

        def fits(n: int) -> bool:
            trial = record.model_copy(update={"channels": record.channels[:n], "version": SAT})
            body = wire.Gossip(record=trial, sig="f" * 128, ttl=MAX_TTL, path=FULL_PATH)
            try:
                self.kernel.frame(MsgType.GOSSIP, body, hive)
            except TooLarge:
                return False
            return True

        n = rules.most_that_fit(len(record.channels), fits)
        if n < len(record.channels):
            log.info(
                "gossip: %d of our smallest channels do not fit in a record",
                len(record.channels) - n,
            )
        return record.model_copy(update={"channels": record.channels[:n]})

    async def _snapshot(self, now: int) -> StateRecord:
        k = self.kernel
        channels = [c for c in await k.node.channels() if c.state in STATES]
        funds = await k.node.funds()
        usable = [c for c in channels if c.state == ChannelState.NORMAL]
        channels.sort(key=lambda c: (-c.capacity_sat, c.short_channel_id))
        entries = [e for e in map(channel_entry, channels) if e is not None]
        return StateRecord(
            owner=k.me, version=1, timestamp=now,
            capacity_sat=_clamp(sum(c.capacity_sat for c in usable), SAT),
            outbound_sat=_clamp(sum(c.local_msat for c in usable) // 1000, SAT),
            channels=entries[:MAX_CHANNELS],
            offered_sat=_clamp(funds.onchain_sat, SAT), features=list(k.config.features),
            uptime_s=now - (self.started_at or now),
        )  # fmt: skip

    def _commit(self, hive: str, draft: StateRecord, now: int) -> tuple[bytes, int]:
        """The next version, signed, stored and committed before it is sent."""
        k = self.kernel
        with k.store.transaction(now) as tx:
            version = gdb.bump_version(tx, now)
            record = draft.model_copy(update={"version": version, "timestamp": now})
            sig = sign_record(k.keys, hive, record)
            body = wire.Gossip(record=record, sig=sig, ttl=MAX_TTL, path=[])
            msg = k.message(MsgType.GOSSIP, body, hive)
            text = canonical(record).decode()
            gdb.put_state(tx, gdb.StateRow(k.me, version, now, text, sig, msg.raw, k.me, now))
            self._fact(tx, msg, body)
        return msg.raw, version

    def _targets(self, store: Db, exclude: frozenset[str] = frozenset()) -> list[str]:
        """Connected active members other than us (and `exclude`)."""
        k = self.kernel
        skip = {k.me, *exclude}
        return [n for n in db.member_ids(store) if n in k.connected and n not in skip]

    async def _send(self, peer: str, owner: str, frame: bytes, now: int) -> None:
        out = self.rate.offer((peer, owner), frame, now)
        if out is not None:
            self._tally("sent" if owner == self.kernel.me else "forwarded", 1)
            await self.kernel.send_direct(peer, out)

    # --- records from others ------------------------------------------------------------------

    def apply(self, tx: Tx, peer: str, msg: Message, prepared: Any, fx: Effects) -> None:
        body = msg.body_as(wire.Gossip)
        record = body.record
        h = roster.current_hive(tx)
        roster.active_member(tx, peer, msg.sender_key)
        self._check_route(tx, peer, body)
        key = self._owner_key(tx, body)
        if key is None:
            return  # late news of a member who has left: nothing to keep, nothing refused
        stored = gdb.state(tx, record.owner)
        raw = canonical(record)
        text = raw.decode()
        if stored is not None and (stored.version, stored.sig, stored.record) == (
            record.version,
            body.sig,
            text,
        ):  # the very record we verified and kept (no signature check again)
            best = self._best.get(record.owner)
            if best is not None and best >= (record.version, body.ttl):
                return  # the same record by another path, travelling no further: nothing new
        else:  # a copy with more TTL than the one we forwarded goes on again (see _forward)
            # the version first: a stale copy costs no signature check
            rules.check_fresh(record, None if stored is None else stored.version, tx.now)
            if not record_verifies(h.hive_id, body, key, raw):
                raise BadSignature(f"the state record is not signed by {short(record.owner)}'s key")
            # after the signature: only the owner itself is blamed for minting too fast
            gap = self.kernel.config.gossip_gap_s
            rules.check_minting(record, None if stored is None else stored.ts, gap)
            gdb.put_state(
                tx, gdb.StateRow(record.owner, record.version, record.timestamp, text, body.sig,
                                 msg.raw, peer, tx.now),
            )  # fmt: skip
            heard_of = min(record.timestamp, tx.now)
            gdb.seen(tx, record.owner, heard_of)  # heard of, if not from
            uptime.observe(tx, record.owner, heard_of, self._gap())
            pdb.count(tx, "received")
            # the fact, proved by a copy we sign (TTL 0: whoever gets it from anti-entropy
            # keeps it and hands it on no further)
            copy = body.model_copy(update={"ttl": 0, "path": [self.kernel.me]})
            try:
                self._fact(tx, self.kernel.message(MsgType.GOSSIP, copy, h.hive_id), body)
            except TooLarge:  # only a record its owner failed to trim to fit any path
                tx.count_errors({TooLarge.code: 1})
        self._forward(tx, peer, body, h.hive_id, fx)

    def _fact(self, tx: Tx, msg: Message, body: wire.Gossip) -> None:
        """The owner's latest record as a fact (replacing its older one)."""
        r = body.record
        names = (r.owner, r.version, body.sig)
        facts.record(
            tx, FactKind.STATE, r.owner, msg, names=names, ts=r.timestamp, single=True
        )  # fmt: skip

    def _forward(self, tx: Tx, peer: str, body: wire.Gossip, hive: str, fx: Effects) -> None:
        """Forward an accepted record, remembering (after the commit) the highest TTL of it
        we forwarded: a copy whose TTL a hostile forwarder cut (or whose path it padded) is
        not the last word, since a later copy with more TTL is forwarded again: at most once
        per improvement, so at most MAX_TTL + 1 times per version."""
        record = body.record
        owner, key, now = record.owner, (record.version, body.ttl), tx.now
        hop = rules.forward(
            owner=owner, ttl=body.ttl, path=body.path, came_from=peer, me=self.kernel.me,
            members=self._targets(tx),
        )  # fmt: skip
        if hop is None:
            fx.then.append(lambda: self._forwarded(owner, key, (), b"", now))
            return
        onward = body.model_copy(update={"ttl": hop.ttl, "path": list(hop.path)})
        try:
            _, frame = self.kernel.frame(MsgType.GOSSIP, onward, hive)
        except TooLarge:  # kept, but too large to travel further with a longer path: counted
            tx.count_errors({TooLarge.code: 1})
            hop, frame = None, b""
        to = () if hop is None else hop.to
        fx.then.append(lambda: self._forwarded(owner, key, to, frame, now))

    def _forwarded(
        self, owner: str, key: tuple[int, int], to: tuple[str, ...], frame: bytes, now: int
    ) -> list[tuple[str, bytes]]:
        """After the commit: the best copy of `owner`'s record forwarded, and the forwards the
        per-peer rate lets go now (the rest held)."""
        self._best[owner] = max(self._best.get(owner, (0, -1)), key)
        return self._offer(to, owner, frame, now)

    def _offer(
        self, to: tuple[str, ...], owner: str, frame: bytes, now: int
    ) -> list[tuple[str, bytes]]:
        """After the commit: the forwards the per-peer rate lets go now (the rest held)."""
        out = [(peer, self.rate.offer((peer, owner), frame, now)) for peer in to]
        sent = [(peer, f) for peer, f in out if f is not None]
        if sent:
            self._tally("forwarded", len(sent))
        return sent

    def _check_route(self, tx: Tx, peer: str, body: wire.Gossip) -> None:
        owner = body.record.owner
        if owner == self.kernel.me:
            raise Replayed("our own state record came back")
        if peer == owner and body.path:
            raise InvalidPayload("a record sent by its owner carries no forwarding path")
        if peer != owner and (not body.path or body.path[-1] != peer):
            raise InvalidPayload("a forwarded record's path must end with the node forwarding it")
        if len(set(body.path)) != len(body.path) or owner in body.path:
            raise InvalidPayload("a forwarding path names a node twice")
        for node in body.path:  # every forwarder an active member (the last is the sender)
            if db.is_banned(tx, node):
                raise Banned(f"the forwarding path names {short(node)}, banned from the hive")
            m = db.member(tx, node)
            if m is None or m.status != "active":
                raise NotMember(f"the forwarding path names {short(node)}, not a member here")

    def _owner_key(self, tx: Tx, body: wire.Gossip) -> str | None:
        """The bound key of the record's owner, an active member; None if the owner has left
        (a record overtaken by events); else a refusal.  The signature is checked by the
        caller, after the version: a stale copy costs no signature check."""
        owner = body.record.owner
        if db.is_banned(tx, owner):
            raise Banned(f"{short(owner)} is banned from the hive; its state is not kept")
        m = db.member(tx, owner)
        if m is not None and m.status == "left":
            return None
        if m is None or m.status != "active":
            raise NotMember(f"{short(owner)} is not an active member of this hive")
        return m.pubkey

    # --- presence and upkeep ------------------------------------------------------------------

    def heard(self, tx: Tx, peer: str) -> None:
        m = db.member(tx, peer)
        if m is not None and m.status == "active":
            gdb.seen(tx, peer, tx.now)
            uptime.observe(tx, peer, tx.now, self._gap())

    def on_refused(self, peer: str, msg: Message, err: HiveError) -> None:
        self._tally(f"refused:{err.code}", 1)

    def _gap(self) -> int:
        return rules.uptime_gap(self.kernel.config.heartbeat_s)

    def _tally(self, name: str, n: int) -> None:
        """A gossip counter moved (in its own small commit: counters never hold anything up)."""
        k = self.kernel
        with k.store.transaction(k.clock.now(), durable=False) as tx:
            pdb.count(tx, name, n)

    def housekeeping(self, tx: Tx, now: int) -> None:
        """Records and presence of nodes no longer members go (banned, left; all after leaving)."""
        if db.hive(tx) is None:
            gdb.drop_states(tx)
            gdb.drop_presence(tx, set())
            uptime.prune(tx, now, set())
            return
        members = {m.node_id for m in db.members(tx)}
        gdb.drop_states(tx, members)
        gdb.drop_presence(tx, members)
        facts.drop(tx, {FactKind.STATE}, keep=members)
        uptime.prune(tx, now, members)
        # evidence of being up: our own loop, and the members we hold a connection to
        me = self.kernel.me
        for node in sorted(members & ({me} | self.kernel.connected)):
            uptime.observe(tx, node, now, self._gap())

    # --- reads ------------------------------------------------------------------------------

    def presence(self) -> dict[str, dict[str, Any]]:
        """Per active member (us included): last seen, active (within 24 h), uptime % over 30
        days."""
        k = self.kernel
        nodes = sorted(m.node_id for m in db.members(k.store))
        seen = gdb.last_seen(k.store)
        return uptime.report(k.store, nodes, k.me, k.clock.now(), seen)

    def topology(self) -> dict[str, Any]:
        """Every member's latest record, its freshness and presence; fleet totals."""
        k = self.kernel
        now = k.clock.now()
        present = self.presence()
        out = []
        for row in gdb.states(k.store):
            rec = StateRecord.model_validate_json(row.record)
            p = present.get(row.owner, {"last_seen": None, "active": False, "uptime_pct": None})
            out.append({
                "owner": row.owner, "version": row.version, "age_s": now - row.ts, **p,
                "capacity_sat": rec.capacity_sat, "outbound_sat": rec.outbound_sat,
                "channels": [c.model_dump() for c in rec.channels],
            })  # fmt: skip
        return {
            "members": out,
            "capacity_sat": sum(m["capacity_sat"] for m in out),
            "outbound_sat": sum(m["outbound_sat"] for m in out),
        }

    def summary(self) -> dict[str, Any]:
        store = self.kernel.store
        version, sent_at = gdb.own_version(store)
        counts = pdb.counts(store)
        present = self.presence()
        return {
            "version": version,
            "sent_at": sent_at,
            "states": len(gdb.states(store)),
            **{name: counts.get(name, 0) for name in ("sent", "received", "forwarded")},
            "refused": {
                n.removeprefix("refused:"): c for n, c in counts.items() if n.startswith("refused:")
            },
            "active": sum(p["active"] for p in present.values()),
            "presence": present,
        }

    def uptime(self, store: Db, now: int) -> dict[str, float | None]:
        """Each member's uptime % over 30 days as we saw it (ours: our own)."""
        nodes = sorted(m.node_id for m in db.members(store))
        seen = gdb.last_seen(store)
        return {
            n: p["uptime_pct"]
            for n, p in uptime.report(store, nodes, self.kernel.me, now, seen).items()
        }

    def active(self, store: Db, now: int) -> set[str]:
        """Members heard from within 24 h."""
        return {n for n, at in gdb.last_seen(store).items() if now - at <= ACTIVE_S}
