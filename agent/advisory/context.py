"""What every part of the node side of advisor commands shares: the transport it answers on,
the node it acts on, the operator's policy and, if escrow runs, who covers payments."""

from __future__ import annotations

from dataclasses import dataclass

from agent.advisory.policy import PolicyConfig
from agent.advisory.ports import CommandPayments
from agent.component import Messaging
from agent.node.backend import NodeBackend

CLOCK_WINDOW_S = 300  # commands are accepted ±300 s from the node's clock
DAY = 86400


@dataclass
class NodeContext:
    agent: Messaging
    node: NodeBackend
    policy: PolicyConfig  # replaced as a whole when the operator changes it
    payments: CommandPayments | None = None

    @property
    def me(self) -> str:
        return self.agent.pubkey

    @property
    def now(self) -> int:
        return self.agent.clock.now()
