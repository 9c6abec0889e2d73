"""What every part of the node side of advisor commands shares: the transport it answers on,
the node it acts on, the operator's policy and, if escrow runs, who covers payments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.advisory.policy import Governance, Mode, PolicyConfig
from agent.advisory.ports import CommandPayments
from agent.component import Messaging
from agent.node.backend import NodeBackend
from agent.store import advisory as repo
from events.command import Command

CLOCK_WINDOW_S = 300  # commands are accepted ±300 s from the node's clock
DAY = 86400


@dataclass
class NodeContext:
    agent: Messaging
    node: NodeBackend
    policy: PolicyConfig  # replaced as a whole when the operator changes it
    payments: CommandPayments | None = None
    # how the node governs its own (fleet) actions: agent/advisory/local.py sets it
    governance: Governance = field(default_factory=Governance)

    @property
    def me(self) -> str:
        return self.agent.pubkey

    @property
    def now(self) -> int:
        return self.agent.clock.now()

    def is_local(self, db: Any, cmd: Command) -> bool:
        """True for the node's own actions: under the credential it holds for itself."""
        found = repo.credential(db, cmd.credential_id)
        return found is not None and found[0].credential.advisor == self.me

    def mode_of(self, db: Any, cmd: Command) -> Mode:
        """The governance mode that decides this command: the node's own for its actions, the
        policy's for advisors'."""
        return self.governance.mode if self.is_local(db, cmd) else self.policy.mode
