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
import nostr_sdk as sdk
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.cln_plugin import TEST_ENV, fleet_options
from agent.fleet.service import FleetConfig
from agent.node.cln import CLNBackend
from agent.node.lightningd import PLUGIN, PluginError, PluginProcess, bridge
from agent.node.ops import node_summary
from agent.node.sim import Network
from agent.node.sim_api import SimLightningd
from agent.node.sim_rpc import SimRpcServer, short_socket_dir
from agent.node.simnode import SimBackend, SimDriver
from agent.nostr.client import RelayClient
from agent.plugin_rpc import error_reply
from events import lnsig, node_binding
from events.base import parse_event
from events.errors import InvalidParams, NotImplementedYet
from events.kinds import Kind
from tests.node_scenario import ring, scenario

HIVE_METHODS = [
    "hive-status", "hive-members", "hive-genesis", "hive-invite", "hive-join", "hive-leave",
    "hive-vouch", "hive-ban", "hive-topology", "hive-pending", "hive-approve", "hive-reject",
    "hive-confirm", "hive-grant", "hive-revoke", "hive-credentials", "hive-settlement",
    "hive-settlement-execute", "hive-dashboard", "hive-contribution",
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


async def agent_started(plugin: PluginProcess, limit_s: float = 30) -> None:
    """Until the plugin's Nostr agent is up (an operator's method no longer answers "the Nostr
    agent is still starting"): on a busy machine that takes seconds after `init`."""
    with anyio.fail_after(limit_s):
        while True:
            try:
                await plugin.call("hive-pending")
                return
            except PluginError as err:
                if "still starting" not in str(err.error.get("message", "")):
                    raise
                await anyio.sleep(0.1)


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
            # `lightning-cli help` shows usage + description: every parameter is explained
            params = methods[name]["usage"].split("\n")[0].replace("[", "").replace("]", "").split()
            for param in params:
                assert f"{{{param}}}" in methods[name]["description"], f"{name}: {param}"
        assert {h["name"] for h in plugin.manifest["hooks"]} == {"custommsg", "peer_connected"}
        assert {"forward_event", "connect", "disconnect", "shutdown"} <= set(
            plugin.manifest["subscriptions"]
        )
        options = {o["name"]: o for o in plugin.manifest["options"]}
        assert list(options) == [
            "hive-relays", "hive-policy-file", "hive-operator", "hive-gossip-threshold", "hive-heartbeat-interval",
            "hive-intent-hold", "hive-intent-mode", "hive-planner-interval",
            "hive-market-share-cap", "hive-settlement-grace", "hive-dashboard-port",
            "hive-governance-mode", "hive-failsafe-budget-per-day",
        ]  # fmt: skip
        assert all(len(o["description"]) > 20 for o in options.values())


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("options", "said"),
    [({"hive-gossip-threshold": "0"}, "hive-gossip-threshold must be a whole number from 1 to 50"),
     ({"hive-heartbeat-interval": "5"}, "hive-heartbeat-interval must be a whole number from 60"),
     ({"hive-heartbeat-interval": "often"}, "hive-heartbeat-interval must be a whole number"),
     ({"hive-governance-mode": "yolo"}, "hive-governance-mode must be one of autonomous"),
     ({"hive-failsafe-budget-per-day": "-1"}, "hive-failsafe-budget-per-day must be a whole"),
     ({"hive-intent-hold": "5"}, "hive-intent-hold must be a whole number from 10 to 600"),
     ({"hive-intent-mode": "lax"}, "hive-intent-mode must be default or strict"),
     ({"hive-planner-interval": "60"}, "hive-planner-interval must be 0 .never. or from 300"),
     ({"hive-market-share-cap": "80"}, "hive-market-share-cap must be a whole number from 1"),
     ({"hive-settlement-grace": "-5"}, "hive-settlement-grace must be a whole number from 0"),
     ({"hive-dashboard-port": "70000"}, "hive-dashboard-port must be 0 .off. or a port")],
)  # fmt: skip
async def test_a_fleet_option_out_of_range_disables_the_plugin_naming_it(
    options: dict[str, str], said: str
) -> None:
    """lightningd's init gets {"disable": reason}, the reason naming the option and its bounds."""
    net, ids = ring(clock=time.monotonic)
    lightning_dir = short_socket_dir()
    async with (
        SimRpcServer(SimLightningd(net, ids[0]), lightning_dir / "lightning-rpc"),
        PluginProcess(lightning_dir) as plugin,
    ):
        with pytest.raises(
            PluginError, match=f"disabled itself: hive-agent: INVALID_PARAMS: {said}"
        ):
            await plugin.start(options)


