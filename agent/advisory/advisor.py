"""The advisor side: hold credentials, send commands, collect and check receipts."""

from __future__ import annotations

import secrets
from typing import Any

import anyio

from agent.advisory.ports import PreimageSink
from agent.component import Messaging, Wiring
from agent.store import Tx
from agent.store import advisory as repo
from events import command, credential, receipt
from events.command import Command
from events.errors import Unauthorized, WrongRecipient
from events.kinds import Kind
from events.nip59 import Unwrapped
from events.receipt import Receipt, Status


class AdvisorService:
    def __init__(self, host: Messaging, preimages: PreimageSink | None = None) -> None:
        self.agent = host
        self.me = host.pubkey
        self._arrived = anyio.Event()
        self.preimages = preimages  # escrow: a receipt's preimage opens a ticket part
        # command id → one list per `wait_for` waiting on it: the receipts this process
        # committed for it since (so a waiter need not read the store again for them)
        self._waiting: dict[str, list[list[Receipt]]] = {}

    def wiring(self) -> Wiring:
        return Wiring(
            rumors={Kind.CREDENTIAL_GRANT: self.on_grant, Kind.RECEIPT: self.on_receipt},
            after_batch=[self._poke],
        )

    def _poke(self) -> None:
        """After every inbound batch: wake every waiter (each waits on the event current
        when it last looked, so none is left waiting on one that was replaced)."""
        self._arrived.set()
        self._arrived = anyio.Event()

    @property
    def now(self) -> int:
        return self.agent.clock.now()

    def on_grant(self, opened: Unwrapped, tx: Tx) -> None:
        grant = credential.GRANT.parse(opened.rumor, now=self.now).payload
        credential.verify(grant)
        if grant.credential.node != opened.sender:
            raise Unauthorized("a credential must come from the node that signed it")
        if grant.credential.advisor != self.me:
            raise WrongRecipient("this credential names another advisor")
        repo.save_credential(tx, grant, "held")

    def on_receipt(self, opened: Unwrapped, tx: Tx) -> None:
        sealed = receipt.FAMILY.parse(opened.rumor, now=self.now).payload
        receipt.verify(sealed)
        if sealed.node != opened.sender or sealed.advisor != self.me:
            raise Unauthorized("a receipt must come from its node, about our command")
        found = repo.credential(tx, sealed.credential_id)
        if found is not None and (found[2] != "held" or found[0].credential.node != sealed.node):
            # a credential we know, granted by another node (or by us): a forged link in a
            # chain that is not the sender's.  (One we do not know yet is kept: its grant may
            # still be on the way; the chains read only receipts of credentials held.)
            raise Unauthorized("this receipt names a credential its sender did not grant us")
        if repo.save_held_receipt(tx, sealed) and found is not None:  # (held: read as such)
            tx.on_commit(lambda: self._committed(sealed))
        if sealed.preimage and self.preimages is not None:
            self.preimages.learn(tx, sealed.preimage, f"receipt:{sealed.receipt_id}")

    async def advise(
        self,
        node: str,
        schema: str,
        action: str,
        params: dict[str, Any],
        *,
        dry_run: bool = False,
        ticket: str | None = None,
        wait: bool = True,
        timeout_s: float = 30,
        lifetime_s: int = 300,
    ) -> tuple[Command, Receipt | None]:
        """Send a command to `node` under the credential we hold for it; with `wait`, return
        its final receipt (not a 'queued' one) or None on timeout.  A `ticket` it names must
        be held here and its ecash must have passed the check at its mint (escrow)."""
        grant = repo.active_held(self.agent.store, node, self.now)
        if grant is None:
            raise Unauthorized(f"we hold no valid credential for node {node[:16]}…")
        if ticket is not None and self.preimages is not None:
            await self.preimages.require_checked(ticket, timeout_s)
        cmd = Command(
            command_id=secrets.token_hex(16),
            node=node,
            credential_id=grant.credential.credential_id,
            schema=schema,
            action=action,
            params=params,
            nonce=secrets.token_hex(16),
            issued_at=self.now,
            expires_at=self.now + lifetime_s,
            dry_run=dry_run,
            ticket=ticket,
        )
        targets = await self.agent.inbox_of(node)
        rumor = command.FAMILY.rumor(self.me, cmd, created_at=self.now)
        with self.agent.store.transaction(self.now) as tx:  # recorded and queued in one commit
            repo.save_sent(tx, cmd)
            self.agent.enqueue_private(tx, node, rumor, targets)
        self.agent.wake_outbox()
        await anyio.lowlevel.checkpoint()  # the outbox sends it before we start waiting
        if not wait:
            return cmd, None
        return cmd, await self.wait_for(cmd.command_id, timeout_s, final=True)

    def _committed(self, sealed: Receipt) -> None:
        for fresh in self._waiting.get(sealed.command_id, ()):
            fresh.append(sealed)

    async def wait_for(self, command_id: str, timeout_s: float, *, final: bool) -> Receipt | None:
        """The newest receipt for `command_id` (with `final`, not a 'queued' one), or None
        after `timeout_s`.  The store is read first, then again only after a batch that
        brought this process no receipt for it (one may come another way: a grant that
        makes it readable, another process)."""
        fresh: list[Receipt] = []
        self._waiting.setdefault(command_id, []).append(fresh)
        try:
            with anyio.move_on_after(timeout_s):
                held = repo.held_for_command(self.agent.store, command_id)
                while True:
                    done = [r for r in held if not final or r.status != Status.QUEUED]
                    if done:
                        return done[-1]
                    await self._arrived.wait()
                    if fresh:
                        held = sorted([*held, *fresh], key=lambda r: r.seq)
                        fresh.clear()
                    else:
                        held = repo.held_for_command(self.agent.store, command_id)
            return None
        finally:
            others = [w for w in self._waiting.pop(command_id) if w is not fresh]
            if others:
                self._waiting[command_id] = others

    def verify_chain(self, node: str | None = None) -> dict[str, int]:
        """Check every chain we hold; {credential id: receipts} (errors of receipt.verify_chain)."""
        chains: dict[str, list[Receipt]] = {}
        for r in repo.held_receipts(self.agent.store, node):
            chains.setdefault(r.credential_id, []).append(r)
        for chain in chains.values():
            receipt.verify_chain(chain)
        return {cid: len(chain) for cid, chain in chains.items()}
