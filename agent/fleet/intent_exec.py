"""What runs the action an intent lock guards, once the lock is committed: the `Executor` port
the intents component calls, and `NodeExecutor`, which runs channel actions straight on the
node backend (simulated fleets, the benchmark, a node without the advisory side).  Nodes with
the advisory side run fleet actions through their own governance instead (same port).

`run` is called once per intent (the component claims it in the store first); `settle` is
called after a restart found the claim without an outcome, and for an outcome still
`waiting` (an action queued for the operator): it must find out what happened without running
the action again — by asking the node."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from agent.node.backend import NodeBackend, resize_channel
from agent.node.models import ChannelState
from agent.store.intents import IntentRow
from events.errors import HiveError


@dataclass(frozen=True)
class Outcome:
    state: Literal["ok", "failed", "waiting"]
    detail: str = ""

    @property
    def final(self) -> bool:
        return self.state != "waiting"


class Executor(Protocol):
    async def run(self, row: IntentRow) -> Outcome:
        """Run the guarded action (called once per intent)."""

    async def settle(self, row: IntentRow) -> Outcome:
        """What became of an action claimed before a crash, or still waiting; never runs it."""


class NodeExecutor:
    """Channel actions straight on the node backend; a ban proposal through `propose_ban`."""

    def __init__(
        self, node: NodeBackend, propose_ban: Callable[[str], Awaitable[object]] | None = None
    ) -> None:
        self.node = node
        self.propose_ban = propose_ban

    async def run(self, row: IntentRow) -> Outcome:
        k = row.lock
        try:
            if k.kind == "channel_open":
                chan = await self.node.open_channel(k.target, k.amount_sat)
                return Outcome("ok", f"opened {chan.short_channel_id}")
            if k.kind == "channel_close":
                await self.node.close_channel(k.target)
                return Outcome("ok", f"closed {k.target}")
            if k.kind == "splice":
                chan = await resize_channel(self.node, k.target, k.amount_sat)
                return Outcome("ok", f"{chan.short_channel_id} is now {chan.capacity_sat} sat")
            if k.kind == "ban_proposal" and self.propose_ban is not None:
                await self.propose_ban(k.target)
                return Outcome("ok", "ban proposed")
        except HiveError as err:
            return Outcome("failed", str(err))
        return Outcome("failed", f"NOT_IMPLEMENTED: this node cannot run {k.kind} itself")

    async def settle(self, row: IntentRow) -> Outcome:
        k = row.lock
        try:
            channels = await self.node.channels()
        except HiveError as err:
            return Outcome("waiting", str(err))  # (asked again on the next pass)
        if k.kind == "channel_open":
            opened = [c for c in channels if c.peer_id == k.target]
            if opened:
                return Outcome("ok", f"opened {opened[0].short_channel_id} (found after restart)")
            return Outcome("failed", "no channel to the target after restart: not opened")
        if k.kind == "channel_close":
            open_ = [c for c in channels if c.short_channel_id == k.target]
            if open_ and open_[0].state != ChannelState.CLOSED:
                return Outcome("failed", "the channel is still open after restart")
            return Outcome("ok", "closed (found after restart)")
        return Outcome("failed", "interrupted by a restart; not retried")