@pytest.mark.anyio
async def test_status_matches_the_simulator_called_directly() -> None:
    net, ids = ring(clock=time.monotonic)
    async with plugin_on(net, ids[0]) as plugin:
        status = await plugin.call("hive-status")
        assert status["node"] == await node_summary(SimBackend(net, ids[0]))
        binding = node_binding.NodeBinding.model_validate_json(status["binding"]["content"])
        assert binding.node_id == ids[0] == status["node"]["id"]
        assert status["governance"]["mode"] == "operator"  # the safe default
        assert status["governance"]["fleet_actions"].startswith("off")  # no relays, no agent
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
async def test_methods_answer_with_the_stable_code_of_their_typed_error() -> None:
    net, ids = ring(clock=time.monotonic)
    async with plugin_on(net, ids[0]) as plugin:
        # outside a hive the topology is empty, not an error
        empty = await plugin.call("hive-topology")
        assert (empty["hive_id"], empty["members"], empty["member_channels"]) == (None, [], [])
        assert empty["totals"]["members"] == 0
        # a fleet method given bad input answers with the stable code of its typed error
        with pytest.raises(PluginError, match=r"INVALID_PAYLOAD: .*hive1") as caught:
            await plugin.call("hive-join", ticket="x")
        assert caught.value.error["code"] == 3728  # INVALID_PAYLOAD (agent/plugin_codes.py)
        # advisor commands need relays; without them the operator is told so, by code
        with pytest.raises(PluginError, match=r"NOT_FOUND: .*--hive-relays") as caught:
            await plugin.call("hive-pending")
        assert caught.value.error["code"] == 3715
    # a capability announced but not built yet would answer 3708 (none is left today)
    assert error_reply(7, NotImplementedYet("later"))["error"]["code"] == 3708


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


