"""Demo act: escrow on a real (local) Nutshell mint.

The operator's node agent mints ecash, locks 25 sat for the advisor in a ticket whose preimage
only the node holds, and sends it; the advisor's command succeeds, the signed receipt carries
the preimage, and the advisor redeems at the mint.  A second ticket pays for a command that the
policy refuses: nothing is revealed, and once its short locktime has passed the operator's
agent takes the ecash back with its refund key.
"""

from __future__ import annotations

import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import nostr_sdk as sdk

from agent import app
from agent.advisory.policy import PolicyConfig
from agent.demo.common import operator_ring, until
from agent.demo.narrator import Say
from agent.escrow.mint import MintProcess
from agent.node.simnode import SimBackend
from agent.settings import RelaysConfig, Settings
from agent.store import advisory as arepo
from agent.store import escrow as erepo
from events.escrow import TicketType

FEE = "hive:fee-policy/v1"


async def escrow_act(say: Say, relay_url: str) -> dict[str, Any]:
    net, ids = operator_ring()
    config = RelaysConfig.single(relay_url)
    with tempfile.TemporaryDirectory(prefix="hive-escrow-") as tmp:
        mint = MintProcess(Path(tmp) / "mint")
        url = await anyio.to_thread.run_sync(mint.start)
        say(f"a Nutshell mint (cashu package, FakeWallet backend) is up at {url}")
        try:
            async with AsyncExitStack() as stack:

                def home(name: str) -> Settings:
                    return Settings(home=Path(tmp) / name)

                policy = PolicyConfig(mints=[url])
                backend = SimBackend(net, ids[0])
                node_app = app.node_agent(
                    home("node"), sdk.Keys.generate(), config, backend, policy
                )
                adam_app = app.standalone(home("adam"), sdk.Keys.generate(), config, [url])
                for each in (node_app, adam_app):
                    await stack.enter_async_context(each.agent)
                node, adam = node_app.node, adam_app.advisor
                operator_escrow, adam_escrow = node_app.escrow, adam_app.escrow
                stack.push_async_callback(operator_escrow.close)
                stack.push_async_callback(adam_escrow.close)
                tg = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(tg.cancel_scope.cancel)
                for task in (node.run, operator_escrow.maintain, adam_escrow.maintain):
                    tg.start_soon(task)

                cred = node.credentials.issue(adam.me, "standard", ["hive:fee-policy/*"], days=30)
                await until(
                    lambda: arepo.active_held(adam.agent.store, node.me, node.now) is not None, 20
                )
                minted = await operator_escrow.topup(200)
                say(f"Olivia's node agent mints {minted['minted']} sat of ecash from the mint")
                ticket = await operator_escrow.fund(
                    advisor=adam.me,
                    credential_id=cred.credential.credential_id,
                    kind=TicketType.SINGLE,
                    amount_sat=25,
                    schema_pattern="hive:fee-policy/*",
                    max_danger=3,
                )
                part = ticket.parts[0]
                say(
                    f"ticket {ticket.ticket_id[:12]}…: 25 sat locked by NUT-14 HTLC — hash "
                    f"{part.lock_hash[:12]}… (preimage only on the node), Adam's key, refund to "
                    f"Olivia after the {(part.locktime - ticket.created_at) // 3600} h window"
                )
                await until(
                    lambda: erepo.checked(adam.agent.store, ticket.ticket_id) is not None, 20
                )
                assert erepo.checked(adam.agent.store, ticket.ticket_id) == "ok"
                say(
                    "Adam's agent checks the ticket's ecash at the mint before working for it: "
                    "each proof signed by the mint (its DLEQ proof, NUT-12), in sat, unspent"
                )
                chan = (await SimBackend(net, ids[0]).channels())[0].short_channel_id
                _, done = await adam.advise(
                    node.me, FEE, "set_single", {"channel": chan, "fee_ppm": 115},
                    ticket=ticket.ticket_id,
                )  # fmt: skip
                assert done is not None and done.preimage is not None
                say(f"Adam's command succeeds; the signed receipt carries the preimage "
                    f"{done.preimage[:12]}…")  # fmt: skip
                await until(lambda: adam_escrow.balances().get(url, 0) == 25, 20)
                say("Adam's agent redeems it at the mint (preimage + his signature): 25 sat")

                short = await operator_escrow.fund(
                    advisor=adam.me,
                    credential_id=cred.credential.credential_id,
                    kind=TicketType.SINGLE,
                    amount_sat=30,
                    schema_pattern="hive:fee-policy/*",
                    max_danger=3,
                    locktime_s=3,
                )
                await until(lambda: erepo.ticket(adam.agent.store, short.ticket_id) is not None, 20)
                _, refused = await adam.advise(
                    node.me, FEE, "set_single", {"channel": chan, "fee_ppm": 900},
                    ticket=short.ticket_id,
                )  # fmt: skip
                assert refused is not None and refused.error is not None
                say(f"a second ticket (30 sat, 3 s locktime) pays for a 115→900 ppm jump: refused "
                    f"({refused.error.code}); the receipt reveals nothing")  # fmt: skip
                await until(
                    lambda: (
                        [p["state"] for p in erepo.parts(node.agent.store, short.ticket_id)]
                        == ["refunded"]
                    ),
                    20,
                )
                left = operator_escrow.balances()[url]
                say(f"after the locktime Olivia's agent refunds it with her key: wallet {left} sat")
                return {
                    "paid_sat": adam_escrow.balances().get(url, 0),
                    "ecash_checked": erepo.checked(adam.agent.store, ticket.ticket_id),
                    "refunded": short.ticket_id,
                    "operator_sat": left,
                }
        finally:
            await anyio.to_thread.run_sync(mint.stop)
