"""Fleet members on the simulator, each with its own store on disk: used by tests, the demo and
benchmarks.  `restart()` is a real restart of the agent: the node goes offline (its links drop,
messages in flight are lost), the service and its store are closed, and a new service is built
from the files alone."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import nostr_sdk as sdk

from agent.clock import Clock
from agent.fleet.component import Ledger
from agent.fleet.planner_model import PlannerConfig
from agent.fleet.service import FleetConfig, FleetService
from agent.node.sim import Network
from agent.node.simnode import SimBackend
from agent.store.db import Store


def sim_keys(net: Network, node_id: str) -> sdk.Keys:
    """The node's Nostr key, derived like `makesecret` does on CLN (stable across restarts)."""
    secret = hashlib.sha256(net.node(node_id).secret + b"makesecret:hive-agent/nostr-key")
    return sdk.Keys(sdk.SecretKey.from_bytes(secret.digest()))


class SimMember:
    def __init__(
        self,
        net: Network,
        node_id: str,
        home: Path,
        *,
        clock: Clock | None = None,
        config: FleetConfig | None = None,
        governed: bool = False,
        planner: PlannerConfig | None = None,
        ledger: Ledger | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.net, self.node_id, self.home = net, node_id, home
        self.ledger = ledger  # settlement inputs (None: the kernel's own Ledger port)
        self.on_change = on_change  # after every change to the node (e.g. to persist it)
        self.clock, self.config = clock, config
        if clock is not None:  # the node's invoices expire on the fleet's time
            net.wall = clock.now
        self.governed, self.planner = governed, planner  # (FleetService's, as named there)
        self.service: FleetService | None = None
        self.store: Store | None = None
        self._scope: anyio.CancelScope | None = None
        self._done = anyio.Event()
        self._peers: list[str] = []
        self.restarts = 0

    @property
    def fleet(self) -> FleetService:
        assert self.service is not None, "the member is not running"
        return self.service

    async def start(self, tg: anyio.abc.TaskGroup) -> FleetService:
        self.home.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.home / "fleet.sqlite")
        backend = SimBackend(self.net, self.node_id, self.on_change or (lambda: None))
        service = FleetService(
            backend, self.store, sim_keys(self.net, self.node_id), clock=self.clock,
            config=self.config, governed=self.governed, planner=self.planner, ledger=self.ledger,
        )  # fmt: skip
        events = backend.events()  # listening before the links come back
        ready = anyio.Event()

        done = self._done = anyio.Event()

        async def serve() -> None:
            with anyio.CancelScope() as scope:
                self._scope = scope
                try:
                    async with anyio.create_task_group() as inner:
                        inner.start_soon(service.serve, events)
                        for peer in self._peers:  # back online: the links come back
                            self.net.connect(self.node_id, peer)
                        await service.start()
                        ready.set()
                        inner.start_soon(service.run)
                finally:
                    with anyio.CancelScope(shield=True):
                        await events.aclose()
                    done.set()

        tg.start_soon(serve)
        with anyio.fail_after(5):
            await ready.wait()
        self.service = service
        return service

    async def stop(self) -> None:
        """Go offline: drop every link, stop the service, close the store."""
        self._peers = self.net.peers(self.node_id)
        for peer in self._peers:
            self.net.disconnect(self.node_id, peer)
        if self._scope is not None:
            self._scope.cancel()
            with anyio.fail_after(5):
                await self._done.wait()  # the service has stopped touching the store
        if self.store is not None:
            self.store.close()
        self.service = self.store = self._scope = None

    async def restart(self, tg: anyio.abc.TaskGroup) -> FleetService:
        await self.stop()
        self.restarts += 1
        return await self.start(tg)

    def view(self) -> dict[str, Any]:
        return self.fleet.view()
