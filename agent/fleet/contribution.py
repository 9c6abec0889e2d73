"""The contribution ledger (DESIGN §7.5, issue 18 §1), a fleet component:

- **intake**: every settled forward of the node (the kernel's `forwarded` hook: CLN's
  `forward_event`, the simulator's forwards) is attributed by the peers of its in and out
  channels; a peer that is a member of the hive gets it in its day's row (in: we carried its
  traffic; out: it carried ours; the fees earned on them), this node's own day gets every one
  (volume, fees) and its rebalances' fees (agent/store/contribution.py `record_rebalance`,
  called by the advisory command path).  Rows are hash-chained and bounded; a forward
  delivered twice is counted once.
- **anti-leech**: once a day each member's contribution ratio over 30 days is judged
  (agent/fleet/contribution_rules.py); 7 days below 0.5 and the member loses the zero-fee
  treatment on our channels (the kernel's `Treatment` port: the bridge treats it like a
  non-member) until it recovers; both are announced (LEECH_NOTICE, a fact) with the numbers.
- **period reports**: once an ISO week is over, this member sends its figures for it
  (CONTRIBUTION_REPORT, a fact) to every member; the reports held are the settlement's inputs
  (the kernel's `Ledger` port), and one that disagrees with what we observed is disputed
  (REPORT_DISPUTED, counted, listed — never averaged away); a member that signed two
  different reports for a period is no input to it (agent/fleet/report_variants.py).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from agent.crash import crash_point
from agent.fleet import contribution_rules as rules
from agent.fleet import facts, roster
from agent.fleet import report_variants as variants
from agent.fleet.component import Effects, FleetComponent
from agent.fleet.facts import FactKind
from agent.fleet.settlement_rules import (
    MemberInput,
    period_bounds,
    period_of,
    previous_period,
)
from agent.node.models import ChannelState, Forward, ForwardStatus
from agent.store import contribution as cdb
from agent.store import contribution_reports as rdb
from agent.store import fleet as fdb
from agent.store.db import Db, Tx
from events.canonical import canonical
from events.errors import (
    BadSignature,
    Expired,
    FromFuture,
    InvalidParams,
    InvalidPayload,
    NotFound,
    NotMember,
    ReportConflict,
    Unauthorized,
)
from events.fleet import Message, MsgType
from events.fleet.contribution import MAX_SHARED, ContributionReport, LeechNotice, report_id

log = logging.getLogger("hive.fleet.contribution")
JUDGED_KV = "contribution:judged"  # the last UTC day judged for anti-leech
REFRESH_S = 5  # the channel → peer map is read again at most this often (on a miss)
RETRY_REPORT_S = 60
UPKEEP_S = 3_600
KEEP_S = rules.KEEP_DAYS * rules.DAY_S
# what this node saw in a period: per member its msat through our channels, and uptimes
Observed = tuple[dict[str, dict[str, int]], dict[str, float | None]]
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


class Contribution(FleetComponent):
    owns = frozenset({MsgType.CONTRIBUTION_REPORT, MsgType.LEECH_NOTICE})
    facts = frozenset({MsgType.CONTRIBUTION_REPORT, MsgType.LEECH_NOTICE})

    def __init__(self) -> None:
        self._peers: dict[str, str] = {}  # scid → the node at its other end
        self._read_at: int | None = None
        self._next_report = 0
        self._upkept: int | None = None  # when rows were last rolled up and pruned
        self._roster: tuple[int, set[str]] | None = None  # (when read, the members then)
        self._rekeyed = False

    # --- intake ---------------------------------------------------------------------------

    async def prepare_forward(self, fwd: Forward) -> Any:
        if fwd.status != ForwardStatus.SETTLED:
            return None
        k = self.kernel
        now = k.clock.now()
        missing = any(s and s not in self._peers for s in (fwd.in_channel, fwd.out_channel))
        if missing and (self._read_at is None or now - self._read_at >= REFRESH_S):
            self._read_at = now
            for chan in await k.node.channels():
                self._peers[chan.short_channel_id] = chan.peer_id
        return self._peers.get(fwd.in_channel, ""), self._peers.get(fwd.out_channel, "")

    def forwarded(self, tx: Tx, fwd: Forward, prepared: Any) -> None:
        if prepared is None:
            return  # (offered, failed: nothing was carried)
        in_peer, out_peer = prepared
        members = self._members_now(tx) & {in_peer, out_peer}
        key = rules.forward_key(
            fwd.in_channel, fwd.out_channel, fwd.in_msat, fwd.out_msat, fwd.received_time,
            fwd.resolved_time, fwd.payment_hash, fwd.in_htlc_id,
        )  # fmt: skip
        got = cdb.ingest_forward(
            tx, key, rules.day_of(tx.now), in_peer if in_peer in members else "",
            out_peer if out_peer in members else "", fwd.in_msat, fwd.out_msat, fwd.fee_msat,
        )  # fmt: skip
        if got != "raw":  # (the raw ones are the day's `forwards`: no counter per forward)
            cdb.count(tx, f"forwards_{got}")

    def _recipients(self, db: Db) -> list[str]:
        """The members other than us that are connected now or were heard from within 24 h:
        a member away longer gets the fact from anti-entropy when it is back, not from a
        queue that expires (connected counts too: in a hive formed minutes ago most members
        have not yet heard from each other)."""
        members = self._members(db)
        presence = self.kernel.presence
        if presence is not None:
            members &= presence.active(db, self.kernel.clock.now()) | self.kernel.connected
        return sorted(members)

    def _members_now(self, db: Db) -> set[str]:
        """The members, read at most once per second of the clock (a busy node forwards many
        times a second; a join or a ban is attributed from the next second on)."""
        now = self.kernel.clock.now()
        if self._roster is None or self._roster[0] != now:
            self._roster = (now, self._members(db))
        return self._roster[1]

    def _members(self, db: Db) -> set[str]:
        return {m.node_id for m in fdb.members(db)} - {self.kernel.me}

    # --- frames ---------------------------------------------------------------------------

    def apply(self, tx: Tx, peer: str, msg: Message, prepared: Any, fx: Effects) -> None:
        roster.active_member(tx, msg.node, msg.sender_key)
        self._hold(tx, msg)

    def apply_fact(self, tx: Tx, relayer: str, msg: Message, fx: Effects) -> None:
        """A report or notice handed on: its author may have left since (what it reported
        while a member stays a fact); signed with the key it was bound to, never banned."""
        m = fdb.member(tx, msg.node)
        if m is None or m.status == "active" or fdb.is_banned(tx, msg.node):
            roster.active_member(tx, msg.node, msg.sender_key)  # (its refusal, if any)
        elif m.pubkey != msg.sender_key:
            raise BadSignature(f"not signed with {msg.node[:12]}…'s bound key")
        self._hold(tx, msg)

    def _hold(self, tx: Tx, msg: Message) -> None:
        if msg.type == MsgType.CONTRIBUTION_REPORT:
            self._report(tx, msg, msg.body_as(ContributionReport))
        else:
            self._notice(tx, msg, msg.body_as(LeechNotice))

    def _report(self, tx: Tx, msg: Message, body: ContributionReport) -> None:
        end = self._check_report(tx, msg, body)
        placed = variants.place(tx, msg, body, canonical(body).decode(), end)
        if placed.first:
            cdb.count(tx, "reports_held")
        if placed.conflicting:  # counted, not refused: the proof is what ends the conflict
            tx.count_errors({ReportConflict.code: 1})
            log.warning(
                "fleet: %s signed two different reports for %s: not a settlement input for it",
                body.node[:12], body.period,
            )  # fmt: skip
        if placed.equivocation:
            cdb.count(tx, "reports_equivocated")
        if placed.report:
            cdb.drop_disputes(tx, body.node, body.period)  # (of the report it replaced)
            if body.node != self.kernel.me:
                self._judge_report(tx, body)

    def _check_report(self, tx: Tx, msg: Message, body: ContributionReport) -> int:
        """The end of the report's week, if the report may be held; else why not."""
        if body.node != msg.node:
            raise Unauthorized("a member reports its own figures only")
        try:
            end = period_bounds(body.period)[1]
        except InvalidParams as err:  # (2026-54: the frame's fault, not a method's)
            raise InvalidPayload(err.message) from None
        if end > tx.now + self.kernel.config.future_skew_s:
            raise FromFuture(f"period {body.period} is not over yet")
        if end < tx.now - KEEP_S:
            raise Expired(f"period {body.period} is older than the ledger keeps")
        if msg.ts < end - self.kernel.config.future_skew_s:  # (a report follows its week)
            raise InvalidPayload(f"a report for {body.period} dated before the week ended")
        if msg.id != report_id(body):  # (two reports with one id: one would pass as the other)
            raise InvalidPayload("a report's message id must be the hash of its figures")
        author = fdb.member(tx, body.node)  # (joined_at: the admitter's, alike everywhere)
        if author is not None and end <= author.joined_at:
            raise Unauthorized(f"{body.node[:12]}… joined after {body.period} ended")
        if author is not None and author.left_at is not None and end > author.left_at:
            # (handed on after it left: a report is made once its week is over, so one for a
            # week that ended after it left was not made while it was a member)
            raise Unauthorized(f"{body.node[:12]}… left before {body.period} ended")
        return end

    def _judge_report(self, tx: Tx, body: ContributionReport) -> None:
        """What this node saw against a member's report: disputes found are kept and counted."""
        seen = self._observed(tx, body.period)
        found = self._disputes(body.node, body.model_dump(), seen)
        for d in found:
            cdb.put_dispute(
                tx, body.node, body.period, d["field"], d["reported"], d["observed"], d["reason"]
            )
        if found:
            log.info("fleet: %s's report for %s is disputed", body.node[:12], body.period)
            tx.count_errors({"REPORT_DISPUTED": len(found)})
            cdb.count(tx, "reports_disputed")

    def _observed(self, db: Db, period: str) -> Observed:
        """What this node saw: per member the msat through our channels in `period`, and
        each member's uptime as our presence view has it — read once for all the reports
        judged (per report, it was O(n²) reads for n members)."""
        first, last = rules.period_days(period)
        presence = self.kernel.presence
        ups = presence.uptime(db, self.kernel.clock.now()) if presence else {}
        return cdb.totals(db, first, last), ups

    def _disputes(
        self, author: str, report: dict[str, Any], seen: Observed
    ) -> list[dict[str, Any]]:
        totals, ups = seen
        mine = totals.get(author, {})
        observed = mine.get("in_msat", 0) + mine.get("out_msat", 0)
        return rules.disputes(self.kernel.me, report, observed, ups.get(author))

    def _notice(self, tx: Tx, msg: Message, body: LeechNotice) -> None:
        if body.member == msg.node:
            raise Unauthorized("a member does not judge itself")
        if fdb.member(tx, body.member) is None:  # (any node id: notices without end)
            raise NotMember(f"{body.member[:12]}… is not a member of this hive")
        # a judgement is of a day the ledger keeps (one a day per member and status at most)
        try:
            day = dt.date.fromisoformat(body.day).toordinal() - _EPOCH_ORDINAL
        except ValueError:
            raise InvalidPayload(f"{body.day} is no day") from None
        today = rules.day_of(tx.now)
        if day > today:
            raise FromFuture(f"a judgement of {body.day}, a day not begun")
        if day < today - rules.KEEP_DAYS - 1:  # (a member catching up judges 36 days back)
            raise Expired(f"a judgement of {body.day}, older than the ledger keeps")
        names = (msg.node, body.member, body.status, body.day)
        cdb.put_notice(tx, msg.node, body.member, body.day, body.status, canonical(body).decode())
        facts.record(tx, FactKind.LEECH, body.member, msg, names=names)
        cdb.count(tx, "notices_held")

    # --- upkeep: rollups, pruning, anti-leech ---------------------------------------------

    def housekeeping(self, tx: Tx, now: int) -> None:
        self._upkeep(tx, now)
        if not self._rekeyed:  # (reports' facts held from before 2026-12-05: their new ids;
            variants.rekey(tx)  # last, so a step failing above leaves it for the next pass)
            self._rekeyed = True

    def _upkeep(self, tx: Tx, now: int) -> None:
        today = rules.day_of(now)
        self._judge(tx, today - 1)
        last = self._upkept
        if last is not None and now - last < UPKEEP_S and rules.day_of(last) == today:
            return  # rollups and pruning (they scan tables): hourly, and once a day begins
        self._upkept = now
        cdb.roll_up(tx, today)
        cdb.prune(tx, today - rules.KEEP_DAYS + 1)
        cdb.prune_keys(tx, now - rules.KEY_KEEP_S)
        cdb.prune_notices(tx, now - KEEP_S)
        rdb.prune_reports(tx, self._periods_kept(now))
        facts.expire_contribution(tx, now)

    @staticmethod
    def _periods_kept(now: int) -> list[str]:
        periods = [period_of(now)]
        for _ in range(rules.KEEP_DAYS // 7 + 1):
            periods.append(previous_period(periods[-1]))
        return periods

    def _judge(self, tx: Tx, last: int) -> None:
        """Every day not judged yet, up to `last` (yesterday), for every member."""
        h = fdb.hive(tx)
        if h is None:
            return
        members = self._members(tx)
        cdb.drop_leech(tx, members)
        done = cdb.kv_int(tx, JUDGED_KV)
        first = last if done is None else max(done + 1, last - rules.KEEP_DAYS)
        for day in range(first, last + 1):
            window = cdb.totals(tx, day - rules.WINDOW_DAYS + 1, day)
            rows = cdb.leech_rows(tx)
            for m in sorted(members):
                seen = window.get(m, {})
                self._judge_one(tx, h.hive_id, m, day, rows.get(m), seen)
        cdb.set_kv_int(tx, JUDGED_KV, max(last, done or last))

    def _judge_one(
        self, tx: Tx, hive: str, m: str, day: int, row: cdb.LeechRow | None, seen: dict[str, int]
    ) -> None:
        i, o = seen.get("in_msat", 0), seen.get("out_msat", 0)
        state = (
            rules.LeechState(row.below_since, row.below_days, row.leech_since)
            if row
            else rules.LeechState()
        )
        new, change = rules.judge(state, day, i, o)
        ppm = rules.ratio_ppm(rules.ratio(i, o))
        cdb.put_leech(tx, cdb.LeechRow(
            m, new.below_since, new.below_days, new.leech_since, day, i, o, ppm
        ))  # fmt: skip
        if not change:
            return
        body = LeechNotice(
            member=m, status="leech" if change == "leech" else "recovered",
            day=rules.day_text(day),
            since=rules.day_text(state.below_since if change == "leech" and state.below_since
                                 is not None else day),
            window_days=rules.WINDOW_DAYS, in_msat=i, out_msat=o, ratio_ppm=ppm,
            threshold_ppm=rules.ratio_ppm(rules.THRESHOLD),
            below_days=new.below_days if change == "leech" else state.below_days, at=tx.now,
        )  # fmt: skip
        log.info("fleet: %s is %s (ratio %.3f over 30 days)", m[:12], change, ppm / rules.PPM)
        peers = self._recipients(tx)
        msg = self.kernel.enqueue(tx, peers, MsgType.LEECH_NOTICE, body, hive, Effects())
        self._notice(tx, msg, body)
        fdb.claim(tx, self.kernel.me, msg.id, tx.now)
        cdb.count(tx, f"leech_{body.status}")

    # --- period reports -------------------------------------------------------------------

    async def tick(self) -> None:
        k = self.kernel
        now = k.clock.now()
        h = fdb.hive(k.store)
        if h is None or now < self._next_report:
            return
        period = previous_period(period_of(now))
        if h.joined_at >= period_bounds(period)[1] or rdb.report(k.store, k.me, period):
            return
        self._next_report = now + RETRY_REPORT_S  # (a failed node read is tried again later)
        await self.report(period)

    async def report(self, period: str) -> dict[str, Any] | None:
        """Send this member's report for `period` (over) to every member, unless it was sent;
        the report held."""
        k = self.kernel
        channels = await k.node.channels()
        capacity = sum(c.capacity_sat for c in channels if c.state == ChannelState.NORMAL)
        fx = Effects()
        async with k.lock:
            h = fdb.hive(k.store)
            if h is None or rdb.report(k.store, k.me, period) is not None:
                return None
            now = k.clock.now()
            with k.store.transaction(now) as tx:
                body = self._own_report(tx, period, capacity, now)
                peers = self._recipients(tx)
                msg = k.enqueue(
                    tx, peers, MsgType.CONTRIBUTION_REPORT, body, h.hive_id, fx, report_id(body)
                )
                self._report(tx, msg, body)
                fdb.claim(tx, k.me, msg.id, now)
        crash_point("contribution.after_report")
        await k.after(fx)
        log.info("fleet: contribution report for %s sent to %d members", period, len(peers))
        return body.model_dump()

    def _own_report(self, db: Db, period: str, capacity: int, now: int) -> ContributionReport:
        first, last = rules.period_days(period)
        t = cdb.totals(db, first, last)
        own = t.get(cdb.OWN, {})
        shared = {
            m: v["in_msat"] + v["out_msat"]
            for m, v in t.items()
            if m != cdb.OWN and v["in_msat"] + v["out_msat"] > 0
        }
        if len(shared) > MAX_SHARED:
            shared = dict(sorted(shared.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_SHARED])
        presence = self.kernel.presence
        up = presence.uptime(db, now).get(self.kernel.me) if presence else None
        return ContributionReport(
            node=self.kernel.me, period=period, fees_msat=own.get("fees_msat", 0),
            rebalance_costs_msat=own.get("rebalance_msat", 0),
            forwards_msat=own.get("out_msat", 0), capacity_sat=capacity,
            uptime_pct=max(0, min(100, round(up or 0))), shared=shared,
        )  # fmt: skip

    # --- the ports: Ledger (settlement inputs) and Treatment (anti-leech) -----------------

    def inputs(self, store: Db, period: str) -> dict[str, MemberInput]:
        return {a: rules.member_input(a, json.loads(b)) for a, b in _counted(store, period).items()}

    def disputes(self, store: Db, period: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        reports = _counted(store, period)
        if set(reports) <= {self.kernel.me}:
            return out
        seen = self._observed(store, period)
        for author, text in reports.items():
            if author == self.kernel.me:
                continue
            for d in self._disputes(author, json.loads(text), seen):
                out.append({"node": author, "code": "REPORT_DISPUTED", **d})
        return out

    def withheld(self, store: Db) -> set[str]:
        return {m for m, r in cdb.leech_rows(store).items() if r.leech_since is not None}

    # --- reads ----------------------------------------------------------------------------

    def view(self, node: str | None = None) -> dict[str, Any]:
        """`hive-contribution`: per member its 30-day figures, ratio, leech state and daily
        rows; this node's own; the chain's verification; reports, disputes, notices."""
        k = self.kernel
        store, now = k.store, k.clock.now()
        today = rules.day_of(now)
        first = today - rules.WINDOW_DAYS + 1
        window = cdb.totals(store, first, today)
        members = self._members(store)
        if node is not None and node not in members and node not in window:
            raise NotFound(f"{node[:12]}… is not a member and nothing was counted for it")
        chosen = sorted(members) if node is None else [node]
        leech = cdb.leech_rows(store)
        last = previous_period(period_of(now))
        return {
            "window": {"days": rules.WINDOW_DAYS, "from": rules.day_text(first),
                       "to": rules.day_text(today)},
            "rule": {"ratio": "out_msat / in_msat (0/0 = 1, capped at 10)",
                     "threshold": str(rules.THRESHOLD), "leech_days": rules.LEECH_DAYS,
                     "min_judged_msat": rules.MIN_JUDGED_MSAT},
            "members": [
                self._member_view(store, m, window.get(m, {}), leech.get(m), first)
                for m in chosen
            ],
            "own": {**_figures(window.get(cdb.OWN, {})), "days": _days(store, cdb.OWN, first)},
            "chain": cdb.verify(store),
            "reports": {
                "period": last, "held": sorted(rdb.reports(store, last)),
                "equivocated": sorted(rdb.equivocators(store, last)),
            },
            "disputes": cdb.disputes_found(store),
            "notices": cdb.notices(store)[-50:],
            "counts": cdb.counts(store),
        }  # fmt: skip

    @staticmethod
    def _member_view(
        store: Db, m: str, seen: dict[str, int], row: cdb.LeechRow | None, first: int
    ) -> dict[str, Any]:
        i, o = seen.get("in_msat", 0), seen.get("out_msat", 0)
        r = rules.ratio(i, o)
        return {
            "node": m, **_figures(seen), "ratio": round(float(r), 6),
            "ratio_ppm": rules.ratio_ppm(r), "leech": bool(row and row.leech_since is not None),
            "leech_since": rules.day_text(row.leech_since) if row and row.leech_since else None,
            "below_days": row.below_days if row else 0,
            "judged": rules.day_text(row.last_day) if row else None,
            "days": _days(store, m, first),
        }  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """For `hive-status`'s fleet section."""
        k = self.kernel
        store, now = k.store, k.clock.now()
        today = rules.day_of(now)
        own = cdb.totals(store, today - rules.WINDOW_DAYS + 1, today).get(cdb.OWN, {})
        last = previous_period(period_of(now))
        return {
            "forwards_30d": own.get("forwards", 0),
            "fees_msat_30d": own.get("fees_msat", 0),
            "leeches": sorted(self.withheld(store)),
            "last_period": last,
            "reported": rdb.report(store, k.me, last) is not None,
            "reports_held": len(rdb.reports(store, last)),
            "equivocated": len(rdb.equivocators(store, last)),
            "disputes": len(self.disputes(store, last)),
            "chain_rows": cdb.chain_size(store),
            "counts": cdb.counts(store),
        }


def _counted(store: Db, period: str) -> dict[str, str]:
    """The reports held for `period` that count: not those of a member proved to have signed
    two (agent/fleet/report_variants.py), nor of a member banned since (its payers could get
    no invoice from it, nor could it pay: the week would wait for good)."""
    reports = rdb.reports(store, period)
    banned = {b["target"] for b in fdb.bans(store)}  # (read once: per report, O(n) reads)
    for author in rdb.equivocators(store, period) | banned:
        reports.pop(author, None)
    return reports


def _figures(seen: dict[str, int]) -> dict[str, int]:
    return {
        name: seen.get(name, 0)
        for name in ("in_msat", "out_msat", "fees_msat", "forwards", "rebalance_msat")
    }


def _days(store: Db, member: str, first: int) -> list[dict[str, Any]]:
    return [{**d, "day": rules.day_text(d["day"])} for d in cdb.days(store, member, first)]
