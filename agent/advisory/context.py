"""What every part of the node side of advisor commands shares: the transport it answers on,
the node it acts on, the operator's policy and, if escrow runs, who covers payments."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import nostr_sdk as sdk

from agent.advisory.policy import Governance, Mode, PolicyConfig
from agent.advisory.ports import CommandPayments
from agent.component import Messaging
from agent.node.backend import NodeBackend
from agent.store import advisory as repo
from events.command import Command

CLOCK_WINDOW_S = 300  # commands are accepted ±300 s from the node's clock
DAY = 86400
HOLDERS_CACHE = 4096


@dataclass
class NodeContext:
    agent: Messaging
    node: NodeBackend
    policy: PolicyConfig  # replaced as a whole when the operator changes it
    payments: CommandPayments | None = None
    # how the node governs its own (fleet) actions: agent/advisory/local.py sets it
    governance: Governance = field(default_factory=Governance)
    # credential id → granted to the principal; a credential's holder never changes once signed
    _holders: dict[str, bool] = field(default_factory=dict, repr=False)

    @property
    def me(self) -> str:
        return self.agent.pubkey

    @property
    def now(self) -> int:
        return self.agent.clock.now()

    @cached_property
    def principal(self) -> str:
        """The holder of the node's own actions (its fleet role): a key derived from the
        agent's, which only this node can sign for (a node cannot hold its own credential)."""
        secret = bytes.fromhex(self.agent.keys.secret_key().to_hex())
        derived = hmac.new(secret, b"hive-agent/fleet-principal", hashlib.sha256).digest()
        return sdk.Keys(sdk.SecretKey.from_bytes(derived)).public_key().to_hex()

    def is_local(self, db: Any, cmd: Command) -> bool:
        """True for the node's own actions: under a credential granted to its principal."""
        known = self._holders.get(cmd.credential_id)
        if known is not None:
            return known
        found = repo.credential(db, cmd.credential_id)
        if found is None:
            return False
        local = found[0].credential.advisor == self.principal
        if len(self._holders) >= HOLDERS_CACHE:
            self._holders.clear()
        self._holders[cmd.credential_id] = local
        return local

    def mode_of(self, db: Any, cmd: Command) -> Mode:
        """The governance mode that decides this command: the node's own for its actions, the
        policy's for advisors'."""
        return self.governance.mode if self.is_local(db, cmd) else self.policy.mode
