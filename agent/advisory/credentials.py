"""Management credentials, the operator's side: build, sign, store and send a grant; revoke one
(refused from that instant, a public revocation follows).  Needs no Lightning node."""

from __future__ import annotations

import secrets

from pydantic import ValidationError

from agent.component import Messaging
from agent.store import Tx
from agent.store import advisory as repo
from events import credential
from events.credential import GRANT, REVOCATION, Grant, ManagementCredential, Revocation
from events.errors import InvalidParams, NotFound
from events.types import first_error

DAY = 86400


class Credentials:
    def __init__(self, host: Messaging) -> None:
        self.agent = host
        self.me = host.pubkey

    @property
    def now(self) -> int:
        return self.agent.clock.now()

    def grant(self, tx: Tx, grant: Grant) -> None:
        """Store a credential this node signed, and queue it to the advisor (same commit)."""
        repo.save_credential(tx, grant, "granted")
        self.agent.enqueue_private(
            tx, grant.credential.advisor, GRANT.rumor(self.me, grant, created_at=self.now)
        )

    def issue(
        self,
        advisor: str,
        tier: str,
        schemas: list[str],
        *,
        days: int = 90,
        max_fee_change_pct: int | None = None,
        max_rebalance_sats: int | None = None,
        max_daily_actions: int | None = None,
    ) -> Grant:
        """Build, sign, store and send a credential for `advisor` (CLI and plugin share this)."""
        cred = new_credential(
            self.me,
            advisor,
            tier,
            schemas,
            now=self.now,
            days=days,
            max_fee_change_pct=max_fee_change_pct,
            max_rebalance_sats=max_rebalance_sats,
            max_daily_actions=max_daily_actions,
        )
        grant = credential.sign(self.agent.keys, cred)
        with self.agent.store.transaction(self.now) as tx:
            self.grant(tx, grant)
        self.agent.wake_outbox()
        return grant

    async def revoke(self, credential_id: str) -> None:
        """Revoke a credential: refused from this instant; a public revocation event follows."""
        with self.agent.store.transaction(self.now) as tx:
            if not repo.revoke_credential(tx, credential_id):
                raise NotFound(f"no active credential {credential_id}")
        item = Revocation(
            credential_hash=credential.revocation_key(credential_id), revoked_at=self.now
        )
        event = REVOCATION.build(self.agent.keys, item, created_at=self.now)
        await self.agent.publish(event, wait=False)


def new_credential(
    node: str,
    advisor: str,
    tier: str,
    schemas: list[str],
    *,
    now: int,
    days: int = 90,
    max_fee_change_pct: int | None = None,
    max_rebalance_sats: int | None = None,
    max_daily_actions: int | None = None,
) -> ManagementCredential:
    """A management credential, checked; InvalidParams naming the first problem (the CLI
    calls this before connecting anywhere)."""
    if not 1 <= days <= credential.MAX_VALIDITY_S // DAY:
        raise InvalidParams(
            f"a credential lasts 1 to {credential.MAX_VALIDITY_S // DAY} days, not {days}"
        )
    limits = {
        k: v
        for k, v in {
            "max_fee_change_pct": max_fee_change_pct,
            "max_rebalance_sats": max_rebalance_sats,
            "max_daily_actions": max_daily_actions,
        }.items()
        if v is not None
    }
    try:
        return ManagementCredential(
            credential_id=secrets.token_hex(16),
            node=node,
            advisor=advisor,
            tier=credential.Tier(tier),
            allowed_schemas=schemas,
            constraints=credential.Constraints(**limits),
            valid_from=now,
            valid_until=now + days * DAY,
        )
    except ValidationError as exc:
        raise InvalidParams(f"credential {first_error(exc)}") from None
    except ValueError as exc:
        raise InvalidParams(str(exc).splitlines()[0][:200]) from None
