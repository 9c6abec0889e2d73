"""The operator's actions from the page, through exactly the paths the other faces use:

- `AppOperator` (a running agent in this process: the simulator, the plugin): the plugin's
  `hive-approve`/`hive-revoke` path — `node_side.vote` on the node's store and a wake-up, and
  `NodeService.credentials.revoke`.
- `HomeOperator` (`hive-agent dashboard` beside a running `hive-agent node` on the same home):
  the CLI's `approvals approve|reject|confirm` path (`node_side.vote` on the store; the running
  node applies it within its one-second step) and `credential revoke`'s (a standalone agent on
  the home's key publishes the revocation).

Every action is logged (logfmt) and counted in `counts`, like the CLI's."""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from typing import Any, Protocol

from agent.advisory import node as node_side
from agent.advisory.node import NodeService
from agent.clock import SystemClock
from agent.logs import log_event
from agent.settings import Settings
from agent.store import Store
from events.errors import HiveError, InvalidParams

STEPS = ("approve", "reject", "confirm")
log = logging.getLogger("hive.dashboard")


class Operator(Protocol):
    counts: Counter[str]

    async def vote(self, command_id: str, step: str) -> str: ...

    async def revoke(self, credential_id: str) -> dict[str, Any]: ...

    async def ranked(self) -> list[dict[str, Any]]: ...


def _logged(counts: Counter[str], action: str, target: str, error: HiveError | None) -> None:
    outcome = "ok" if error is None else error.code
    counts[f"{action}:{outcome}"] += 1
    log_event(log, logging.INFO, action, target=target[:16], outcome=outcome)


def _step(step: str) -> str:
    if step not in STEPS:
        raise InvalidParams(f"the step is one of {', '.join(STEPS)}")
    return step


class AppOperator:
    """Actions on a `NodeService` running in this process (the plugin's path)."""

    def __init__(self, service: NodeService) -> None:
        self.service = service
        self.counts: Counter[str] = Counter()

    async def vote(self, command_id: str, step: str) -> str:
        try:
            found = node_side.vote(
                self.service.agent.store, command_id, _step(step), self.service.now
            )
        except HiveError as error:
            _logged(self.counts, step, command_id, error)
            raise
        self.service.wake()
        _logged(self.counts, step, found, None)
        return found

    async def revoke(self, credential_id: str) -> dict[str, Any]:
        try:
            await self.service.credentials.revoke(credential_id)
        except HiveError as error:
            _logged(self.counts, "revoke", credential_id, error)
            raise
        _logged(self.counts, "revoke", credential_id, None)
        return {"revoked": credential_id}

    async def ranked(self) -> list[dict[str, Any]]:
        """A node service has no marketplace of its own: nothing to rank here."""
        return []


class HomeOperator:
    """Actions on an agent home, as `hive-agent approvals …` and `credential revoke` take them."""

    def __init__(self, settings: Settings, args: argparse.Namespace) -> None:
        self.settings, self.args = settings, args
        self.counts: Counter[str] = Counter()

    async def vote(self, command_id: str, step: str) -> str:
        store = Store(self.settings.store_file)
        try:
            found = node_side.vote(store, command_id, _step(step), SystemClock().now())
        except HiveError as error:
            _logged(self.counts, step, command_id, error)
            raise
        finally:
            store.close()
        _logged(self.counts, step, found, None)
        return found

    async def ranked(self) -> list[dict[str, Any]]:
        """Listings from the relays, ranked, as `hive-agent market browse --explain` ranks them
        (a standalone agent on the home's key reads the relays)."""
        from agent.cli.apps import standalone_app
        from agent.cli.market import ranked_row
        from agent.market.ranking import Need

        app = standalone_app(self.args, self.settings)
        async with app.agent:
            rows = [ranked_row(r) for r in await app.market.browse(Need())]
        log_event(log, logging.INFO, "browse", listings=len(rows))
        return rows

    async def revoke(self, credential_id: str) -> dict[str, Any]:
        from agent.cli.advisory import revoke_with
        from agent.cli.apps import standalone_app

        args = argparse.Namespace(**{**vars(self.args), "credential_id": credential_id})
        try:
            result = await revoke_with(args, self.settings, standalone_app)
        except HiveError as error:
            _logged(self.counts, "revoke", credential_id, error)
            raise
        _logged(self.counts, "revoke", credential_id, None)
        return result
