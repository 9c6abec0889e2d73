"""A node agent on a simulated node, an advisor agent and an operator agent on a real relay."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import nostr_sdk as sdk

from agent import app
from agent.advisory.advisor import AdvisorService
from agent.advisory.node import NodeService
from agent.advisory.policy import PolicyConfig
from agent.clock import Clock
from agent.component import Wiring
from agent.escrow.bonuses import watch_forwards
from agent.escrow.service import Escrow
from agent.node.sim import Network
from agent.node.simnode import SimBackend, SimDriver
from agent.runtime import Agent
from agent.settings import RelaysConfig, Settings
from agent.store import escrow as erepo
from events import credential
from events.credential import Constraints, ManagementCredential, Tier
from events.escrow import Ticket, TicketType
from events.kinds import Kind
from tests.node_scenario import ring

FAST = {"reconnect_base_s": 0.1, "reconnect_max_s": 0.5, "publish_timeout_s": 5}


@dataclass
class World:
    net: Network
    ids: list[str]
    node: NodeService
    advisor: AdvisorService
    operator: Agent
    dms: list[str]  # what the operator received by DM
    tmp: Path
    advisor_dms: list[str]  # what the advisor received by plain DM (NIP-17)
    node_escrow: Escrow | None = None
    advisor_escrow: Escrow | None = None

    @property
    def backend(self) -> SimBackend:
        return SimBackend(self.net, self.ids[0])

    async def channels(self) -> list:
        return await self.backend.channels()

    def grant(
        self,
        tier: Tier = Tier.STANDARD,
        schemas: tuple[str, ...] = ("hive:fee-policy/*", "hive:monitor/*"),
        **constraints: int,
    ) -> ManagementCredential:
        now = self.node.now
        cred = ManagementCredential(
            credential_id=secrets.token_hex(16),
            node=self.node.me,
            advisor=self.advisor.me,
            tier=tier,
            allowed_schemas=list(schemas),
            constraints=Constraints(**constraints),
            valid_from=now - 60,
            valid_until=now + 90 * 86400,
        )
        with self.node.agent.store.transaction(now) as tx:
            self.node.credentials.grant(tx, credential.sign(self.node.agent.keys, cred))
        self.node.agent.wake_outbox()
        return cred

    async def wait_credential(self, cred: ManagementCredential) -> None:
        from agent.store import advisory as repo

        with anyio.fail_after(10):
            while repo.credential(self.advisor.agent.store, cred.credential_id) is None:
                await anyio.sleep(0.05)


@asynccontextmanager
async def world(
    tmp: Path,
    relay_url: str,
    policy: PolicyConfig | None = None,
    node_clock: Clock | None = None,
    mint: str | None = None,
) -> AsyncIterator[World]:
    net, ids = ring()
    config = RelaysConfig.single(relay_url, **FAST)
    operator_keys = sdk.Keys.generate()
    pol = policy or PolicyConfig()
    if pol.operator_pubkey is None:
        pol = pol.model_copy(update={"operator_pubkey": operator_keys.public_key().to_hex()})
    dms: list[str] = []
    advisor_dms: list[str] = []

    def dm_log(into: list[str]) -> Wiring:
        return Wiring(
            rumors={Kind.DIRECT_MESSAGE: lambda opened, tx: into.append(opened.rumor.content)}
        )

    def home(name: str) -> Settings:
        return Settings(home=tmp / name, outbox_retry_base_s=0.2, outbox_retry_max_s=1)

    mints = [mint] if mint is not None else []
    pol = pol.model_copy(update={"mints": mints})
    node_app = app.node_agent(
        home("node"), sdk.Keys.generate(), config, SimBackend(net, ids[0]), pol, clock=node_clock
    )
    advisor_app = app.standalone(
        home("advisor"), sdk.Keys.generate(), config, mints, extra=[dm_log(advisor_dms)]
    )
    operator_app = app.standalone(home("operator"), operator_keys, config, extra=[dm_log(dms)])
    async with AsyncExitStack() as stack:
        for each in (node_app, advisor_app, operator_app):
            await stack.enter_async_context(each.agent)
        service, advisor, operator = node_app.node, advisor_app.advisor, operator_app.agent
        node_escrow = advisor_escrow = None
        if mint is not None:  # closed after the task group below has stopped their loops
            node_escrow, advisor_escrow = node_app.escrow, advisor_app.escrow
            stack.push_async_callback(node_escrow.close)
            stack.push_async_callback(advisor_escrow.close)
        await stack.enter_async_context(SimDriver(net))  # delivers forward events
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)
        tg.start_soon(service.run)
        if node_escrow is not None and advisor_escrow is not None:
            tg.start_soon(node_escrow.maintain, 0.2)
            tg.start_soon(advisor_escrow.maintain, 0.2)
            tg.start_soon(watch_forwards, SimBackend(net, ids[0]), node_escrow)
        yield World(
            net,
            ids,
            service,
            advisor,
            operator,
            dms,
            tmp,
            advisor_dms,
            node_escrow,
            advisor_escrow,
        )


# --- escrow (tests/test_escrow_flow.py, tests/test_escrow_attacks.py) --------------------------


async def until(condition: Callable[[], Any], timeout: float = 20) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.05)


def parts(w: World, ticket_id: str, role: str) -> list[str]:
    """The states of a ticket's parts as the funder (node) or the payee (advisor) holds them."""
    db = (w.node if role == "funder" else w.advisor).agent.store
    return [p["state"] for p in erepo.parts(db, ticket_id)]


async def funded(w: World, kind: TicketType, **kw: Any) -> tuple[Ticket, str]:
    """A ticket the node funds (1,000 sat topped up first) for a credential it grants the
    advisor, once the advisor holds it; (ticket, credential id)."""
    assert w.node_escrow is not None
    cred = w.grant(tier=Tier.ADVANCED, schemas=("hive:fee-policy/*", "hive:rebalance/*"))
    await w.wait_credential(cred)
    await w.node_escrow.topup(1000)
    ticket = await w.node_escrow.fund(
        advisor=w.advisor.me,
        credential_id=cred.credential_id,
        kind=kind,
        schema_pattern=kw.pop("schema_pattern", "hive:fee-policy/*"),
        max_danger=kw.pop("max_danger", 5),
        **kw,
    )
    await until(lambda: erepo.ticket(w.advisor.agent.store, ticket.ticket_id) is not None)
    return ticket, cred.credential_id
