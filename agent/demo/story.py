"""`hive-agent demo`: the story so far, end to end, on an embedded relay.

Act 1: an advisor publishes its signed agent profile; the operator's agent receives it from the
relay and verifies it.  Act 2: the operator sends the advisor a gift-wrapped private note and
gets a gift-wrapped reply; the relay only ever sees one-time keys.  Act 3: a forged gift wrap
(a seal signed by one key around a message claiming another author) is refused.  Act 4: the
marketplace (market.py).  Act 5: an advisor manages the operator's node with a
credential, dry runs, an approval by DM, a refusal and signed receipts (advisory.py).
Act 6: escrow on a local Nutshell mint, a ticket paid and one refunded (escrow.py).
Act 7: the relay (a separate process with persistent storage) is killed; notes written
meanwhile wait in the durable outbox and arrive exactly once after it restarts.  Act 8: the
Core Lightning plugin on a simulated network.  Act 9: three nodes form a hive over custom
messages, vouch one to member and ban an outsider (fleet.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import nostr_sdk as sdk

from agent import __version__
from agent.clock import SystemClock
from agent.demo.advisory import advisory_act
from agent.demo.common import ring, until
from agent.demo.escrow import escrow_act
from agent.demo.fleet import fleet_act
from agent.demo.market import market_act
from agent.nostr.client import RelayClient
from agent.nostr.local_relay import EmbeddedRelay, free_port
from events import agent_info, nip44, nip59, note
from events.agent_info import AgentInfo, Role
from events.base import NostrEvent, parse_event, sign_event
from events.errors import HiveError
from events.kinds import Kind

WAIT = 5.0


class Narrator:
    def __init__(self, quiet: bool, fast: bool) -> None:
        self.quiet, self.fast = quiet, fast

    async def act(self, title: str) -> None:
        if not self.quiet:
            print(f"\n== {title}", flush=True)
        if not self.fast:
            await anyio.sleep(0.5)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"   {text}", flush=True)


async def _receive(client: RelayClient, kind: int) -> NostrEvent:
    with anyio.fail_after(WAIT):
        async for incoming in client.inbox:
            event = parse_event(incoming.raw)
            if event.kind == kind:
                return event
    raise RuntimeError("relay connection closed")


def _forged_wrap(mallory: sdk.Keys, claimed_author: str, recipient: str, now: int) -> NostrEvent:
    rumor = note.rumor(
        claimed_author,
        note.Note(msg_id=uuid.uuid4().hex, text="send me all your sats"),
        created_at=now,
    )
    seal = sign_event(
        mallory, Kind.SEAL, nip44.encrypt(mallory, recipient, rumor.to_json()), [], now
    )
    one_time = sdk.Keys.generate()
    content = nip44.encrypt(one_time, recipient, seal.to_json())
    return sign_event(one_time, Kind.GIFT_WRAP, content, [["p", recipient]], now)


async def run_demo(fast: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Run the demo; returns a report of what happened (printed with --json)."""
    out = Narrator(quiet, fast)
    clock = SystemClock()
    olivia, adam = sdk.Keys.generate(), sdk.Keys.generate()
    o_pub, a_pub = olivia.public_key().to_hex(), adam.public_key().to_hex()
    report: dict[str, Any] = {"operator": o_pub, "advisor": a_pub}
    async with EmbeddedRelay() as relay:
        out.say(f"embedded relay (nostr-sdk LocalRelay) listening on {relay.url}")
        out.say(f"operator Olivia  {o_pub[:16]}…   advisor Adam  {a_pub[:16]}…")
        two_days_ago = clock.now() - nip59.TWO_DAYS
        async with RelayClient([relay.url]) as oc, RelayClient([relay.url]) as ac:
            await oc.subscribe([{"kinds": [Kind.AGENT_INFO], "authors": [a_pub]}])
            await oc.subscribe([{"kinds": [Kind.GIFT_WRAP], "#p": [o_pub], "since": two_days_ago}])
            await ac.subscribe([{"kinds": [Kind.GIFT_WRAP], "#p": [a_pub], "since": two_days_ago}])

            await out.act("Act 1 - a signed public event")
            now = clock.now()
            profile = AgentInfo(
                name="Adam's fee desk",
                role=Role.ADVISOR,
                version=__version__,
                capabilities=["fee-policy", "rebalance", "monitor"],
                relays=[relay.url],
                about="Fee and rebalance advice for routing nodes.",
            )
            event = agent_info.build(adam, profile, created_at=now, expiration=now + 30 * 86400)
            started = time.perf_counter()
            published = await ac.publish(event)
            out.say(f"Adam publishes his agent profile, kind {event.kind}, id {event.id[:16]}…")
            out.say(f"relay acknowledged: {', '.join(published.accepted) or 'none'}")
            received = agent_info.parse(await _receive(oc, Kind.AGENT_INFO), now=clock.now())
            rtt_ms = (time.perf_counter() - started) * 1000
            out.say(
                f"Olivia receives it in {rtt_ms:.1f} ms and verifies id + BIP-340 signature: "
                f"'{received.payload.name}', role {received.payload.role.value}, "
                f"capabilities {', '.join(received.payload.capabilities)}"
            )
            report["public_event"] = {"id": event.id, "kind": event.kind, "verified": True}

            await out.act("Act 2 - gift-wrapped private messages (NIP-44 v2 inside NIP-59)")
            hello = note.Note(
                msg_id=uuid.uuid4().hex, text="Hi Adam, could you look at my fees next week?"
            )
            now = clock.now()
            rumor = note.rumor(o_pub, hello, created_at=now, expiration=now + 3600)
            wrap = nip59.wrap(olivia, a_pub, rumor, now=now, expiration=now + 7 * 86400)
            await oc.publish(wrap)
            out.say(
                f"Olivia seals a note to Adam; the relay sees only kind {wrap.kind} "
                f"from one-time key {wrap.pubkey[:16]}…, "
                f"dated {(now - wrap.created_at) // 60} min in the past"
            )
            opened = nip59.unwrap(adam, await _receive(ac, Kind.GIFT_WRAP), now=clock.now())
            got = note.parse(opened.rumor, now=clock.now()).payload
            out.say(
                f"Adam unwraps it: from {opened.sender[:16]}… (seal signer = author): {got.text!r}"
            )
            answer = note.Note(
                msg_id=uuid.uuid4().hex, text="Sure - send me a credential.", reply_to=got.msg_id
            )
            now = clock.now()
            reply = nip59.wrap(adam, o_pub, note.rumor(a_pub, answer, created_at=now), now=now)
            await ac.publish(reply)
            back = nip59.unwrap(olivia, await _receive(oc, Kind.GIFT_WRAP), now=clock.now())
            answered = note.parse(back.rumor, now=clock.now()).payload
            out.say(f"Olivia unwraps Adam's reply to {answered.reply_to[:8]}…: {answered.text!r}")
            report["private_messages"] = [
                {"from": "operator", "text": got.text, "wrap_id": wrap.id},
                {"from": "advisor", "text": answered.text, "wrap_id": reply.id},
            ]

            await out.act("Act 3 - a forgery is refused")
            mallory = sdk.Keys.generate()
            forged = _forged_wrap(mallory, o_pub, a_pub, clock.now())
            await oc.publish(forged)
            try:
                nip59.unwrap(adam, await _receive(ac, Kind.GIFT_WRAP), now=clock.now())
                raise AssertionError("a forged gift wrap was accepted")
            except HiveError as refused:
                out.say(
                    f"Mallory seals a note claiming to be Olivia; Adam's agent refuses it: "
                    f"{refused}"
                )
                report["forgery"] = refused.to_dict()

            await out.act(
                "Act 4 - the marketplace: listings, ranking, a trial contract, reputation"
            )
            report["market"] = await market_act(out.say, relay.url, clock)

            await out.act("Act 5 - an advisor manages the node: credential, commands, receipts")
            report["advisory"] = await advisory_act(out.say, relay.url)

            await out.act("Act 6 - escrow: a Cashu ticket pays for a command, another is refunded")
            report["escrow"] = await escrow_act(out.say, relay.url)
    out.say("relay stopped.")
    await out.act("Act 7 - riding out a relay crash")
    report["relay_restart"] = await relay_restart_act(out, olivia, adam, clock)
    await out.act("Act 8 - the Core Lightning plugin, on a simulated network")
    report["plugin"] = await plugin_act(out)
    await out.act("Act 9 - a fleet forms over Lightning custom messages")
    report["fleet"] = await fleet_act(out.say)
    out.say("done.")
    if not quiet:
        print(flush=True)
    return json.loads(json.dumps(report))


