"""`hive-agent demo`: the story so far, end to end, each act in its own module.

Acts 1-6 share an embedded relay.  Act 1 (public_event.py): an advisor publishes its signed
agent profile; the operator's agent receives it from the relay and verifies it.  Act 2
(private_messages.py): the operator sends the advisor a gift-wrapped private note and gets a
gift-wrapped reply; the relay only ever sees one-time keys.  Act 3 (forgery.py): a forged gift
wrap (a seal signed by one key around a message claiming another author) is refused.  Act 4
(market.py): the marketplace.  Act 5 (advisory.py): an advisor manages the operator's node with
a credential, dry runs, an approval by DM, a refusal and signed receipts.  Act 6 (escrow.py):
escrow on a local Nutshell mint, a ticket paid and one refunded.  Act 7 (relay_restart.py): the
relay (a separate process with persistent storage) is killed; notes written meanwhile wait in
the durable outbox and arrive exactly once after it restarts.  Act 8 (plugin.py): the Core
Lightning plugin on a simulated network.  Act 9 (fleet.py): three nodes form a hive over custom
messages, vouch one to member and ban an outsider.  Act 10 (catch_up.py): five members; one is
offline for three simulated days while the others ban an outsider, change fees and open a
channel; it comes back and is caught up by reconciliation alone.  Act 11 (intents.py): two
members race for the same node under intent locks (one opens, the other stands down); the
planner's expansion waits under operator governance until approved, then opens once; the
bridge sets the member channels to zero fee while channels to outsiders keep theirs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nostr_sdk as sdk

from agent.clock import SystemClock
from agent.demo.advisory import advisory_act
from agent.demo.catch_up import catch_up_act
from agent.demo.common import connected
from agent.demo.escrow import escrow_act
from agent.demo.fleet import fleet_act
from agent.demo.forgery import forgery_act
from agent.demo.intents import intents_act
from agent.demo.market import market_act
from agent.demo.narrator import Narrator
from agent.demo.plugin import plugin_act
from agent.demo.private_messages import private_messages_act
from agent.demo.public_event import public_event_act
from agent.demo.relay_restart import relay_restart_act
from agent.demo.settlement import settlement_act
from agent.nostr.local_relay import EmbeddedRelay


async def run_demo(
    fast: bool = False, quiet: bool = False, keep: Path | None = None
) -> dict[str, Any]:
    """Run the demo; returns a report of what happened (printed with --json).  `keep`: where
    act 5's agent homes stay (for `demo --dashboard`)."""
    out = Narrator(quiet, fast)
    clock = SystemClock()
    olivia, adam = sdk.Keys.generate(), sdk.Keys.generate()
    o_pub, a_pub = olivia.public_key().to_hex(), adam.public_key().to_hex()
    report: dict[str, Any] = {"operator": o_pub, "advisor": a_pub}
    async with EmbeddedRelay() as relay:
        out.say(f"embedded relay (nostr-sdk LocalRelay) listening on {relay.url}")
        out.say(f"operator Olivia  {o_pub[:16]}…   advisor Adam  {a_pub[:16]}…")
        async with connected(relay.url, olivia, adam, clock) as pair:
            await out.act("Act 1 - a signed public event")
            report["public_event"] = await public_event_act(out.say, pair)
            await out.act("Act 2 - gift-wrapped private messages (NIP-44 v2 inside NIP-59)")
            report["private_messages"] = await private_messages_act(out.say, pair)
            await out.act("Act 3 - a forgery is refused")
            report["forgery"] = await forgery_act(out.say, pair)
            await out.act(
                "Act 4 - the marketplace: listings, ranking, a trial contract, reputation"
            )
            report["market"] = await market_act(out.say, relay.url, clock)
            await out.act("Act 5 - an advisor manages the node: credential, commands, receipts")
            report["advisory"] = await advisory_act(out.say, relay.url, keep)
            await out.act("Act 6 - escrow: a Cashu ticket pays for a command, another is refunded")
            report["escrow"] = await escrow_act(out.say, relay.url)
    out.say("relay stopped.")
    await out.act("Act 7 - riding out a relay crash")
    report["relay_restart"] = await relay_restart_act(out.say, olivia, adam)
    await out.act("Act 8 - the Core Lightning plugin, on a simulated network")
    report["plugin"] = await plugin_act(out.say)
    await out.act("Act 9 - a fleet forms over Lightning custom messages")
    report["fleet"] = await fleet_act(out.say)
    await out.act("Act 10 - three days offline, caught up by reconciliation")
    report["catch_up"] = await catch_up_act(out.say)
    await out.act("Act 11 - intent locks, the planner and zero fees among members")
    report["intents"] = await intents_act(out.say)
    await out.act("Act 12 - the weekly settlement: a week of forwards, the plan, real payments")
    report["settlement"] = await settlement_act(out.say)
    out.finish()
    return json.loads(json.dumps(report))  # type: ignore[no-any-return]
