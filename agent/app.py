"""The one place that assembles an agent, for each role it plays.

- `standalone`: an operator's or advisor's own agent, without a node: notes, the marketplace,
  credentials it holds and the receipts it gets, escrow tickets sent to it (`hive-agent run`,
  `advise`, `market …`, `escrow …`, `credential …`).
- `node_agent`: the same plus the node side of advisor commands on a `NodeBackend`, and escrow
  as the funder that holds the preimages (`hive-agent node`, the plugin inside lightningd on
  its own store, the demo and the simulator).

Every component is built with the ports it needs and handed to `Agent(transport, components)`;
nothing attaches itself later.

    app = node_agent(settings, keys, relays, backend, policy)
    async with app.agent:
        async with anyio.create_task_group() as tg:
            for loop in app.loops():
                tg.start_soon(loop)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

import nostr_sdk as sdk

from agent.advisory.advisor import AdvisorService
from agent.advisory.credentials import Credentials
from agent.advisory.node import NodeService
from agent.advisory.policy import PolicyConfig
from agent.clock import Clock
from agent.component import Component
from agent.escrow.bonuses import watch_forwards
from agent.escrow.service import Escrow, EscrowRole
from agent.market.service import Market
from agent.node.backend import NodeBackend
from agent.runtime import Agent
from agent.settings import RelaysConfig, Settings
from agent.store import Store
from agent.transport import Transport
from events.profile import Profile

Loop = Callable[[], Awaitable[None]]


@dataclass
class Standalone:
    agent: Agent
    market: Market
    advisor: AdvisorService
    escrow: Escrow
    credentials: Credentials
    extra: list[Component]  # further components (a test's probe, a DM log)

    about = "Lightning Hive agent: marketplace, advisor credentials and Cashu escrow over Nostr"

    def loops(self) -> list[Loop]:
        """What runs for as long as the agent does (`hive-agent run`)."""
        return [self.market.maintain, self.escrow.maintain]

    async def announce(self) -> list[int]:
        """For daemons: publish the relay lists and the profile if they changed (the kinds)."""
        return await self.agent.announce(Profile(name="hive-agent", about=self.about))

    async def close(self) -> None:
        await self.escrow.close()


@dataclass
class NodeAgent(Standalone):
    node: NodeService
    backend: NodeBackend
    watch_forwards: bool  # feed bonuses from the backend's events (the plugin has forward_event)
    about = "Lightning Hive node agent: takes advisor commands for a Lightning node over Nostr"

    def loops(self) -> list[Loop]:
        """What `hive-agent node` runs: commands, escrow, the forwards bonuses need, and (once)
        the NIP-89 handler event if it changed."""
        loops: list[Loop] = [self.node.run, self.escrow.maintain, self.market.announce_handler]
        if self.watch_forwards:
            loops.append(partial(watch_forwards, self.backend, self.escrow))
        return loops


def standalone(
    settings: Settings,
    keys: sdk.Keys,
    relays: RelaysConfig,
    mints: Sequence[str] = (),
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    extra: Sequence[Component] = (),
    funder: bool = False,
) -> Standalone:
    """An agent without a node; escrow tickets only from `mints`.  A `funder` also funds
    tickets (their preimages stay in its store for the node agent on the same home)."""
    host = Transport(settings, keys, relays, store=store, clock=clock)
    market = Market(host)
    roles = {EscrowRole.PAYEE, EscrowRole.FUNDER} if funder else {EscrowRole.PAYEE}
    escrow = Escrow(host, list(mints), frozenset(roles))
    advisor = AdvisorService(host, preimages=escrow)
    agent = Agent(host, [market, advisor, escrow, *extra])
    return Standalone(agent, market, advisor, escrow, Credentials(host), list(extra))


def node_agent(
    settings: Settings,
    keys: sdk.Keys,
    relays: RelaysConfig,
    backend: NodeBackend,
    policy: PolicyConfig,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    extra: Sequence[Component] = (),
    watch_forwards: bool = True,
) -> NodeAgent:
    """The operator's node agent: advisor commands run on `backend` under `policy`."""
    host = Transport(settings, keys, relays, store=store, clock=clock)
    market = Market(host)
    escrow = Escrow(host, policy.mints, frozenset({EscrowRole.FUNDER, EscrowRole.PAYEE}))
    advisor = AdvisorService(host, preimages=escrow)
    node = NodeService(host, backend, policy, payments=escrow)
    agent = Agent(host, [market, advisor, escrow, node, *extra])
    return NodeAgent(
        agent,
        market,
        advisor,
        escrow,
        node.credentials,
        list(extra),
        node,
        backend,
        watch_forwards,
    )