@pytest.mark.anyio
async def test_advisor_commands_through_the_plugin(tmp_path: Path, relay_url: str) -> None:
    """The real plugin process runs the node side on the simulator's RPC socket: the operator
    grants a credential and settles queued commands with hive-* methods; an advisor in this
    process sends gift-wrapped commands over the relay and gets signed receipts back."""
    from agent import app
    from agent.settings import RelaysConfig, Settings
    from agent.store import advisory as repo
    from events.receipt import Status

    net, ids = ring(clock=time.monotonic)
    config = RelaysConfig.single(relay_url, reconnect_base_s=0.1, publish_timeout_s=5)
    node0 = SimBackend(net, ids[0])
    advisor_app = app.standalone(Settings(home=tmp_path / "advisor"), sdk.Keys.generate(), config)
    async with (
        plugin_on(net, ids[0], **{"hive-relays": relay_url}) as plugin,
        advisor_app.agent as agent,
    ):
        advisor = advisor_app.advisor
        node = (await plugin.call("hive-status"))["nostr_pubkey"]
        await agent_started(plugin)
        with pytest.raises(PluginError, match="INVALID_PARAMS"):
            await plugin.call("hive-grant", advisor=advisor.me, schemas=["x"], tier="emperor")
        cred = await plugin.call(
            "hive-grant",
            advisor=advisor.me,
            schemas=["hive:fee-policy/*", "hive:rebalance/*"],
            tier="advanced",
        )
        with anyio.fail_after(10):
            while repo.active_held(agent.store, node, advisor.now) is None:
                await anyio.sleep(0.05)
        chans = await node0.channels()
        a, b = chans[0].short_channel_id, chans[1].short_channel_id

        # danger below 4: runs at once, through CLNBackend → the simulator's socket
        _, done = await advisor.advise(
            node, "hive:fee-policy/v1", "set_single", {"channel": a, "fee_ppm": 120}
        )
        assert done is not None and done.status == Status.OK, done.error
        assert (await node0.channels())[0].policy.ppm == 120

        # a 200k-sat rebalance is danger 5: queued until the operator approves it
        move = {"from_channel": a, "to_channel": b, "amount_sats": 200_000, "max_fee_ppm": 500}
        cmd, _ = await advisor.advise(node, "hive:rebalance/v1", "circular", move, wait=False)
        queued = await advisor.wait_for(cmd.command_id, 10, final=False)
        assert queued is not None and queued.status == Status.QUEUED
        pending = (await plugin.call("hive-pending"))["pending"]
        assert [p["id"] for p in pending] == [cmd.command_id]
        assert pending[0]["danger"] == 5
        local_before = chans[1].local_msat
        assert (await node0.channels())[1].local_msat == local_before  # not yet
        await plugin.call("hive-approve", id=cmd.command_id[:10])
        done = await advisor.wait_for(cmd.command_id, 10, final=True)
        assert done is not None and done.status == Status.OK, done.error
        assert (await node0.channels())[1].local_msat == local_before + 200_000_000

        # another one, rejected: nothing moves and the advisor is told REJECTED
        cmd2, _ = await advisor.advise(node, "hive:rebalance/v1", "circular", move, wait=False)
        assert await advisor.wait_for(cmd2.command_id, 10, final=False) is not None
        snapshot = [c.model_dump() for c in await node0.channels()]
        await plugin.call("hive-reject", id=cmd2.command_id)
        refused = await advisor.wait_for(cmd2.command_id, 10, final=True)
        assert refused is not None and refused.status == Status.ERROR
        assert refused.error is not None and refused.error.code == "REJECTED"
        assert [c.model_dump() for c in await node0.channels()] == snapshot
        assert (await plugin.call("hive-pending"))["pending"] == []
        with pytest.raises(PluginError, match="INVALID_PARAMS"):
            await plugin.call("hive-approve", id=cmd2.command_id)  # nothing waits any more

        # the chain verifies offline; revocation refuses the next command at once
        assert advisor.verify_chain(node) == {
            cred["credential_id"]: 5
        }  # ok, queued, ok, queued, rejected
        await plugin.call("hive-revoke", credential_id=cred["credential_id"])
        listed = (await plugin.call("hive-credentials"))["credentials"]
        assert listed[0]["revoked_at"] is not None
        _, after = await advisor.advise(
            node, "hive:fee-policy/v1", "set_single", {"channel": a, "fee_ppm": 99}, timeout_s=2
        )
        assert after is None  # a revoked credential gets no answer, only a counted refusal
        # (counted per message refused: on a busy machine the advisor may send it again)
        assert (await plugin.call("hive-status"))["refused"]["UNAUTHORIZED"] >= 1
        assert (await node0.channels())[0].policy.ppm == 120


