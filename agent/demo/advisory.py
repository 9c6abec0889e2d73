"""Demo act: an advisor manages Olivia's (simulated) node over Nostr, without its keys.

Olivia's node agent grants Adam a credential; Adam dry-runs and then runs a fee change and a
small rebalance; a large rebalance is queued and Olivia approves it by replying to the DM her
node sent her; a fee jump beyond the credential's limit is refused; Adam verifies the chain of
signed receipts offline.  Everything travels as gift wraps over the embedded relay.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import nostr_sdk as sdk

from agent import app
from agent.advisory.policy import PolicyConfig
from agent.component import Wiring
from agent.demo.common import operator_ring, until
from agent.demo.narrator import Say
from agent.node.simnode import SimBackend
from agent.settings import RelaysConfig, Settings
from agent.store import advisory as repo
from events.base import make_rumor
from events.kinds import Kind
from events.receipt import Receipt, Status

FEE = "hive:fee-policy/v1"
REBALANCE = "hive:rebalance/v1"


def _outcome(r: Receipt) -> str:
    if r.status == Status.OK:
        return "ok"
    if r.error is not None:
        return f"{r.status.value} {r.error.code}: {r.error.message}"
    return r.status.value


async def advisory_act(say: Say, relay_url: str, keep: Path | None = None) -> dict[str, Any]:
    """Run the act against `relay_url`; `say` prints one line.  `keep`: the agents' homes go
    there and stay (`demo --dashboard` serves the node's), else in a temporary directory."""
    net, ids = operator_ring()
    node_id = ids[0]
    olivia_keys = sdk.Keys.generate()  # the operator's own key, to which her node writes
    config = RelaysConfig.single(relay_url)
    policy = PolicyConfig(operator_pubkey=olivia_keys.public_key().to_hex())
    dms: list[str] = []
    homes = (
        contextlib.nullcontext(str(keep))
        if keep is not None
        else tempfile.TemporaryDirectory(prefix="hive-advisory-")
    )
    with homes as tmp:
        async with AsyncExitStack() as stack:

            def home(name: str) -> Settings:
                return Settings(home=Path(tmp) / name)

            node_app = app.node_agent(
                home("node"), sdk.Keys.generate(), config, SimBackend(net, node_id), policy
            )
            adam_app = app.standalone(home("adam"), sdk.Keys.generate(), config)
            dm_log = Wiring(rumors={Kind.DIRECT_MESSAGE: lambda o, tx: dms.append(o.rumor.content)})
            olivia_app = app.standalone(home("olivia"), olivia_keys, config, extra=[dm_log])
            for each in (node_app, adam_app, olivia_app):
                await stack.enter_async_context(each.agent)
            node, adam, olivia = node_app.node, adam_app.advisor, olivia_app.agent
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            tg.start_soon(node.run)
            backend = SimBackend(net, node_id)

            grant = node.credentials.issue(
                adam.me,
                "advanced",
                ["hive:fee-policy/*", "hive:rebalance/*", "hive:monitor/*"],
                days=30,
                max_fee_change_pct=50,
                max_rebalance_sats=1_000_000,
            )
            cred = grant.credential
            await until(
                lambda: repo.active_held(adam.agent.store, node.me, node.now) is not None, 10
            )
            say(
                f"Olivia's node agent grants Adam a credential ({cred.tier.value} tier, "
                f"{', '.join(cred.allowed_schemas)}; fee changes ≤ "
                f"{cred.constraints.max_fee_change_pct}%, rebalances ≤ "
                f"{cred.constraints.max_rebalance_sats:,} sat) — gift-wrapped to him"
            )
            chans = await backend.channels()
            a, b = chans[0].short_channel_id, chans[1].short_channel_id
            fee = {"channel": a, "fee_ppm": 120}

            _, dry = await adam.advise(node.me, FEE, "set_single", fee, dry_run=True)
            assert dry is not None and dry.status == Status.DRY_RUN
            say(
                f"Adam dry-runs set_single {a} 100→120 ppm: danger {dry.danger}, "
                f"{dry.result['route']}, predicted diff {json.dumps(dry.result['predicted_diff'])}"
            )
            _, done = await adam.advise(node.me, FEE, "set_single", fee)
            assert done is not None
            now_ppm = (await backend.channels())[0].policy.ppm
            say(f"Adam runs it: {_outcome(done)}; the channel now charges {now_ppm} ppm")

            small = {"from_channel": a, "to_channel": b, "amount_sats": 50_000, "max_fee_ppm": 500}
            _, dry_small = await adam.advise(node.me, REBALANCE, "circular", small, dry_run=True)
            assert dry_small is not None
            _, moved = await adam.advise(node.me, REBALANCE, "circular", small)
            assert moved is not None
            say(
                f"Adam dry-runs, then runs a 50,000-sat circular rebalance (danger "
                f"{dry_small.danger}, {dry_small.result['route']}): {_outcome(moved)}, "
                f"fee {moved.result.get('fee_msat', 0):,} msat"
            )

            big = {**small, "amount_sats": 300_000}
            cmd, _ = await adam.advise(node.me, REBALANCE, "circular", big, wait=False)
            queued = await adam.wait_for(cmd.command_id, 10, final=False)
            assert queued is not None and queued.status == Status.QUEUED
            await until(lambda: bool(dms), 10)
            say(f"A 300,000-sat rebalance is danger {queued.danger}: queued; Olivia gets a DM:")
            say(f"  “{dms[0]}”")
            reply = make_rumor(
                olivia.pubkey,
                Kind.DIRECT_MESSAGE,
                f"approve {cmd.command_id[:12]}",
                [["p", node.me]],
                olivia.clock.now(),
            )
            await olivia.send_private(node.me, reply)
            approved = await adam.wait_for(cmd.command_id, 15, final=True)
            assert approved is not None
            say(
                f"Olivia replies 'approve {cmd.command_id[:12]}' by DM; Adam's receipt: "
                f"{_outcome(approved)}"
            )

            jump = {"channel": a, "fee_ppm": 900}
            _, refused = await adam.advise(node.me, FEE, "set_single", jump)
            assert refused is not None and refused.error is not None
            say(
                f"Adam tries 120→900 ppm: refused by policy — {refused.error.code}: "
                f"{refused.error.message}"
            )

            chains = adam.verify_chain(node.me)
            say(
                f"Adam verifies his receipt chain offline: {sum(chains.values())} receipts, "
                "each signed by the node and hash-linked to the one before"
            )
            return {
                "credential": cred.credential_id,
                "dry_run": dry.result["predicted_diff"],
                "fee_ppm": now_ppm,
                "rebalance": _outcome(moved),
                "queued_then": _outcome(approved),
                "refused": refused.error.code,
                "receipts": sum(chains.values()),
            }
