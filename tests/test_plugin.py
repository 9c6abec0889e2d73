"""plugin_shim.py as a real process, driven over stdin/stdout exactly as lightningd drives it,
with its RPC calls answered by the simulator's CLN socket."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.node.cln import CLNBackend
from agent.node.lightningd import PLUGIN, PluginError, PluginProcess, bridge
from agent.node.ops import node_summary
from agent.node.sim import Network
from agent.node.sim_api import SimLightningd
from agent.node.sim_rpc import SimRpcServer, short_socket_dir
from agent.node.simnode import SimBackend, SimDriver
from agent.nostr.client import RelayClient
from events import lnsig, node_binding
from events.base import parse_event
from events.kinds import Kind
from tests.node_scenario import ring, scenario

HIVE_METHODS = [
    "hive-status", "hive-members", "hive-genesis", "hive-invite", "hive-join", "hive-leave",
    "hive-vouch", "hive-ban", "hive-topology", "hive-pending", "hive-approve", "hive-reject",
]  # fmt: skip


@asynccontextmanager
async def plugin_on(net: Network, node_id: str, **options: str) -> AsyncIterator[PluginProcess]:
    lightning_dir = short_socket_dir()
    async with (
        SimDriver(net),
        SimRpcServer(SimLightningd(net, node_id), lightning_dir / "lightning-rpc"),
        PluginProcess(lightning_dir) as plugin,
        anyio.create_task_group() as tg,
    ):
        plugin.timings = await plugin.start(options)  # type: ignore[attr-defined]
        tg.start_soon(bridge, net, node_id, plugin)
        yield plugin
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_manifest_init_and_help_texts() -> None:
    net, ids = ring(clock=time.monotonic)
    async with plugin_on(net, ids[0]) as plugin:
        manifest_s, init_s = plugin.timings  # type: ignore[attr-defined]
        assert manifest_s < 10 and init_s < 10  # CLN allows 60 s for each
        methods = {m["name"]: m for m in plugin.manifest["rpcmethods"]}
        assert set(HIVE_METHODS) <= set(methods)
        for name in HIVE_METHODS:
            assert len(methods[name]["description"]) > 20, f"{name} needs help text"
        assert {h["name"] for h in plugin.manifest["hooks"]} == {"custommsg", "peer_connected"}
        assert {"forward_event", "connect", "disconnect", "shutdown"} <= set(
            plugin.manifest["subscriptions"]
        )
        assert [o["name"] for o in plugin.manifest["options"]] == ["hive-relays"]


@pytest.mark.anyio
async def test_status_matches_the_simulator_called_directly() -> None:
    net, ids = ring(clock=time.monotonic)
    async with plugin_on(net, ids[0]) as plugin:
        status = await plugin.call("hive-status")
        assert status["node"] == await node_summary(SimBackend(net, ids[0]))
        binding = node_binding.NodeBinding.model_validate_json(status["binding"]["content"])
        assert binding.node_id == ids[0] == status["node"]["id"]
        assert binding.nostr_pubkey == status["nostr_pubkey"] == status["binding"]["pubkey"]
        # checkmessage semantics, and the Nostr signature, both verify
        assert lnsig.check(binding.nostr_pubkey, binding.zbase, binding.node_id)
        parsed = node_binding.parse(
            parse_event(json.dumps(status["binding"])), now=int(time.time())
        )
        assert parsed.payload == binding
        # the key comes from the node's HSM (makesecret): same node, same key, every start
    async with plugin_on(net, ids[0]) as again:
        assert (await again.call("hive-status"))["nostr_pubkey"] == status["nostr_pubkey"]


@pytest.mark.anyio
async def test_one_scenario_both_ways() -> None:
    """The same scenario on twin networks: through SimBackend directly, and through CLNBackend
    on the simulator's RPC socket while the real plugin runs on that node; then the plugin's
    hive-status (agent code in the plugin process) equals the direct summary."""
    net_a, ids = ring(clock=time.monotonic)
    direct = await scenario(
        SimBackend(net_a, ids[0]), net_a.invoice(ids[2], 25_000_000, "x").bolt11
    )
    summary = await node_summary(SimBackend(net_a, ids[0]))
    net_b, _ = ring(clock=time.monotonic)
    async with plugin_on(net_b, ids[0]) as plugin:
        cln = CLNBackend(str(plugin.lightning_dir / "lightning-rpc"))
        via_socket = await scenario(cln, net_b.invoice(ids[2], 25_000_000, "x").bolt11)
        status = await plugin.call("hive-status")
    assert via_socket == direct
    assert status["node"] == summary
    assert plugin.exit_code == 0  # it left on the `shutdown` notification by itself


@pytest.mark.anyio
async def test_later_capabilities_answer_not_implemented() -> None:
    net, ids = ring(clock=time.monotonic)
    async with plugin_on(net, ids[0]) as plugin:
        for method, params in [
            ("hive-genesis", {}),
            ("hive-join", {"ticket": "x"}),
            ("hive-pending", {}),
        ]:
            with pytest.raises(PluginError, match="NOT_IMPLEMENTED") as caught:
                await plugin.call(method, **params)
            assert caught.value.error["code"] == 1501


@pytest.mark.anyio
async def test_node_events_reach_the_agent() -> None:
    net, ids = ring(clock=time.monotonic)
    async with plugin_on(net, ids[0]) as plugin:
        other = SimBackend(net, ids[1])
        await other.sendcustommsg(ids[0], (32769).to_bytes(2, "big") + b'HIVE{"v":1}')
        await other.sendcustommsg(ids[0], (32771).to_bytes(2, "big") + b"LSPS not ours")
        await SimBackend(net, ids[4]).pay(net.invoice(ids[1], 5_000_000, "through us").bolt11)
        with anyio.fail_after(5):
            while (await plugin.call("hive-status"))["events"].get("Forward", 0) < 1:
                await anyio.sleep(0.05)
        events = (await plugin.call("hive-status"))["events"]
        assert events["CustomMsg"] == 1  # only the HIVE one was handed to the agent
        assert events["Forward"] == 1


@pytest.mark.anyio
async def test_binding_is_published_when_relays_are_configured(relay_url: str) -> None:
    net, ids = ring(clock=time.monotonic)
    async with plugin_on(net, ids[0], **{"hive-relays": relay_url}) as plugin:
        nostr_pubkey = (await plugin.call("hive-status"))["nostr_pubkey"]
        async with RelayClient([relay_url]) as reader:
            await reader.subscribe([{"kinds": [Kind.NODE_BINDING], "authors": [nostr_pubkey]}])
            with anyio.fail_after(10):
                raw = (await reader.inbox.receive()).raw
    binding = node_binding.parse(parse_event(raw), now=int(time.time())).payload
    assert binding.node_id == ids[0]


def test_custommsg_hook_fuzz() -> None:
    """10,000 arbitrary payloads: every one answered `continue`, each within 1 s."""
    net, ids = ring(clock=time.monotonic)
    slowest = [0.0]
    with start_blocking_portal(backend="asyncio") as portal:
        cm = portal.wrap_async_context_manager(plugin_on(net, ids[0]))
        plugin = cm.__enter__()
        try:

            @settings(max_examples=10_000, deadline=None, database=None)
            @given(
                payload=st.binary(max_size=300)
                | st.binary(max_size=40).map(lambda b: (32769).to_bytes(2, "big") + b"HIVE" + b)
                | st.text(max_size=50),  # not even hex
                peer=st.sampled_from(ids) | st.text(max_size=70),
            )
            def check(payload: bytes | str, peer: str) -> None:
                hexed = payload.hex() if isinstance(payload, bytes) else payload
                started = time.monotonic()
                reply = portal.call(
                    plugin.request, "custommsg", {"peer_id": peer, "payload": hexed}
                )
                slowest[0] = max(slowest[0], time.monotonic() - started)
                assert reply == {"result": "continue"}

            check()
        finally:
            cm.__exit__(None, None, None)
    assert slowest[0] < 1.0


def test_plugin_disables_itself_when_a_dependency_is_missing() -> None:
    """With nostr-sdk unimportable, init answers {"disable": reason} instead of crashing."""
    code = (
        f"import sys; sys.modules['nostr_sdk'] = None; sys.argv = ['{PLUGIN}']; "
        f"exec(open('{PLUGIN}').read())"
    )
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "getmanifest", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "init", "params": {"options": {}, "configuration": {
            "lightning-dir": "/tmp", "rpc-file": "none", "startup": True, "network": "regtest",
            "feature_set": {}}}},
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input="".join(json.dumps(m) + "\n\n" for m in messages),
        capture_output=True, text=True, timeout=30, check=False,
        env={"LIGHTNINGD_PLUGIN": "1", "PATH": "/usr/bin:/bin"}, cwd=str(Path(PLUGIN).parent),
    )  # fmt: skip
    replies = [
        json.loads(part) for part in proc.stdout.split("\n\n") if part.strip().startswith("{")
    ]
    init = next(r for r in replies if r.get("id") == 2)
    assert "nostr_sdk" in init["result"]["disable"]
