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

from agent.fleet.actions import ActionPort, ActionReport, action_for, outcome_state
from agent.node.backend import NodeBackend, resize_channel
from agent.node.models import ChannelState
from agent.store.intents import IntentRow
from events.errors import HiveError, Replayed


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

    async def withdraw(self, row: IntentRow) -> Outcome:
        """The lock lapsed while the action waited: make sure it will not run now; the
        outcome as it stands (an action already running is left to finish)."""


class GovernedExecutor:
    """Actions through the node's own governance (agent/fleet/actions.py `ActionPort`: danger,
    budgets, the approval decision of the governance mode, a signed receipt); a ban proposal
    through `propose_ban` (a vote among members, not an action on this node).  `port()` is
    None until the node's command path runs (the plugin starts it with the Nostr agent):
    meanwhile actions wait, and an intent whose lock lapses first is released."""

    def __init__(
        self,
        port: Callable[[], ActionPort | None],
        propose_ban: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        self.port = port
        self.propose_ban = propose_ban

    async def run(self, row: IntentRow) -> Outcome:
        k = row.lock
        if k.kind == "ban_proposal":
            return await NodeExecutor.ban(self.propose_ban, k.target)
        port = self.port()
        if port is None:
            return Outcome("waiting", "the node's command path is not running yet")
        action = action_for(k.kind, k.target, k.amount_sat, k.id, _origin(row.origin))
        if action is None:
            return Outcome("failed", f"NOT_IMPLEMENTED: {k.kind} is not an action here")
        return _as_outcome(port.submit(action))

    async def settle(self, row: IntentRow) -> Outcome:
        port = self.port()
        if port is None:
            return Outcome("waiting", "the node's command path is not running yet")
        report = None if row.lock.kind == "ban_proposal" else port.outcome(row.lock.id)
        if report is None:
            return await self.run(row)  # (never handed over: a submit is idempotent anyway)
        return _as_outcome(report)

    async def withdraw(self, row: IntentRow) -> Outcome:
        port = self.port()
        if port is None:
            return Outcome("failed", "the lock lapsed before the node's command path ran")
        report = port.withdraw(row.lock.id)
        if report is None:
            return Outcome("failed", "the lock lapsed before the action was handed over")
        return _as_outcome(report)


def _as_outcome(report: ActionReport | None) -> Outcome:
    state, detail = outcome_state(report)
    return Outcome("ok" if state == "ok" else "failed" if state == "failed" else "waiting", detail)


def _origin(origin: str) -> str:
    return origin if origin in ("planner", "hive-expand") else "planner"


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
            if k.kind == "ban_proposal":
                return await self.ban(self.propose_ban, k.target)
        except HiveError as err:
            return Outcome("failed", str(err))
        return Outcome("failed", f"NOT_IMPLEMENTED: this node cannot run {k.kind} itself")

    @staticmethod
    async def ban(propose: Callable[[str], Awaitable[object]] | None, target: str) -> Outcome:
        if propose is None:
            return Outcome("failed", "NOT_IMPLEMENTED: no membership to propose the ban to")
        try:
            await propose(target)
        except Replayed:  # asked again after a crash: this node's proposal or vote stands
            return Outcome("ok", "ban already proposed by this node")
        except HiveError as err:
            return Outcome("failed", str(err))
        return Outcome("ok", "ban proposed")

    async def withdraw(self, row: IntentRow) -> Outcome:
        return await self.settle(row)  # (nothing here waits: asked, it is final)

    async def settle(self, row: IntentRow) -> Outcome:
        k = row.lock
        if k.kind == "ban_proposal":  # asked again: membership refuses a second proposal
            return await self.ban(self.propose_ban, k.target)
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
