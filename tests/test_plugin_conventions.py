"""Core Lightning conventions of the plugin, through the real plugin process over CLN's plugin
protocol (the harness in agent/node/lightningd.py): error codes in a range of their own, the
multi and dynamic `hive-relays`, the policy and operator options, `hive-grant`'s limits and the
plugin's own notification topics."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import nostr_sdk as sdk
import pytest

import agent.errors  # noqa: F401 - registers the runtime error families
from agent.advisory.credentials import new_credential
from agent.node.lightningd import PluginError, PluginProcess
from agent.node.sim_api import SimLightningd
from agent.node.sim_rpc import SimRpcServer, short_socket_dir
from agent.plugin_codes import RANGE, RPC_CODES
from agent.plugin_notify import TOPICS
from agent.plugin_rpc import error_reply
from events.errors import InvalidParams, error_classes
from tests.conftest import HIVE_AGENT
from tests.node_scenario import ring
from tests.test_plugin import agent_started, plugin_on

# Core Lightning's own JSON-RPC codes (common/jsonrpc_errors.h, v25): none may be ours
CLN_CODES = {
    -32600, -32601, -32602, -1, -2, -3, -4, -5, *range(200, 221), *range(300, 315),
    *range(350, 364), 400, 401, 402, 500, 501, 800, *range(900, 909), *range(1000, 1008),
    *range(1200, 1207), 1301, 1401, 1402, 1501, 1502, 1503, 1600, 1700, 2000,
}  # fmt: skip
UNREACHABLE = "ws://127.0.0.1:1"


def test_every_hive_error_code_has_its_own_number_clear_of_core_lightning() -> None:
    codes = set(error_classes())
    assert codes <= set(RPC_CODES), sorted(codes - set(RPC_CODES))
    numbers = list(RPC_CODES.values())
    assert len(set(numbers)) == len(numbers)  # one number per code
    assert all(n in RANGE for n in numbers) and not set(numbers) & CLN_CODES
    for code, cls in error_classes().items():
        reply = error_reply(1, cls("x"))["error"]
        assert (reply["code"], reply["data"]) == (RPC_CODES[code], {"code": code, "message": "x"})


def _check(caught: pytest.ExceptionInfo[PluginError], code: str, number: int) -> None:
    error = caught.value.error
    assert (error["code"], error["data"]["code"]) == (number, code), error
    assert error["message"].startswith(f"{code}: ") and "traceback" not in error


@pytest.mark.anyio
async def test_hive_errors_over_the_protocol_carry_their_stable_numbers() -> None:
    net, ids = ring(clock=time.monotonic)
    async with plugin_on(net, ids[0]) as plugin:
        cases: list[tuple[str, dict[str, Any], str, int]] = [
            ("hive-join", {"ticket": "x"}, "INVALID_PAYLOAD", 3728),
            ("hive-pending", {}, "NOT_FOUND", 3715),
            ("hive-invite", {"node_id": "03zz"}, "INVALID_PARAMS", 3707),
            ("hive-status", {"evil": 1}, "INVALID_PARAMS", 3707),
        ]
        for method, params, code, number in cases:
            with pytest.raises(PluginError) as caught:
                await plugin.call(method, **params)
            _check(caught, code, number)
        with pytest.raises(PluginError) as caught:
            await plugin.setconfig("hive-relays", ["http://not-a-relay"])
        _check(caught, "CONFIG_INVALID", 3765)


def _relays(status: dict[str, Any]) -> list[str] | str:
    got = status["relays"]
    return got if isinstance(got, str) else sorted(r["url"].rstrip("/") for r in got)


async def _until_relays(plugin: PluginProcess, want: list[str] | str) -> None:
    with anyio.fail_after(15):
        while _relays(await plugin.call("hive-status")) != want:
            await anyio.sleep(0.1)


@pytest.mark.anyio
async def test_hive_relays_is_multi_and_dynamic(relay_url: str) -> None:
    """One relay per --hive-relays= (a comma list still counts), and `setconfig hive-relays`
    reconnects at run time; a bad set is refused and the old one stays."""
    net, ids = ring(clock=time.monotonic)
    start = {"hive-relays": [relay_url, f"{UNREACHABLE},{relay_url}"]}
    async with plugin_on(net, ids[0], **start) as plugin:  # type: ignore[arg-type]
        options = {o["name"]: o for o in plugin.manifest["options"]}
        assert (options["hive-relays"]["multi"], options["hive-relays"]["dynamic"]) == (True, True)
        await _until_relays(plugin, sorted([relay_url.rstrip("/"), UNREACHABLE]))
        assert await plugin.setconfig("hive-relays", [relay_url]) is None
        await _until_relays(plugin, [relay_url.rstrip("/")])
        await plugin.call("hive-pending")  # the restarted agent answers advisor commands
        with pytest.raises(PluginError) as caught:
            await plugin.setconfig("hive-relays", ["wss://ok.example", "ftp://nope"])
        _check(caught, "CONFIG_INVALID", 3765)
        assert _relays(await plugin.call("hive-status")) == [relay_url.rstrip("/")]
        await plugin.setconfig("hive-relays", [])
        await _until_relays(plugin, "none configured (hive-relays)")
        with pytest.raises(PluginError, match="NOT_FOUND: advisor commands need Nostr relays"):
            await plugin.call("hive-pending")


@pytest.mark.anyio
async def test_a_burst_of_setconfigs_ends_on_the_newest_set(relay_url: str) -> None:
    """setconfig after setconfig (and one during start-up): restarts run one at a time and a
    superseded one does nothing, so the newest set is what runs, once."""
    net, ids = ring(clock=time.monotonic)
    async with plugin_on(net, ids[0], **{"hive-relays": [UNREACHABLE]}) as plugin:  # type: ignore[arg-type]
        sets = [[relay_url], [UNREACHABLE], [UNREACHABLE, relay_url], [], [relay_url]]
        for relays in sets:
            assert await plugin.setconfig("hive-relays", relays) is None
        await _until_relays(plugin, [relay_url.rstrip("/")])
        await plugin.call("hive-pending")  # one agent, on the newest set, answers
        await anyio.sleep(1)
        assert _relays(await plugin.call("hive-status")) == [relay_url.rstrip("/")]


@pytest.mark.anyio
async def test_policy_file_and_operator_options(tmp_path: Path) -> None:
    operator = sdk.Keys.generate().public_key()
    policy = tmp_path / "elsewhere.json"
    policy.write_text(json.dumps({"operator_pubkey": "ab" * 32}))
    net, ids = ring(clock=time.monotonic)
    options = {
        "hive-relays": UNREACHABLE,
        "hive-policy-file": str(policy),
        "hive-operator": operator.to_bech32(),
    }
    async with plugin_on(net, ids[0], **options) as plugin:
        with anyio.fail_after(15):
            while (status := await plugin.call("hive-status"))["relays"] == [] or isinstance(
                status["relays"], str
            ):
                await anyio.sleep(0.1)
        await plugin.call("hive-pending")  # the policy file loaded; the agent runs
        assert status["policy"] == {"file": str(policy), "operator": operator.to_hex()}

    policy.write_text('{"quiet_hours_utc": [25, -3]}')  # the option's file is the one read
    async with plugin_on(net, ids[0], **options) as plugin:
        problems = (await plugin.call("hive-status"))["problems"]
        assert any("quiet_hours_utc" in p for p in problems), problems

    lightning_dir = short_socket_dir()
    async with (
        SimRpcServer(SimLightningd(net, ids[0]), lightning_dir / "lightning-rpc"),
        PluginProcess(lightning_dir) as bad,
    ):
        with pytest.raises(PluginError, match="hive-operator must be a Nostr public key"):
            await bad.start({"hive-operator": "npub1nope"})


async def _cli_grant_error(tmp_path: Path, advisor: sdk.PublicKey, bad: dict[str, int]) -> str:
    """What `hive-agent credential grant … --max-fee-change-pct 2000` says, as the user sees it."""
    home = ["--home", str(tmp_path / "cli")]
    await anyio.run_process([HIVE_AGENT, *home, "keys", "new"], check=False)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in bad.items()]
    done = await anyio.run_process(
        [HIVE_AGENT, *home, "credential", "grant", advisor.to_bech32(), "--schema",
         "hive:fee-policy/*", *flags, "--relay", UNREACHABLE], check=False,
    )  # fmt: skip
    assert done.returncode == 65, done.stderr
    return done.stderr.decode().removeprefix("error: ").strip()


@pytest.mark.anyio
async def test_hive_grant_takes_the_cli_limits_checked_by_the_same_rule(
    tmp_path: Path, relay_url: str
) -> None:
    net, ids = ring(clock=time.monotonic)
    advisor = sdk.Keys.generate().public_key()
    schemas = ["hive:fee-policy/*"]
    async with plugin_on(net, ids[0]) as plugin:  # no relays: still checked first
        node = (await plugin.call("hive-status"))["nostr_pubkey"]
        for bad in ({"max_fee_change_pct": 2000}, {"days": 0}, {"max_daily_actions": -1}):
            limits: dict[str, Any] = {"days": 90, **bad}
            with pytest.raises(InvalidParams) as rule:
                new_credential(node, advisor.to_hex(), "standard", schemas, now=0, **limits)
            with pytest.raises(PluginError) as caught:
                await plugin.call("hive-grant", advisor=advisor.to_bech32(), schemas=schemas, **bad)
            _check(caught, "INVALID_PARAMS", 3707)
            assert caught.value.error["message"] == str(rule.value)
            assert caught.value.error["message"] == await _cli_grant_error(tmp_path, advisor, bad)
        with pytest.raises(PluginError, match="max_rebalance_sats must be a whole number"):
            await plugin.call("hive-grant", advisor=advisor.to_hex(), schemas=schemas,
                              max_rebalance_sats="lots")  # fmt: skip
    async with plugin_on(net, ids[0], **{"hive-relays": relay_url}) as plugin:
        await agent_started(plugin)
        cred = await plugin.request(  # positional, as lightning-cli sends them (strings)
            "hive-grant", [advisor.to_hex(), "hive:fee-policy/*", "advanced", "30", "20", "5000",
                           "7"],
        )  # fmt: skip
    assert cred["constraints"] == {
        "max_fee_change_pct": 20, "max_rebalance_sats": 5000, "max_daily_actions": 7,
    } | {k: v for k, v in cred["constraints"].items() if k not in (
        "max_fee_change_pct", "max_rebalance_sats", "max_daily_actions")}  # fmt: skip
    assert cred["valid_until"] - cred["valid_from"] == 30 * 86400


@pytest.mark.anyio
async def test_notification_topics_are_declared_and_fleet_joins_are_told() -> None:
    net, ids = ring(clock=time.monotonic)
    async with plugin_on(net, ids[0]) as plugin:
        assert plugin.manifest["notifications"] == [{"method": t} for t in TOPICS]
        hive_id = (await plugin.call("hive-genesis"))["hive_id"]
        with anyio.fail_after(10):
            while not [n for n in plugin.notifications if n["method"] == "hive_member_joined"]:
                await anyio.sleep(0.1)
    told = [n for n in plugin.notifications if n["method"] == "hive_member_joined"]
    assert len(told) == 1
    payload = told[0]["params"]["hive_member_joined"]  # pyln wraps the payload under its topic
    assert (payload["hive_id"], payload["node_id"], payload["status"]) == (
        hive_id,
        ids[0],
        "active",
    )
    assert (payload["tier"], payload["self"]) == ("member", True)


def _told(plugin: PluginProcess, topic: str) -> list[dict[str, Any]]:
    return [n["params"][topic] for n in plugin.notifications if n["method"] == topic]


async def _until_told(plugin: PluginProcess, topic: str, count: int) -> list[dict[str, Any]]:
    with anyio.fail_after(10):
        while len(_told(plugin, topic)) < count:
            await anyio.sleep(0.05)
    return _told(plugin, topic)


@pytest.mark.anyio
async def test_commands_queued_approvals_and_receipts_are_notified(
    tmp_path: Path, relay_url: str
) -> None:
    from agent import app
    from agent.node.simnode import SimBackend
    from agent.settings import RelaysConfig, Settings
    from agent.store import advisory as repo

    net, ids = ring(clock=time.monotonic)
    config = RelaysConfig.single(relay_url, reconnect_base_s=0.1, publish_timeout_s=5)
    advisor_app = app.standalone(Settings(home=tmp_path / "adv"), sdk.Keys.generate(), config)
    async with (
        plugin_on(net, ids[0], **{"hive-relays": relay_url}) as plugin,
        advisor_app.agent as agent,
    ):
        advisor = advisor_app.advisor
        node = (await plugin.call("hive-status"))["nostr_pubkey"]
        await agent_started(plugin)
        cred = await plugin.call("hive-grant", advisor=advisor.me, schemas=["hive:rebalance/*"],
                                 tier="advanced")  # fmt: skip
        with anyio.fail_after(10):
            while repo.active_held(agent.store, node, advisor.now) is None:
                await anyio.sleep(0.05)
        chans = await SimBackend(net, ids[0]).channels()
        move = {"from_channel": chans[0].short_channel_id, "to_channel": chans[1].short_channel_id,
                "amount_sats": 200_000, "max_fee_ppm": 500}  # fmt: skip
        cmd, _ = await advisor.advise(node, "hive:rebalance/v1", "circular", move, wait=False)
        queued = (await _until_told(plugin, "hive_command_queued", 1))[0]
        asked = (await _until_told(plugin, "hive_approval_needed", 1))[0]
        first = (await _until_told(plugin, "hive_receipt", 1))[0]
        assert (queued["command_id"], queued["status"], queued["danger"]) == (
            cmd.command_id, "queued", 5)  # fmt: skip
        assert queued["credential_id"] == cred["credential_id"] == first["credential_id"]
        assert queued["waiting_for"]["id"] == cmd.command_id
        assert {k: asked[k] for k in ("command_id", "state", "step", "method", "danger")} == {
            "command_id": cmd.command_id, "state": "queued", "step": "approve",
            "method": "hive-approve", "danger": 5,
        }  # fmt: skip
        assert (first["status"], first["seq"], first["schema"], first["action"]) == (
            "queued", 1, "hive:rebalance/v1", "circular")  # fmt: skip
        await plugin.call("hive-approve", id=cmd.command_id)
        done = (await _until_told(plugin, "hive_receipt", 2))[1]
        assert (done["command_id"], done["status"], done["seq"], done["error"]) == (
            cmd.command_id, "ok", 2, None)  # fmt: skip
        assert len(_told(plugin, "hive_approval_needed")) == 1  # asked once, not every step
