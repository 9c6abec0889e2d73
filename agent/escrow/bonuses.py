"""Performance bonuses, the funder's side: settled forwards are logged as they happen; when a
bonus part's window has ended, the metric is measured from that log and the part is released
(a signed release carrying the preimage, gift-wrapped to the advisor) or lapses."""

from __future__ import annotations

from typing import Any

from agent.component import Messaging
from agent.node.models import Forward, ForwardStatus
from agent.store import escrow as repo
from events import escrow
from events.escrow import RELEASE, Metric, Ticket


class Bonuses:
    def __init__(self, host: Messaging, secret: bytes) -> None:
        self.agent = host
        self._secret = secret  # unmasks the preimages the store holds

    @property
    def now(self) -> int:
        return self.agent.clock.now()

    def record(self, forward: Forward) -> None:
        """A forward from the node's events (only settled ones count)."""
        if forward.status != ForwardStatus.SETTLED:
            return
        with self.agent.store.transaction(self.now, durable=False) as tx:
            f = forward
            repo.log_forward(tx, self.now, f.in_channel, f.out_channel, f.fee_msat)

    def measured(self, metric: Metric, start: int) -> int:
        end = start + metric.window_s
        return repo.fees_earned(self.agent.store, start, end, metric.channel)

    def settle(self) -> None:
        """Bonuses whose window has ended: released if the metric met its target."""
        for row in repo.parts_in(self.agent.store, "funder", "locked"):
            ticket = Ticket.model_validate_json(row["ticket"])
            metric = ticket.terms.metric
            start = row["measure_from"]
            if metric is None or start is None or self.now < start + metric.window_s:
                continue
            self._settle_part(ticket, metric, row["part_index"], row["lock_hash"], start)
            self.agent.wake_outbox()

    def _settle_part(
        self, ticket: Ticket, metric: Metric, index: int, lock_hash: str, start: int
    ) -> None:
        value = self.measured(metric, start)
        with self.agent.store.transaction(self.now) as tx:
            if value < metric.target:
                note = f"measured {value} < target {metric.target}"
                repo.move_part(tx, ticket.ticket_id, index, ("locked",), "lapsed", note=note)
                return
            note = f"measured {value}"
            if not repo.move_part(tx, ticket.ticket_id, index, ("locked",), "released", note=note):
                return
            preimage = repo.release_secret(tx, self._secret, lock_hash)
            assert preimage is not None
            me = self.agent.pubkey
            body = {
                "ticket_id": ticket.ticket_id,
                "part_index": index,
                "lock_hash": lock_hash,
                "preimage": preimage,
                "reason": f"{metric.kind} {value} ≥ {metric.target}",
                "measured": value,
                "node": me,
                "created_at": self.now,
            }
            release = escrow.sign_release(self.agent.keys, body)
            rumor = RELEASE.rumor(me, release, created_at=self.now)
            self.agent.enqueue_private(tx, ticket.advisor, rumor)


async def watch_forwards(node: Any, escrow_: Any) -> None:
    """Feed settled forwards from the node's event stream into the ledger bonuses are
    measured from (the plugin feeds it from lightningd's forward_event instead)."""
    async for event in node.events():
        if isinstance(event, Forward):
            escrow_.bonuses.record(event)
