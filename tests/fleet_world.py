"""A simulated fleet for tests: nodes meshed with channels and links, one `SimMember` each (own
store on disk), helpers to wait for agreement, and a rogue sender that signs whatever it likes."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import nostr_sdk as sdk

from agent.clock import Clock
from agent.fleet.service import FleetConfig
from agent.fleet.simfleet import SimMember, sim_keys
from agent.node.sim import Network
from agent.node.simnode import SimBackend, SimDriver
from agent.store import fleet as fleet_db
from events import fleet as wire
from events import lnsig
from events.fleet.compact import build_compact
from events.fleet.contribution import ContributionReport, report_id

FAST = FleetConfig(
    member_fee_zero=0,  # (fees are what these tests watch; the bridge has its own)
    retry_base_s=0.2,
    retry_cap_s=2.0,
    hello_interval_s=10,
    gossip_gap_s=1,
    sync_join_grace_s=1,
    sync_gap_s=1,
)


@dataclass
class Fleet:
    net: Network
    ids: list[str]
    members: list[SimMember]
    tg: anyio.abc.TaskGroup

    def views(self, indexes: list[int] | None = None) -> list[dict[str, Any]]:
        chosen = indexes if indexes is not None else range(len(self.members))
        return [self.members[i].view() for i in chosen]

    async def settle(self, indexes: list[int] | None = None, limit_s: float = 15) -> dict:
        """Wait until the chosen members agree and nothing is left to deliver; the view."""
        chosen = indexes if indexes is not None else list(range(len(self.members)))
        with anyio.fail_after(limit_s):
            while True:
                views = self.views(chosen)
                pending = sum(
                    self.members[i].fleet.status()["outbox"].get("pending", 0) for i in chosen
                )
                if pending == 0 and all(v == views[0] for v in views):
                    return views[0]
                await anyio.sleep(0.02)

    def versions(self, i: int) -> dict[str, int]:
        """The state record versions member i holds, by owner."""
        return {m["owner"]: m["version"] for m in self.members[i].fleet.topology()["members"]}

    async def gossiped(self, indexes: list[int] | None = None, limit_s: float = 15) -> None:
        """Wait until every chosen member holds every chosen member's latest state record
        (asking each to check its own first), and the acknowledgements have landed."""
        chosen = indexes if indexes is not None else list(range(len(self.members)))
        with anyio.fail_after(limit_s):
            while True:
                for i in chosen:
                    await self.members[i].fleet.gossip.check()
                latest = {self.ids[i]: self.versions(i)[self.ids[i]] for i in chosen}
                if all(self.versions(i).items() >= latest.items() for i in chosen):
                    break
                await anyio.sleep(0.05)
        await anyio.sleep(0.2)

    async def quiet(self, limit_s: float = 15) -> None:
        """Wait until the members' reconciliations after joining are over: their fact sets
        equal, no session open, nothing left to deliver."""
        with anyio.fail_after(limit_s):
            while not self._quiet():
                await anyio.sleep(0.05)

    def _quiet(self) -> bool:
        services = [m.fleet for m in self.members if m.service is not None]
        for s in services:
            now = s.kernel.clock.now()
            h = fleet_db.hive(s.store)
            if h is not None and now - h.joined_at <= s.kernel.config.sync_join_grace_s + 1:
                return False  # its first digests are still to come
            if s.status()["outbox"].get("pending", 0) or s.sync.sessions:
                return False
        return len({s.sync.summary()["digest"] for s in services}) == 1

    async def joined(self, i: int, limit_s: float = 10) -> dict[str, Any]:
        """Wait until member i's join finished (joined or refused); its join record."""
        with anyio.fail_after(limit_s):
            while True:
                joining = self.members[i].fleet.status()["joining"] or {}
                if joining.get("state") in ("joined", "refused"):
                    return joining
                await anyio.sleep(0.02)

    async def admit(self, inviter: int, joiner: int) -> None:
        ticket = await self.members[inviter].fleet.invite(self.ids[joiner])
        await self.members[joiner].fleet.join(ticket["ticket"])
        assert (await self.joined(joiner))["state"] == "joined"

    async def restart(self, i: int) -> None:
        await self.members[i].restart(self.tg)


def mesh(n: int, *, seed: int = 11, extra: int = 1) -> tuple[Network, list[str]]:
    """n fleet nodes (+ `extra` outsiders), every pair with a channel and a live link."""
    net = Network(seed=seed, clock=time.monotonic)
    ids = [net.add_node(f"node{i}", 20_000_000) for i in range(n + extra)]
    for i in range(n + extra):
        for j in range(i + 1, n + extra):
            net.open_channel(ids[i], ids[j], 1_000_000, push_msat=100_000_000)
            net.connect(ids[i], ids[j])
    return net, ids


@asynccontextmanager
async def fleet(
    tmp: Path, n: int, *, clock: Clock | None = None, config: FleetConfig = FAST, extra: int = 1
) -> AsyncIterator[Fleet]:
    net, ids = mesh(n, extra=extra)
    async with SimDriver(net), anyio.create_task_group() as tg:
        members = [
            SimMember(net, ids[i], tmp / f"member{i}", clock=clock, config=config) for i in range(n)
        ]
        for m in members:
            await m.start(tg)
        world = Fleet(net, ids, members, tg)
        try:
            yield world
        finally:
            for m in members:
                if m.service is not None:
                    await m.stop()
            tg.cancel_scope.cancel()


class Rogue:
    """A node that sends hand-made frames: forged, replayed, stale, from the wrong key…"""

    def __init__(self, net: Network, node_id: str, keys: sdk.Keys | None = None) -> None:
        self.net, self.node_id = net, node_id
        self.keys = keys or sim_keys(net, node_id)
        self.backend = SimBackend(net, node_id)

    def frame(
        self,
        msg_type: wire.MsgType,
        body: wire.Body,
        *,
        hive: str,
        ts: int | None = None,
        keys: sdk.Keys | None = None,
        msg_id: str | None = None,
    ) -> bytes:
        if msg_id is None:  # (a report's id is its figures' hash: a rogue's well-formed one too)
            is_report = isinstance(body, ContributionReport)
            msg_id = report_id(body) if is_report else secrets.token_hex(16)
        return wire.build_frame(
            keys or self.keys, msg_type, body, hive=hive, msg_id=msg_id,
            node=self.node_id, ts=int(time.time()) if ts is None else ts,
        )  # fmt: skip

    def session(
        self,
        msg_type: wire.MsgType,
        body: wire.Body,
        *,
        hive: str,
        ts: int | None = None,
        msg_id: str | None = None,
    ) -> bytes:
        """A session frame (compact, unsigned: its sender is the peer it arrives from)."""
        return build_compact(
            msg_type, body, hive=hive, msg_id=msg_id or secrets.token_hex(16),
            ts=int(time.time()) if ts is None else ts,
        )  # fmt: skip

    def binding(self, keys: sdk.Keys | None = None) -> str:
        pubkey = (keys or self.keys).public_key().to_hex()
        return lnsig.sign(self.net.node(self.node_id).secret, pubkey).zbase

    async def send(self, to: str, frame: bytes) -> None:
        await self.backend.sendcustommsg(to, frame)
