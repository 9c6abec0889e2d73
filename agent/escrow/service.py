"""Escrow for one agent, in whichever roles it plays.

Operator + node (the node agent, or the plugin on the node): asks its own node side for lock
hashes (the preimage is created and committed first), funds tickets from its Cashu wallet,
sends them gift-wrapped to the advisor, reveals a preimage only inside the signed receipt of a
successful command (or, for a performance bonus, a signed release after the measurement
window), and refunds what was never released once the locktime has passed.

Advisor: checks a ticket's locks before keeping it, learns preimages from receipts and
releases, redeems with preimage + signature, and records the fresh proofs.

Network calls to the mint happen outside transactions; every outcome is committed with what it
changes (proofs spent and received, part state) in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from agent.component import Messaging, Wiring
from agent.escrow import checks, coins, drafts, intake
from agent.escrow.backoff import Backoff
from agent.escrow.bonuses import Bonuses
from agent.escrow.mint import check_mint, normalize
from agent.escrow.planning import MAX_LOCKTIME_S, PlannedPart, locked_until, plan_ticket
from agent.escrow.swaps import final_swap
from agent.store import Tx
from agent.store import escrow as repo
from events import escrow
from events.command import Command
from events.errors import (
    HiveError,
    InvalidParams,
    MintNotAllowed,
    MintRefused,
    NotFound,
    Restricted,
    Unauthorized,
)
from events.escrow import (
    RELEASE,
    TICKET,
    CashuProof,
    Metric,
    Part,
    PartRole,
    Ticket,
    TicketType,
)
from events.kinds import Kind
from events.nip59 import Unwrapped

if TYPE_CHECKING:
    from agent.escrow.wallet import CashuWallet  # imports cashu (~0.6 s): only when used

log = logging.getLogger("hive.escrow")
REFUND_GRACE_S = 2  # past the locktime by the mint's clock, not just ours
CHECKS_S = 10  # at most this long a pass checking held tickets' ecash at their mint
BY_RECEIPT = (PartRole.RELEASE, PartRole.MILESTONE, PartRole.BASE)  # released by a receipt


class EscrowRole(StrEnum):
    """What an agent does with escrow (the `role` column of its tickets)."""

    FUNDER = "funder"  # the operator's node side: holds the preimages, funds and refunds
    PAYEE = "payee"  # an advisor: keeps tickets sent to it, redeems what is released


class Escrow:
    """Escrow in the roles given.  Implements the advisory side's ports: `CommandPayments`
    (`covers`, `on_success`) for a funder, `PreimageSink` (`learn`) for a payee."""

    def __init__(
        self,
        host: Messaging,
        mints: list[str],
        roles: frozenset[EscrowRole] = frozenset({EscrowRole.PAYEE}),
    ) -> None:
        self.agent = host
        self.mints = [normalize(u) for u in mints]
        self.roles = roles
        self.me = host.pubkey
        self._secret = bytes.fromhex(host.keys.secret_key().to_hex())
        self.bonuses = Bonuses(host, self._secret)  # the funder's performance bonuses
        self._wallets: dict[str, CashuWallet] = {}
        self._opening: dict[str, anyio.Lock] = {}  # per mint: the loop and a command may ask
        self._wake = anyio.Event()
        self.backoff = Backoff()  # (ticket, part) that failed; part -1: the ticket's check
        self.funding: set[str] = set()  # tickets whose parts are being locked right now
        self.keysets: checks.Keysets = {}  # the mints' keys, to check held tickets' ecash
        self.checking: dict[str, anyio.Lock] = {}  # ticket → its check under way
        self.check_held = partial(checks.check_held, self)
        self.require_checked = partial(checks.require_checked, self)  # (PreimageSink)

    def wiring(self) -> Wiring:
        return Wiring(
            rumors={Kind.ESCROW_TICKET: self.on_ticket, Kind.ESCROW_RELEASE: self.on_release}
        )

    @property
    def funder(self) -> bool:
        return EscrowRole.FUNDER in self.roles

    @property
    def now(self) -> int:
        return self.agent.clock.now()

    def wake(self) -> None:
        self._wake.set()

    async def wallet(self, mint: str) -> CashuWallet:
        from agent.escrow.wallet import CashuWallet

        mint = normalize(mint)
        if mint not in self._wallets:
            async with self._opening.setdefault(mint, anyio.Lock()):
                if mint not in self._wallets:
                    home = Path(self.agent.settings.root)
                    self._wallets[mint] = await CashuWallet(home, mint, self.agent.keys).open()
        return self._wallets[mint]

    async def close(self) -> None:
        for wallet in self._wallets.values():
            await wallet.close()
        self._wallets.clear()

    def allowed_mint(self, mint: str) -> str:
        if normalize(mint) not in self.mints:
            raise MintNotAllowed(f"{mint} is not one of this agent's mints")
        return normalize(mint)

    # --- wallet ------------------------------------------------------------------------------

    async def topup(self, amount: int, mint: str | None = None) -> dict[str, Any]:
        """Mint ecash into the wallet (a FakeWallet mint pays its own invoice)."""
        if mint is None and not self.mints:
            raise MintNotAllowed("no mints configured: list them under `mints` in policy.json")
        mint = mint or self.mints[0]
        await check_mint(mint, self.mints)
        invoice, proofs = await (await self.wallet(mint)).topup(amount)
        with self.agent.store.transaction(self.now) as tx:
            repo.add_proofs(tx, normalize(mint), proofs, "topup")
        return {
            "mint": normalize(mint),
            "invoice": invoice,
            "minted": sum(p.amount for p in proofs),
        }

    def balances(self) -> dict[str, int]:
        return repo.balances(self.agent.store)

    # --- the node's preimages ----------------------------------------------------------------

    def new_locks(self, n: int) -> list[str]:
        """Create and commit `n` preimages (durably) before anything is funded; their hashes."""
        with self.agent.store.transaction(self.now) as tx:
            return [repo.hold_secret(tx, self._secret, secrets.token_bytes(32)) for _ in range(n)]

    # --- funding (operator) ------------------------------------------------------------------

    async def fund(
        self,
        *,
        advisor: str,
        credential_id: str,
        kind: TicketType,
        amount_sat: int,
        schema_pattern: str,
        max_danger: int,
        commands: int = 1,
        milestones: list[int] | None = None,
        bonus_sat: int = 0,
        metric: Metric | None = None,
        params_hash: str | None = None,
        mint: str | None = None,
        locktime_s: int | None = None,
        deadline_s: int = MAX_LOCKTIME_S,
    ) -> Ticket:
        """Fund a ticket for `advisor` and send it; the mint is checked before anything else."""
        if not self.funder:
            raise NotFound("funding needs this agent's node side (it holds the preimages)")
        mint = mint or (self.mints[0] if self.mints else "")
        await check_mint(mint, self.mints)  # before the wallet library talks to the mint
        mint = normalize(mint)
        now = self.now
        plan, terms = plan_ticket(  # refused here, before any ecash is locked
            kind, amount_sat, schema_pattern=schema_pattern, max_danger=max_danger,
            commands=commands, milestones=milestones, bonus_sat=bonus_sat, metric=metric,
            params_hash=params_hash, mint=mint, advisor=advisor, credential_id=credential_id,
            locked_until=locked_until(now, max_danger, locktime_s), deadline=now + deadline_s,
        )  # fmt: skip
        ticket_id, wallet = secrets.token_hex(16), await self.wallet(mint)
        amounts, ppk = [p.amount for p in plan], wallet.output_fee_ppk()
        coins.check_payable(amounts, ppk)  # all of it, before a part is locked:
        coins.check_funds(self.agent.store, mint, amounts, wallet.fee_ppk, ppk)
        locks = zip(plan, self.new_locks(len(plan)), strict=True)
        self.funding.add(ticket_id)  # its drafts are not stranded (drafts.py) while it runs
        try:
            parts = [
                await self._lock_part(wallet, mint, ticket_id, index, planned, digest, advisor)
                for index, (planned, digest) in enumerate(locks)
            ]
        finally:
            self.funding.discard(ticket_id)
        ticket = Ticket(ticket_id=ticket_id, type=kind, mint=mint, node=self.me, advisor=advisor,
                        credential_id=credential_id, refund_pubkey=self.me, terms=terms,
                        parts=parts, created_at=now)  # fmt: skip
        self._send_ticket(ticket)
        return ticket

    def _send_ticket(self, ticket: Ticket) -> None:
        """The funded ticket, checked, stored and queued to the advisor in one commit (its
        parts' drafts are done with)."""
        escrow.check_locks(ticket)
        with self.agent.store.transaction(self.now) as tx:
            repo.save_ticket(tx, ticket, "funder")
            repo.forget_drafts(tx, ticket.ticket_id, len(ticket.parts))
            rumor = TICKET.rumor(self.me, ticket, created_at=self.now)
            self.agent.enqueue_private(tx, ticket.advisor, rumor)
        self.agent.wake_outbox()

    async def _lock_part(
        self,
        wallet: CashuWallet,
        mint: str,
        ticket_id: str,
        index: int,
        planned: PlannedPart,
        digest: str,
        advisor: str,
    ) -> Part:
        """Lock one part's ecash (NUT-14: the hash, the advisor's key, refund to us after the
        locktime); the spent inputs, the change and the draft part are committed at once."""
        inputs = coins.select(self.agent.store, mint, planned.amount, wallet.fee_ppk)
        change, locked = await wallet.lock(
            inputs,
            planned.amount,
            hash_hex=digest,
            payee_xonly=advisor,
            refund_xonly=self.me,
            locktime=planned.locktime,
        )
        part = Part(
            index=index,
            role=planned.role,
            amount_sat=planned.amount,
            lock_hash=digest,
            locktime=planned.locktime,
            after_commands=planned.after_commands,
            proofs=locked,
        )
        with self.agent.store.transaction(self.now) as tx:  # nothing lost if we die here
            repo.spend_proofs(tx, inputs)
            repo.add_proofs(tx, mint, change, "change")
            tx.set_kv(f"{drafts.DRAFT}{ticket_id}:{index}", drafts.draft(mint, part))
        if any(p.dleq is None for p in locked):  # (the draft is refunded after its locktime)
            raise MintRefused(
                "the mint signed without DLEQ proofs (NUT-12): the advisor could not check the "
                "ticket; the part locked is refunded later"
            )
        return part

    # --- the node's side of a command ---------------------------------------------------------

    def covers(self, db: Any, cmd: Command, sender: str, danger: int) -> None:
        """Refuse (before anything runs) a command naming a ticket that does not pay for it."""
        if cmd.ticket is None:
            return
        found = repo.ticket(db, cmd.ticket)
        if found is None or found[1] != "funder":
            raise InvalidParams(f"no escrow ticket {cmd.ticket} was funded by this node")
        ticket, _, successes = found
        terms = ticket.terms
        if ticket.advisor != sender or ticket.credential_id != cmd.credential_id:
            raise Unauthorized("the escrow ticket was funded for another advisor or credential")
        if not terms.covers(cmd.schema):
            raise Restricted(f"the ticket pays for {terms.schema_pattern}, not {cmd.schema}")
        if danger > terms.max_danger:
            raise Restricted(f"the ticket covers danger ≤ {terms.max_danger}, not {danger}")
        if terms.params_hash is not None and terms.params_hash != cmd.params_hash:
            raise Restricted("the ticket was funded for other parameters")
        if self.now > terms.deadline or successes >= terms.commands:
            raise Restricted("the ticket is used up or past its deadline")
        self._still_pays(db, ticket, successes)

    def _still_pays(self, db: Any, ticket: Ticket, successes: int) -> None:
        """The part the next success completes is still locked, before its locktime (after
        it the operator refunds it: a command run then would be done unpaid)."""
        part = min(
            (p for p in ticket.parts if p.role in BY_RECEIPT and p.after_commands > successes),
            key=lambda p: p.after_commands,
            default=None,
        )
        if part is None:  # (a performance ticket's base part paid for its first command)
            return
        state = next(r["state"] for r in repo.parts(db, ticket.ticket_id)
                     if r["part_index"] == part.index)  # fmt: skip
        if self.now >= part.locktime:
            raise Restricted(
                f"the ticket's part {part.index} can no longer pay: its locktime passed"
            )
        if state != "locked":
            raise Restricted(f"the ticket's part {part.index} can no longer pay: it is {state}")

    def on_success(self, tx: Tx, cmd: Command, receipt_id: str) -> str | None:
        """A command under a ticket succeeded: count it; the preimage of the part it completes
        (if any) goes into the receipt.  Same transaction as the receipt: exactly once."""
        if cmd.ticket is None:
            return None
        found = repo.ticket(tx, cmd.ticket)
        if found is None or found[1] != "funder":
            return None
        ticket = found[0]
        done = repo.count_success(tx, ticket.ticket_id)
        due = [p for p in ticket.parts if p.role in BY_RECEIPT and p.after_commands == done]
        for bonus in (p for p in ticket.parts if p.role == PartRole.BONUS and done == 1):
            repo.set_part(tx, ticket.ticket_id, bonus.index, measure_from=self.now)
        if not due:
            return None
        part = due[0]
        if not repo.move_part(tx, ticket.ticket_id, part.index, ("locked",), "released",
                              released_by=receipt_id):  # fmt: skip
            return None
        return repo.release_secret(tx, self._secret, part.lock_hash)

    # --- the advisor's side --------------------------------------------------------------------

    def on_ticket(self, opened: Unwrapped, tx: Tx) -> None:
        ticket = TICKET.parse(opened.rumor, now=self.now).payload
        intake.admit(tx, ticket, sender=opened.sender, me=self.me, mints=self.mints)
        if repo.save_ticket(tx, ticket, "payee"):  # a receipt may have come first (any order)
            for receipt_id, preimage in repo.receipt_preimages(
                tx, ticket.node, ticket.credential_id
            ):
                self.learn(tx, preimage, f"receipt:{receipt_id}")

    def on_release(self, opened: Unwrapped, tx: Tx) -> None:
        release = RELEASE.parse(opened.rumor, now=self.now).payload
        escrow.verify_release(release)
        if release.node != opened.sender:
            raise Unauthorized("a release must come from its node")
        self.learn(tx, release.preimage, f"release:{release.ticket_id}")

    def learn(self, tx: Tx, preimage: str, source: str) -> bool:
        """A preimage arrived (receipt or release): mark the part it opens for redemption."""
        digest = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        row = repo.part_by_hash(tx, "payee", digest)
        if row is None:
            return False
        moved = repo.move_part(tx, row["ticket_id"], row["part_index"], ("locked",), "released",
                               preimage=preimage, released_by=source)  # fmt: skip
        self.wake()
        return moved

    def _held_part(self, ticket_id: str, index: int, role: str) -> tuple[Ticket, dict[str, Any]]:
        """The ticket and the row of its part `index`, held in `role`; NotFound otherwise."""
        found = repo.ticket(self.agent.store, ticket_id)
        rows = [p for p in repo.parts(self.agent.store, ticket_id) if p["part_index"] == index]
        if found is None or found[1] != role or not rows:
            whose = "funded by" if role == "funder" else "held by"
            raise NotFound(f"no ticket part {ticket_id}/{index} {whose} this agent")
        return found[0], rows[0]

    async def redeem(self, ticket_id: str, part_index: int) -> list[CashuProof]:
        """Swap a released part into fresh proofs (preimage + signature)."""
        ticket, row = self._held_part(ticket_id, part_index, "payee")
        if row["state"] == "redeemed":
            raise InvalidParams("this part was already redeemed")
        if not row["preimage"]:
            raise InvalidParams("the node has not released this part's preimage")
        part = ticket.parts[part_index]
        wallet = await self.wallet(self.allowed_mint(ticket.mint))
        fresh = await final_swap(
            self.agent,
            ticket,
            part_index,
            row,
            wallet,
            lambda: wallet.redeem(part.proofs, row["preimage"]),
        )
        with self.agent.store.transaction(self.now) as tx:
            repo.add_proofs(tx, ticket.mint, fresh, f"redeem:{ticket_id}")
            repo.move_part(tx, ticket_id, part_index, ("released",), "redeemed",
                           note=None if fresh else "already spent at the mint")  # fmt: skip
        return fresh

    async def refund(self, ticket_id: str, part_index: int) -> list[CashuProof]:
        """Take back a part the node never released, after its locktime (refund key)."""
        ticket, row = self._held_part(ticket_id, part_index, "funder")
        part, state = ticket.parts[part_index], row["state"]
        if state not in ("locked", "lapsed"):
            raise InvalidParams(f"part {part_index} is {state}; only unreleased parts are refunded")
        if repo.secret_state(self.agent.store, part.lock_hash) == "released":
            raise InvalidParams("the node released this part's preimage: it is the advisor's")
        wallet = await self.wallet(ticket.mint)
        fresh = await final_swap(
            self.agent, ticket, part_index, row, wallet, lambda: wallet.refund(part.proofs)
        )
        with self.agent.store.transaction(self.now) as tx:
            repo.add_proofs(tx, ticket.mint, fresh, f"refund:{ticket_id}")
            repo.move_part(tx, ticket_id, part_index, ("locked", "lapsed"), "refunded")
        return fresh

    async def status(self, ticket_id: str) -> dict[str, Any]:
        """NUT-07 states of every part's proofs, and any preimage a spend revealed."""
        found = repo.ticket(self.agent.store, ticket_id)
        if found is None:
            raise NotFound(f"no ticket {ticket_id}")
        ticket, role, _ = found
        wallet = await self.wallet(self.allowed_mint(ticket.mint))
        out = []
        for part in ticket.parts:
            states = await wallet.states(part.proofs)
            revealed = next((s["preimage"] for s in states if s["preimage"]), None)
            out.append(
                {
                    "part": part.index,
                    "amount_sat": part.amount_sat,
                    "states": sorted({s["state"] for s in states}),
                    "preimage_revealed": revealed,
                }
            )
        return {"ticket_id": ticket_id, "role": role, "parts": out}

    # --- the loop ----------------------------------------------------------------------------

    async def step(self) -> None:
        """Redeem what was released to us; release or lapse bonuses; refund what expired;
        check held tickets' ecash at their mint."""
        for row in repo.parts_in(self.agent.store, "payee", "released"):
            await self._try(row, self.redeem)
        if self.funder:
            self.bonuses.settle()
            for ticket_id, index in drafts.stranded(self, REFUND_GRACE_S):
                row = {"ticket_id": ticket_id, "part_index": index}
                await self._try(row, partial(drafts.refund, self))
        for row in repo.parts_in(self.agent.store, "funder", "locked", "lapsed"):
            if self.now >= row["locktime"] + REFUND_GRACE_S:
                if repo.secret_state(self.agent.store, row["lock_hash"]) == "released":
                    continue
                await self._try(row, self.refund)
        # last, and a few seconds a pass (a mint that hangs costs time); part -1: the ticket
        with anyio.move_on_after(CHECKS_S):
            for ticket_id in repo.unchecked_tickets(self.agent.store):
                if self.backoff.due((ticket_id, -1), self.now):
                    await self._try({"ticket_id": ticket_id, "part_index": -1}, self.check_held)

    async def _try(self, row: dict[str, Any], work: Any) -> None:
        key = (str(row["ticket_id"]), int(row["part_index"]))
        if not self.backoff.due(key, self.now):
            return
        try:
            await work(*key)
            self.backoff.succeeded(key)
        except HiveError as error:
            self.backoff.failed(key, self.now)
            with self.agent.store.transaction(self.now, durable=False) as tx:
                tx.count_errors({error.code: 1})
            log.warning("escrow: %s", error)

    async def maintain(self, every_s: float = 1.0) -> None:
        while True:
            self._wake = anyio.Event()
            await self.step()
            with anyio.move_on_after(every_s):
                await self._wake.wait()

    def describe(self) -> list[dict[str, Any]]:
        rows = repo.tickets(self.agent.store)
        for r in rows:
            t = Ticket.model_validate_json(r.pop("ticket"))
            r.update(type=t.type.value, mint=t.mint, advisor=t.advisor, amount_sat=t.amount_sat,
                     terms=json.loads(t.terms.model_dump_json()))  # fmt: skip
        return rows
