"""The money side of the weekly settlement (agent/fleet/settlement.py): a payer pays exactly
its own assignments of a plan a majority agreed on, and a receiver issues the invoices.

Payer, per assignment (one row in the store, `settlement_pays`):

    new → requested (SETTLEMENT_INVOICE_REQUEST sent to the receiver)
        → invoiced (its SETTLEMENT_INVOICE came: bolt11 and payment hash kept)
        → attempting (recorded, committed, BEFORE the node is asked to pay)
        → paid (the preimage recorded)

and once every assignment is paid, one SETTLEMENT_EXECUTED to every member with the
preimages.  A payment found `attempting` (a crash, an unclear answer from the node) is first
looked up on the node (`find_payment`): a completed one is recorded, never made again; only a
payment the node never made is attempted again (the receiver's node refuses a second payment
of the same invoice anyway).  A failed payment is retried with backoff.

Receiver: an invoice is issued only for an assignment to it in a plan a majority agreed on,
under the label `hive-settle:<period>:<payer>`, so asking again returns the same invoice; the
preimage in the payer's EXECUTED must hash to that invoice's payment hash.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import anyio

from agent import backoff
from agent.crash import crash_point
from agent.fleet.component import Effects
from agent.fleet.settlement_rules import MemberInput, Plan
from agent.node.models import Invoice, Payment
from agent.store import fleet as db
from agent.store import settlement as sdb
from agent.store.db import Db, Tx
from agent.store.settlement import InvoiceRow, PayRow
from events.errors import (
    BadPreimage,
    HiveError,
    NotFound,
    PaymentFailed,
    Restricted,
    SettlementMismatch,
)
from events.fleet import Message, MsgType
from events.fleet.settlement import (
    InputBody,
    PaidBody,
    SettlementExecuted,
    SettlementInvoice,
    SettlementInvoiceRequest,
)

if TYPE_CHECKING:
    from agent.fleet.kernel import FleetKernel
    from agent.fleet.settlement import Settlement

log = logging.getLogger("hive.fleet.settlement")
DONE = ("paid", "failed")


def inputs_of(bodies: Sequence[InputBody]) -> list[MemberInput]:
    return [MemberInput(**b.model_dump()) for b in bodies]


def label(period: str, payer: str) -> str:
    return f"hive-settle:{period}:{payer}"


INVOICE_LEFT_S = 3_600  # an invoice handed to a payer has at least this long before it expires
PAY_LEFT_S = 60  # a payment is not started on an invoice expiring sooner


def expiring(invoice: Invoice, now: int, within: int) -> bool:
    return invoice.expires_at is not None and invoice.expires_at - now < within


@dataclass(frozen=True)
class Reissued:
    """A fresh invoice for an assignment whose invoice (`replaces`, a bolt11) expired unpaid:
    the payer tried for longer than the invoice lasted (CLN's last a week)."""

    invoice: Invoice
    replaces: str


class Payments:
    def __init__(self, owner: Settlement) -> None:
        self.owner = owner
        self._paying = anyio.Lock()  # one pass over our payments at a time

    @property
    def kernel(self) -> FleetKernel:
        return self.owner.kernel

    # --- payer -------------------------------------------------------------------------------

    def ensure(self, tx: Tx, plan: Plan) -> None:
        """Our assignments of an agreed plan, set up once (in the transaction that saw the
        majority)."""
        for t in plan.owed_by(self.kernel.me):
            if sdb.pay(tx, plan.period, t.receiver) is None:
                sdb.put_pay(tx, PayRow(plan.period, t.receiver, plan.plan_hash, t.amount_sat,
                                       "new"))  # fmt: skip

    async def tick(self) -> None:
        for row in sdb.periods(self.kernel.store, ("agreed",), limit=10):
            await self.pay_period(row.period)

    async def pay_period(self, period: str, *, force: bool = False) -> None:
        """One pass over our assignments of `period`: each moved on as far as it can go."""
        async with self._paying:
            k = self.kernel
            for pay in sdb.pays(k.store, period):
                if pay.state in DONE or (pay.next_at > k.clock.now() and not force):
                    continue
                await self._step(pay)
            rows = sdb.pays(k.store, period)
            if rows and all(p.state == "paid" for p in rows):
                await self._report(period)

    async def _step(self, pay: PayRow) -> None:
        if pay.state in ("new", "requested"):
            await self._request(pay)
        elif pay.state == "invoiced":
            await self._pay(pay)
        elif pay.state == "attempting":
            found = await self._lookup(pay)
            if found is not None:
                await self._record_paid(pay, found)
            else:
                await self._attempt(pay)

    async def _lookup(self, pay: PayRow) -> Payment | None:
        """What the node knows of a payment recorded as attempted (never paid twice)."""
        try:
            return await self.kernel.node.find_payment(pay.payment_hash)
        except HiveError as err:
            await self._save(pay, state="attempting", error=str(err)[:280], later=True)
            raise

    async def _request(self, pay: PayRow) -> None:
        k = self.kernel
        h = db.hive(k.store)
        if h is None:
            return
        body = SettlementInvoiceRequest(
            period=pay.period, plan_hash=pay.plan_hash, receiver=pay.receiver,
            amount_sat=pay.amount_sat,
        )  # fmt: skip
        async with k.lock:
            fx = Effects()
            with k.store.transaction(k.clock.now()) as tx:
                fresh = sdb.pay(tx, pay.period, pay.receiver)
                if fresh is None or fresh.state not in ("new", "requested"):
                    return
                k.enqueue(tx, [pay.receiver], MsgType.SETTLEMENT_INVOICE_REQUEST, body,
                          h.hive_id, fx)  # fmt: skip
                sdb.put_pay(tx, replace(fresh, state="requested", attempts=fresh.attempts + 1,
                                        next_at=self._later(tx.now, fresh.attempts)))  # fmt: skip
        await k.after(fx)

    def _later(self, now: int, attempts: int) -> int:
        cfg = self.kernel.config
        wait = backoff.delay(attempts, cfg.settlement_retry_s, cfg.settlement_retry_cap_s, 0.25)
        return now + max(1, int(wait))

    async def _pay(self, pay: PayRow) -> None:
        k = self.kernel
        try:
            got = await k.node.decode_invoice(pay.bolt11)
        except HiveError as err:
            await self._save(pay, state="invoiced", error=str(err)[:280], later=True)
            return
        why = ""
        if got.amount_msat != pay.amount_sat * 1000:
            why = f"the invoice asks {got.amount_msat} msat, the plan {pay.amount_sat * 1000}"
        elif got.payment_hash != pay.payment_hash:  # (what we would look up, and report)
            why = "the invoice's payment hash is not the one its sender gave"
        elif expiring(got, k.clock.now(), PAY_LEFT_S):  # paid too late: its receiver renews it
            self.owner.tally("invoice_expired")
            await self._save(pay, state="requested", error="the invoice expired", later=True)
            return
        if why:
            self.owner.tally("bad_invoice")
            await self._save(pay, state="requested", error=why, later=True)
            return
        crash_point("settle.before_record")
        # only the invoice checked: another one that came meanwhile is checked next pass
        pay = await self._save(pay, state="attempting", error="", bump=True, checked=pay.bolt11)
        if pay.state != "attempting":
            return
        crash_point("settle.after_record")
        await self._attempt(pay)

    async def _attempt(self, pay: PayRow) -> None:
        try:
            paid = await self.kernel.node.pay(pay.bolt11)
        except PaymentFailed as err:  # (definite: nothing went; the same invoice is retried)
            self.owner.tally("payment_failed")
            log.info("fleet: settlement payment to %s failed: %s", pay.receiver[:12], err)
            await self._save(pay, state="invoiced", error=str(err)[:280], later=True)
            return
        except HiveError as err:  # (unclear: looked up on the node before anything else)
            await self._save(pay, state="attempting", error=str(err)[:280], later=True)
            return
        crash_point("settle.after_pay")
        await self._record_paid(pay, paid)
        crash_point("settle.after_preimage")

    async def _record_paid(self, pay: PayRow, paid: Payment) -> None:
        await self._save(pay, state="paid", error="", preimage=paid.preimage,
                         fee_msat=paid.fee_msat)  # fmt: skip
        self.owner.tally("paid")
        log.info("fleet: settlement %s: paid %s sat to %s", pay.period, pay.amount_sat,
                 pay.receiver[:12])  # fmt: skip

    async def _save(
        self, pay: PayRow, *, later: bool = False, bump: bool = False, checked: str = "",
        **changes: Any,
    ) -> PayRow:  # fmt: skip
        """`changes` saved to the row as it is now (with `checked`: only if it still holds
        that invoice; else the row as it is)."""
        k = self.kernel
        async with k.lock:
            with k.store.transaction(k.clock.now()) as tx:
                fresh = sdb.pay(tx, pay.period, pay.receiver) or pay
                if checked and fresh.bolt11 != checked:
                    self.owner.tally("invoice_swapped")
                    return fresh
                attempts = fresh.attempts + 1 if bump else fresh.attempts
                next_at = self._later(tx.now, attempts) if later else tx.now
                row = replace(fresh, attempts=attempts, next_at=next_at, **changes)
                sdb.put_pay(tx, row)
        return row

    async def _report(self, period: str) -> None:
        """SETTLEMENT_EXECUTED to every member, once all our assignments are paid."""
        k = self.kernel
        h = db.hive(k.store)
        if h is None or k.me in sdb.executed(k.store, period):
            return
        async with k.lock:
            fx = Effects()
            with k.store.transaction(k.clock.now()) as tx:
                row = sdb.period(tx, period)
                if row is None or k.me in sdb.executed(tx, period):
                    return
                pays = sdb.pays(tx, period)
                body = SettlementExecuted(
                    period=period, plan_hash=row.plan_hash, payer=k.me,
                    payments=[PaidBody(receiver=p.receiver, amount_sat=p.amount_sat,
                                       payment_hash=p.payment_hash, preimage=p.preimage)
                              for p in pays],
                )  # fmt: skip
                others = [m.node_id for m in db.members(tx) if m.node_id != k.me]
                msg = k.enqueue(tx, others, MsgType.SETTLEMENT_EXECUTED, body, h.hive_id, fx)
                db.claim(tx, k.me, msg.id, tx.now)
                self.owner.apply(tx, k.me, msg, None, Effects())  # (recorded as anyone would)
        crash_point("settle.after_executed")
        await k.after(fx)

    # --- receiver ----------------------------------------------------------------------------

    def check_request(self, store: Db, payer: str, body: SettlementInvoiceRequest) -> None:
        """An invoice is issued only for an assignment to us in a plan a majority agreed on."""
        k = self.kernel
        row = sdb.period(store, body.period)
        if row is None:
            raise NotFound(f"no proposal for {body.period} is known here (yet)")
        if row.plan_hash != body.plan_hash:
            raise SettlementMismatch(f"plan {body.plan_hash[:12]}… is not {body.period}'s")
        if body.receiver != k.me:
            raise SettlementMismatch("an invoice request for another receiver")
        if row.state == "proposed":
            raise Restricted(f"no majority has agreed to {body.period}'s plan here (yet)")
        plan = self.owner.plan_of(row)
        if not any(
            t.receiver == k.me and t.amount_sat == body.amount_sat for t in plan.owed_by(payer)
        ):
            raise SettlementMismatch(f"the plan assigns no such payment from {payer[:12]}…")

    async def issue(self, msg: Message) -> Invoice | Reissued:
        """The invoice for a payer's assignment (outside the lock: the node is asked): the one
        issued before, unless it expired unpaid — then a fresh one, under a label of its own."""
        body = msg.body_as(SettlementInvoiceRequest)
        k = self.kernel
        self.check_request(k.store, msg.node, body)
        now, amount = k.clock.now(), body.amount_sat * 1000
        name = label(body.period, msg.node)
        held = sdb.invoice(k.store, body.period, msg.node)
        if held is not None:  # (answered from the row: only whether to renew is asked here)
            same = Invoice(bolt11=held.bolt11, payment_hash=held.payment_hash, amount_msat=amount)
            if held.state == "paid":  # never replaced; no need to ask the node
                return same
            if not expiring(await k.node.decode_invoice(held.bolt11), now, INVOICE_LEFT_S):
                return same
            return Reissued(await k.node.invoice(amount, f"{name}:{now}"), held.bolt11)
        found = await k.node.find_invoice(name)
        if found is None:
            return await k.node.invoice(amount, name)
        if not expiring(found, now, INVOICE_LEFT_S):
            return found
        return await k.node.invoice(amount, f"{name}:{now}")  # (issued, then a crash: unsaid)

    def on_request(self, tx: Tx, msg: Message, prepared: Any, fx: Effects) -> None:
        body = msg.body_as(SettlementInvoiceRequest)
        self.check_request(tx, msg.node, body)
        held = sdb.invoice(tx, body.period, msg.node)
        if isinstance(prepared, Reissued):
            renewed = prepared.invoice
            # (the held one only: another request may have renewed it first)
            if held is not None and held.state != "paid" and held.bolt11 == prepared.replaces:
                held = replace(held, bolt11=renewed.bolt11, payment_hash=renewed.payment_hash)
                sdb.put_invoice(tx, held)
                self.owner.tally("invoice_renewed")
            prepared = renewed
        if not isinstance(prepared, Invoice):
            raise NotFound("the invoice is not ready: ask again")
        if held is None:
            held = InvoiceRow(body.period, msg.node, body.plan_hash, body.amount_sat,
                              prepared.bolt11, prepared.payment_hash, "issued")  # fmt: skip
            sdb.put_invoice(tx, held)
            self.owner.tally("invoiced")
        answer = SettlementInvoice(period=body.period, plan_hash=body.plan_hash,
                                   bolt11=held.bolt11, payment_hash=held.payment_hash)  # fmt: skip
        self.kernel.enqueue(tx, [msg.node], MsgType.SETTLEMENT_INVOICE, answer, msg.hive, fx)

    def on_invoice(self, tx: Tx, msg: Message) -> None:
        body = msg.body_as(SettlementInvoice)
        pay = sdb.pay(tx, body.period, msg.node)
        if pay is None or pay.plan_hash != body.plan_hash:
            raise SettlementMismatch("an invoice this node did not ask for")
        if pay.state in ("new", "requested") or (
            pay.state == "invoiced" and pay.payment_hash != body.payment_hash
        ):
            sdb.put_pay(tx, replace(pay, state="invoiced", bolt11=body.bolt11,
                                    payment_hash=body.payment_hash, next_at=tx.now))  # fmt: skip
            self.kernel.wake()

    def received(self, tx: Tx, period: str, payer: str, payment_hash: str) -> None:
        """A payer says it paid our invoice: the hash must be the one we issued."""
        held = sdb.invoice(tx, period, payer)
        if held is None or held.payment_hash != payment_hash:
            raise BadPreimage("the payment is not for the invoice this node issued")
        if held.state != "paid":
            sdb.put_invoice(tx, replace(held, state="paid"))
