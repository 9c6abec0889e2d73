"""The optional decision oracle: an HTTP endpoint asked about commands the policy routes to it."""

from __future__ import annotations

import anyio

from agent.advisory.policy import Decision
from events.command import Command


async def oracle_verdict(url: str | None, cmd: Command, decision: Decision) -> str | None:
    """'approve', 'deny' or None (no answer in 5 s, twice, 2 s apart)."""
    if not url:
        return None
    import httpx

    payload = {
        "command": cmd.model_dump(mode="json"),
        "danger": decision.danger,
        "reasons": decision.reasons,
    }
    for attempt in range(2):
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                answer = (await client.post(url, json=payload)).json()
            verdict = str(answer.get("decision", "")).lower()
            if verdict in ("approve", "deny"):
                return verdict
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        if attempt == 0:
            await anyio.sleep(2)
    return None