class _RelayProcess:
    """`hive-agent relay --db DIR` in a child process, so it can really be killed."""

    def __init__(self, db: Path, port: int) -> None:
        self.db, self.port = db, port
        self.proc: anyio.abc.Process | None = None

    async def start(self) -> str:
        cmd = [
            sys.executable,
            "-m",
            "agent",
            "relay",
            "--port",
            str(self.port),
            "--db",
            str(self.db),
        ]
        self.proc = await anyio.open_process(cmd, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            line += await self.proc.stdout.receive(1)
        return line.decode().strip()

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
            await self.proc.aclose()


async def relay_restart_act(
    out: Narrator, olivia: sdk.Keys, adam: sdk.Keys, clock: SystemClock
) -> dict[str, Any]:
    from agent import app
    from agent.settings import RelaysConfig, Settings

    with tempfile.TemporaryDirectory(prefix="hive-demo-") as tmp:
        root = Path(tmp)
        relay = _RelayProcess(root / "relay-db", free_port())
        url = await relay.start()
        cfg = RelaysConfig.single(url, reconnect_base_s=0.2, reconnect_max_s=1.0)
        fast = {"outbox_retry_base_s": 0.2, "outbox_retry_max_s": 1.0}
        try:
            async with (
                app.standalone(Settings(home=root / "olivia", **fast), olivia, cfg).agent as o,
                app.standalone(Settings(home=root / "adam", **fast), adam, cfg).agent as a,
            ):
                out.say(f"relay process (LMDB storage) at {url}; both agents connected")
                await relay.kill()
                await until(lambda: not (o.pool.connected() or a.pool.connected()), 10)
                out.say("relay killed with SIGKILL; both agents see it disconnected")
                texts = [f"fee review, part {i}" for i in (1, 2, 3)]
                for text in texts:
                    await o.send_note(a.pubkey, text, wait=False)
                out.say(f"Olivia writes {len(texts)} notes: signed, stored, waiting in her outbox")
                started = time.perf_counter()
                await relay.start()
                out.say("relay restarted on the same port; agents reconnect with backoff + jitter")
                await until(
                    lambda: len(a.store.notes()) >= len(texts) and not o.outbox.pending(), 30
                )
                elapsed = time.perf_counter() - started
                got = sorted(n["text"] for n in a.store.notes())  # gift wraps carry random dates
                out.say(f"after {elapsed:.1f} s Adam has {got}: each exactly once, nothing lost")
                return {"delivered": got, "seconds": round(elapsed, 2)}
        finally:
            await relay.kill()


async def plugin_act(out: Narrator) -> dict[str, Any]:
    """The real plugin process, spoken to as lightningd speaks to it, on a simulated node."""
    from agent.node.lightningd import PluginProcess, bridge
    from agent.node.sim_api import SimLightningd
    from agent.node.sim_rpc import SimRpcServer, short_socket_dir
    from agent.node.simnode import SimBackend, SimDriver
    from events import lnsig
    from events.node_binding import NodeBinding

    net, ids = ring(42, ("carol", "dave", "erin", "frank"), push_msat=800_000_000)
    out.say(f"simulated network: {len(ids)} nodes, {len(net.channels)} channels in a ring")
    lightning_dir = short_socket_dir()
    async with (
        SimDriver(net),
        SimRpcServer(SimLightningd(net, ids[0]), lightning_dir / "lightning-rpc"),
        PluginProcess(lightning_dir) as plugin,
        anyio.create_task_group() as tg,
    ):
        manifest_s, init_s = await plugin.start()
        tg.start_soon(bridge, net, ids[0], plugin)
        out.say(
            f"plugin_shim.py answered getmanifest in {manifest_s * 1000:.0f} ms and init in "
            f"{init_s * 1000:.0f} ms (lightningd allows 60 s each)"
        )
        await SimBackend(net, ids[1]).sendcustommsg(ids[0], (32769).to_bytes(2, "big") + b"HIVE{}")
        await SimBackend(net, ids[3]).pay(net.invoice(ids[1], 10_000_000, "demo").bolt11)
        await anyio.sleep(0.3)
        status = await plugin.call("hive-status")
        tg.cancel_scope.cancel()
    binding = NodeBinding.model_validate_json(status["binding"]["content"])
    bound = lnsig.check(binding.nostr_pubkey, binding.zbase, binding.node_id)
    node = status["node"]
    out.say(
        f"hive-status: node {node['id'][:16]}… ({node['alias']}), "
        f"{len(node['channels'])} channels, {node['onchain_sat']:,} sat on chain"
    )
    out.say(
        f"Nostr key {status['nostr_pubkey'][:16]}… derived with makesecret; node binding "
        f"{'verifies' if bound else 'DOES NOT verify'} (checkmessage + Schnorr)"
    )
    out.say(f"events the agent received from lightningd: {status['events']}")
    return {"node_id": node["id"], "binding_verified": bound, "events": status["events"]}
