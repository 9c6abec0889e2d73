"""What the advisory services need from others, as small protocols (escrow implements them;
the advisory side imports nothing of escrow)."""

from __future__ import annotations

from typing import Any, Protocol

from agent.store import Tx
from events.command import Command


class CommandPayments(Protocol):
    """The node side's view of payments for commands (escrow tickets)."""

    def covers(self, db: Any, cmd: Command, sender: str, danger: int) -> None:
        """Refuse (a typed error) a command whose named ticket does not pay for it."""

    def on_success(self, tx: Tx, cmd: Command, receipt_id: str) -> str | None:
        """A command succeeded: the preimage its receipt carries, if it completes a part."""


class PreimageSink(Protocol):
    """The advisor side's view of escrow: the tickets that pay it."""

    def learn(self, tx: Tx, preimage: str, source: str) -> bool:
        """A receipt carried a preimage: mark what it opens; False if it opens nothing."""

    async def require_checked(self, ticket_id: str, timeout_s: float = ...) -> None:
        """Before a command names a ticket: a typed error unless it is held here and its
        ecash passed the check at its mint (made now, within `timeout_s`, if not yet)."""