@pytest.mark.anyio
async def test_parameters_are_checked_strictly_and_errors_carry_no_traceback() -> None:
    net, ids = ring(clock=time.monotonic)
    async with plugin_on(net, ids[0]) as plugin:
        await plugin.call("hive-genesis")
        cases = [
            ("hive-ban", {"node_id": ids[1], "approve": "maybe"}, "approve must be true or false"),
            ("hive-ban", {"node_id": "03zz", "approve": True}, "node_id"),
            ("hive-vouch", {}, "missing a required argument"),
            ("hive-vouch", {"node_id": ids[1], "evil": 1}, "unexpected keyword"),
            ("hive-invite", {"node_id": ids[1], "valid_hours": "abc"}, "valid_hours"),
            ("hive-invite", {"node_id": ids[1], "valid_hours": 1000}, "valid_hours"),
            ("hive-invite", {"node_id": ids[1], "valid_hours": True}, "valid_hours"),
            ("hive-approve", {"id": 42}, "id must be"),
            ("hive-revoke", {"credential_id": "xyz"}, "credential_id"),
            ("hive-grant", {"advisor": "not a key", "schemas": ["hive:fee-policy/*"]}, "advisor"),
            ("hive-leave", {"reason": "x" * 1000}, "reason"),
            ("hive-topology", {"verbose": True}, "unexpected keyword"),
            ("hive-status", {"evil": 1}, "unexpected keyword"),
        ]
        for method, params, fragment in cases:
            with pytest.raises(PluginError) as caught:
                await plugin.call(method, **params)
            error = caught.value.error
            assert error["code"] == 3707, (method, error)  # INVALID_PARAMS
            assert error["message"].startswith("INVALID_PARAMS: "), (method, error)
            assert fragment in error["message"], (method, error)
            assert error["data"]["code"] == "INVALID_PARAMS"
            assert "traceback" not in error, (method, error)
        # positional parameters, as lightning-cli sends them, bind like named ones
        with pytest.raises(PluginError, match="approve must be true or false"):
            await plugin.request("hive-ban", [ids[1], "typo", "maybe"])
        with pytest.raises(
            PluginError, match=r"INVALID_PARAMS: parameters: .*positional"
        ) as caught:
            await plugin.request("hive-topology", ["everything"])
        assert caught.value.error["code"] == 3707
        members = await plugin.call("hive-members")
        assert members["bans"] == [] and members["ban_proposals"] == []  # nothing enacted


@pytest.mark.anyio
async def test_configuration_problems_are_loud() -> None:
    """A bad --hive-relays or policy.json switches advisor commands off, says why in the log
    and in hive-status, and the methods that need them answer with that reason; fleet
    membership keeps working."""
    net, ids = ring(clock=time.monotonic)
    async with plugin_on(net, ids[0], **{"hive-relays": "http://not-a-relay"}) as plugin:
        status = await plugin.call("hive-status")
        assert any("hive-relays" in p or "relay" in p for p in status["problems"]), status
        with pytest.raises(PluginError, match=r"NOT_FOUND: advisor commands are off"):
            await plugin.call("hive-pending")
        assert any(
            log.get("level") == "unusual" and "advisor commands are off" in log.get("message", "")
            for log in plugin.logs
        )
        assert (await plugin.call("hive-genesis"))["hive_id"].startswith("hive_")

    lightning_dir = short_socket_dir()
    (lightning_dir / "hive").mkdir(mode=0o700)
    (lightning_dir / "hive" / "policy.json").write_text('{"quiet_hours_utc": [25, -3]}')
    async with (
        SimDriver(net),
        SimRpcServer(SimLightningd(net, ids[0]), lightning_dir / "lightning-rpc"),
        PluginProcess(lightning_dir) as plugin,
    ):
        await plugin.start({"hive-relays": "ws://127.0.0.1:1"})
        status = await plugin.call("hive-status")
        assert any("quiet_hours_utc" in p for p in status["problems"]), status
        with pytest.raises(PluginError, match="quiet_hours_utc"):
            await plugin.call("hive-credentials")


@pytest.mark.parametrize(
    ("env", "error"),
    [("", None), ('{"gossip_gap_s": 1, "handshake_retry_s": 2.5}', None),
     ("not json", "JSON object"), ("[1]", "JSON object"),
     ('{"gossip_gap_s": 0}', "gossip_gap_s"), ('{"gossip_gap_s": 1.5}', "gossip_gap_s"),
     ('{"features": 1}', "features"), ('{"nonsense": 1}', "nonsense"),
     ('{"retry_base_s": true}', "retry_base_s"), ('{"heartbeat_s": 5}', "heartbeat")],
)  # fmt: skip
def test_the_tests_only_fleet_timings(env: str, error: str | None) -> None:
    """HIVE_TEST_FLEET (tests only) shortens FleetConfig's number fields in the plugin, and
    nothing else: a field that is not a number, a wrong type or a bound broken is refused."""
    if error is None:
        cfg = fleet_options({}, env={TEST_ENV: env})
        if env:
            assert (cfg.gossip_gap_s, cfg.handshake_retry_s) == (1, 2.5)
        else:
            assert cfg == FleetConfig()
    else:
        with pytest.raises(InvalidParams, match=error):
            fleet_options({}, env={TEST_ENV: env})
