"""Act 1: an advisor publishes its signed agent profile; the operator's agent receives it from the
relay and verifies id and BIP-340 signature before reading it."""

from __future__ import annotations

import time
from typing import Any

from agent import __version__
from agent.demo.common import Pair, receive
from agent.demo.narrator import Say
from events import agent_info
from events.agent_info import AgentInfo, Role
from events.kinds import Kind


async def public_event_act(say: Say, pair: Pair) -> dict[str, Any]:
    clock = pair.clock
    now = clock.now()
    profile = AgentInfo(
        name="Adam's fee desk",
        role=Role.ADVISOR,
        version=__version__,
        capabilities=["fee-policy", "rebalance", "monitor"],
        relays=[pair.relay_url],
        about="Fee and rebalance advice for routing nodes.",
    )
    event = agent_info.build(pair.adam, profile, created_at=now, expiration=now + 30 * 86400)
    started = time.perf_counter()
    published = await pair.ac.publish(event)
    say(f"Adam publishes his agent profile, kind {event.kind}, id {event.id[:16]}…")
    say(f"relay acknowledged: {', '.join(published.accepted) or 'none'}")
    received = agent_info.parse(await receive(pair.oc, Kind.AGENT_INFO), now=clock.now())
    rtt_ms = (time.perf_counter() - started) * 1000
    say(
        f"Olivia receives it in {rtt_ms:.1f} ms and verifies id + BIP-340 signature: "
        f"'{received.payload.name}', role {received.payload.role.value}, "
        f"capabilities {', '.join(received.payload.capabilities)}"
    )
    return {"id": event.id, "kind": event.kind, "verified": True}
