"""Attacks on the Core Lightning plugin and its RPC adapter: a hostile lightningd answering with
replies that are not what Core Lightning documents (not JSON, another request's id, no result,
a result of the wrong shape), driven through `CLNBackend` on a real unix socket and through the
real plugin process beside simulated fleet members."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream

from agent.breaker import CircuitBreaker
from agent.cln_plugin import TEST_ENV
from agent.errors import NodeUnavailable
from agent.fleet.service import FleetConfig
from agent.fleet.simfleet import SimMember
from agent.node.cln import CLNBackend
from agent.node.lightningd import PluginError, PluginProcess, bridge
from agent.node.sim_api import SimLightningd
from agent.node.sim_rpc import SimRpcServer, short_socket_dir
from agent.node.simnode import SimBackend, SimDriver
from events import fleet as wire
from events.errors import HiveError
from events.fleet import MsgType
from tests.fleet_world import Rogue, mesh
from tests.test_plugin import agent_started, plugin_on

pytestmark = pytest.mark.anyio
SECRET = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7"  # must never leak

Reply = Callable[[dict[str, Any]], bytes]


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


SHAPES: dict[str, Reply] = {  # what a broken or hostile lightningd may answer
    "not json": lambda req: b"{'secret': '" + SECRET.encode() + b"'",
    "not utf-8": lambda req: b'{"result": "\xff\xfe' + SECRET.encode() + b'"}',
    "a list": lambda req: _json([SECRET]),
    "nested past the stack": lambda req: b'{"result": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "null": lambda req: b"null",
    "another id": lambda req: _json({"jsonrpc": "2.0", "id": "x:1#1", "result": {"s": SECRET}}),
    "no result": lambda req: _json({"jsonrpc": "2.0", "id": req["id"], "secret": SECRET}),
    "result list": lambda req: _json({"jsonrpc": "2.0", "id": req["id"], "result": [SECRET]}),
    "result empty": lambda req: _json({"jsonrpc": "2.0", "id": req["id"], "result": {}}),
    "result mistyped": lambda req: _json(
        {
            "jsonrpc": "2.0",
            "id": req["id"],
            "result": {
                "id": 5,
                "blockheight": SECRET,
                "peers": [{"id": None}],
                "channels": [{"x": 1}],
                "outputs": [{"amount_msat": SECRET, "status": "confirmed"}],
                "signature": 1,
                "recid": SECRET,
                "zbase": None,
                "secret": [SECRET],
                "pays": [{"status": "complete", "amount_msat": SECRET}],
                "invoices": [{"bolt11": None}],
                "amount_msat": SECRET,
                "amount_sent_msat": [],
                "payment_hash": {},
                "verified": True,
            },
        }
    ),
    "error a string": lambda req: _json({"jsonrpc": "2.0", "id": req["id"], "error": SECRET}),
    "error odd shape": lambda req: _json(
        {"jsonrpc": "2.0", "id": req["id"], "error": {"code": [SECRET], "message": {"a": 1}}}
    ),
}

READS: dict[str, Callable[[CLNBackend], Awaitable[Any]]] = {
    "info": lambda n: n.info(),
    "peers": lambda n: n.peers(),
    "channels": lambda n: n.channels(),
    "funds": lambda n: n.funds(),
    "graph": lambda n: n.graph(),
    "signmessage": lambda n: n.signmessage("ab" * 32),
    "checkmessage": lambda n: n.checkmessage("ab", "y" * 104, "02" + "ab" * 32),
    "makesecret": lambda n: n.makesecret("hive-agent/nostr-key"),
    "invoice": lambda n: n.invoice(1000, "label"),
    "pay": lambda n: n.pay("lnbc1"),
    "decode_invoice": lambda n: n.decode_invoice("lnbc1"),
    "find_invoice": lambda n: n.find_invoice("label"),
    "find_payment": lambda n: n.find_payment("00" * 32),
    "sendcustommsg": lambda n: n.sendcustommsg("02" + "ab" * 32, b"\x80\x01HIVE"),
    "plugin_call": lambda n: n.plugin_call("revenue-status", {}),
}
NO_FIELD = {"sendcustommsg", "checkmessage", "plugin_call"}
EMPTY_IS_NONE = {
    "peers",
    "channels",
    "funds",
    "graph",
    "find_invoice",
    "find_payment",
    "decode_invoice",
}  # (its callers check what it read: the amount and the hash)


@asynccontextmanager
async def hostile_lightningd(path: Path, reply: Reply) -> AsyncIterator[list[str]]:
    """A unix socket that reads a JSON-RPC request per connection and answers it with
    `reply(request)`; yields the methods it was asked for."""
    asked: list[str] = []

    async def serve(stream: SocketStream) -> None:
        decoder, buffer = json.JSONDecoder(), ""
        async with stream:
            while True:
                try:
                    buffer += (await stream.receive(65536)).decode()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                try:
                    request, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    continue
                buffer = buffer.lstrip()[end:]
                asked.append(str(request.get("method")))
                await stream.send(reply(request) + b"\n\n")
                return  # (pyln asks once per connection; one left open would be closed
                # by the collector later, inside another test's loop)

    listener = await anyio.create_unix_listener(path)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield asked
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_a_malformed_reply_is_a_typed_error_that_tells_nothing_of_the_reply(
    shape: str,
) -> None:
    """Every operation of the adapter, given a reply Core Lightning never sends, raises a typed
    HiveError (NODE_UNAVAILABLE for a reply it cannot read, NODE_REFUSED for an error object)
    — never a KeyError, ValueError, TypeError or AttributeError that would end whatever loop
    made the call — and its message carries nothing of the reply (it may hold a secret:
    `makesecret` answers with one)."""
    path = short_socket_dir() / "lightning-rpc"
    async with hostile_lightningd(path, SHAPES[shape]) as asked:
        node = CLNBackend(str(path), timeout_s=5, breaker=CircuitBreaker(failures=1000))
        for name, op in READS.items():
            err = await _outcome(op(node))
            if err is None:
                # only what needs no field of the reply may pass (a send, a check), and what
                # the reply leaves out reads as none
                lenient = NO_FIELD | (EMPTY_IS_NONE if shape == "result empty" else set())
                assert name in lenient, (name, shape)
                continue
            assert isinstance(err, HiveError), f"{name}: {type(err).__name__} escaped the adapter"
            assert SECRET not in str(err), (name, shape, str(err))
            if not shape.startswith("error"):
                assert isinstance(err, NodeUnavailable), (name, shape, err)
        assert asked, "the socket was asked"


async def _outcome(call: Awaitable[Any]) -> Exception | None:
    try:
        await call
    except Exception as exc:  # noqa: BLE001 - what escapes is what these tests look at
        return exc
    return None


async def test_malformed_replies_open_the_breaker_like_an_unreachable_node() -> None:
    """A lightningd that keeps answering garbage is treated like one that does not answer:
    after the breaker's failures calls fail fast (NODE_UNAVAILABLE) without asking it."""
    path = short_socket_dir() / "lightning-rpc"
    async with hostile_lightningd(path, SHAPES["not json"]) as asked:
        node = CLNBackend(str(path), timeout_s=5)
        for _ in range(20):
            with pytest.raises(NodeUnavailable):
                await node.info()
        assert len(asked) < 20
        assert node.breaker.report()["state"] == "open"


class GarblingLightningd(SimRpcServer):
    """The simulator's RPC socket, except that the first `garble` `sendcustommsg` calls
    carrying a frame of `kind` are answered under another request's id, and not sent."""

    def __init__(
        self, api: SimLightningd, path: Path, kind: MsgType = MsgType.WELCOME, garble: int = 0
    ) -> None:
        super().__init__(api, path)
        self.kind, self.garble, self.garbled = kind, garble, 0
        self.asked: Counter[str] = Counter()  # requests, by method

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        self.asked[str(request.get("method"))] += 1
        params = request.get("params") or {}
        ours = request.get("method") == "sendcustommsg" and isinstance(params, dict)
        ours = ours and str(params.get("msg", "")).startswith(f"{int(self.kind):04x}")
        if ours and self.garbled < self.garble:
            self.garbled += 1
            return {"jsonrpc": "2.0", "id": "someone-else:getinfo#1", "result": {}}
        return await super().answer(request)


async def test_a_garbled_reply_to_a_send_does_not_stop_the_fleet_loop(tmp_path: Path) -> None:
    """lightningd answers two sends of a WELCOME with a reply meant for another request (and
    does not send it).  pyln raised ValueError, which no layer caught: the plugin's fleet loop
    — the only thing that retries the outbox — ended for good, so the joiner, admitted here,
    never heard it was, though lightningd was fine again a moment later.  Now the adapter
    raises NODE_UNAVAILABLE, the outbox retries, and the join completes."""
    net, ids = mesh(2, extra=0)
    lightning_dir = short_socket_dir()
    server = GarblingLightningd(
        SimLightningd(net, ids[0]), lightning_dir / "lightning-rpc", MsgType.WELCOME, garble=2
    )
    fast = '{"retry_base_s": 0.5, "retry_cap_s": 1, "handshake_retry_s": 2, "member_fee_zero": 0}'
    joiner = SimMember(
        net, ids[1], tmp_path / "joiner", config=FleetConfig(handshake_retry_s=1, member_fee_zero=0)
    )
    async with (
        SimDriver(net),
        server,
        PluginProcess(lightning_dir, env={TEST_ENV: fast}) as plugin,
        anyio.create_task_group() as tg,
    ):
        await plugin.start({})
        tg.start_soon(bridge, net, ids[0], plugin)
        await joiner.start(tg)
        try:
            await plugin.call("hive-genesis")
            ticket = await plugin.call("hive-invite", node_id=ids[1])
            await joiner.fleet.join(ticket["ticket"])
            with anyio.fail_after(20):
                while (joiner.fleet.status()["joining"] or {}).get("state") != "joined":
                    await anyio.sleep(0.1)
            assert server.garbled == 2
            fleet = (await plugin.call("hive-status"))["fleet"]
            assert "INTERNAL" not in fleet["refused"], fleet["refused"]
        finally:
            await joiner.stop()
            tg.cancel_scope.cancel()


async def test_a_strangers_hello_flood_costs_lightningd_nothing() -> None:
    """Any connected peer — no ticket, no channel, no hive — may send HELLO: the frame is
    refused, but only after the member asked lightningd for all its channels (the channel
    check ran before the ticket was looked at), one `listpeerchannels` per frame; a flood of
    them queued every member's frames behind that RPC.  Now a HELLO whose ticket this member
    would refuse (or one sent again within the 10 s rate limit) is refused before any RPC."""
    net, ids = mesh(2, extra=0)
    lightning_dir = short_socket_dir()
    server = GarblingLightningd(SimLightningd(net, ids[0]), lightning_dir / "lightning-rpc")
    async with (
        SimDriver(net),
        server,
        PluginProcess(lightning_dir) as plugin,
        anyio.create_task_group() as tg,
    ):
        await plugin.start({})
        tg.start_soon(bridge, net, ids[0], plugin)
        hive = (await plugin.call("hive-genesis"))["hive_id"]
        rogue, sent = Rogue(net, ids[1]), 200
        await plugin.call("hive-status")
        before = server.asked["listpeerchannels"]
        await plugin.call("hive-status")
        per_status = server.asked["listpeerchannels"] - before
        before, polls = server.asked["listpeerchannels"], 0
        for i in range(sent):
            hello = wire.Hello(ticket=f"hive1junk{i}", supported_versions=[1])
            await rogue.send(ids[0], rogue.frame(MsgType.HELLO, hello, hive=hive))
        with anyio.fail_after(30):
            while True:
                polls += 1
                refused = (await plugin.call("hive-status"))["fleet"]["refused"]
                if refused.get("INVALID_PAYLOAD", 0) >= sent:
                    break
                await anyio.sleep(0.2)
        during = server.asked["listpeerchannels"] - before - polls * per_status
        assert during < sent // 10, during  # (the fleet loop's own reads, at most)
        tg.cancel_scope.cancel()


async def test_a_policy_file_that_is_a_pipe_does_not_hold_up_init() -> None:
    """A careless operator's --hive-policy-file naming a FIFO (or /dev/zero, a device): the
    plugin opened and read it whole inside `init` — a FIFO nobody writes blocked there for
    good (lightningd waits on init), /dev/zero read until memory ran out.  Now anything but a
    regular file is refused at once: advisor commands are off with the reason, and fleet
    membership works."""
    net, ids = mesh(1, extra=0)
    lightning_dir = short_socket_dir()
    fifo = lightning_dir / "policy.fifo"
    os.mkfifo(fifo)
    options = {"hive-relays": "ws://127.0.0.1:1", "hive-policy-file": str(fifo)}
    async with (
        SimRpcServer(SimLightningd(net, ids[0]), lightning_dir / "lightning-rpc"),
        PluginProcess(lightning_dir) as plugin,
    ):
        with anyio.fail_after(15):
            await plugin.start(options)
        status = await plugin.call("hive-status")
        assert any("not a regular file" in p for p in status["problems"]), status["problems"]
        assert (await plugin.call("hive-genesis"))["hive_id"].startswith("hive_")


async def test_a_falsy_node_id_is_not_every_member() -> None:
    """`hive-contribution node_id=0` (or false, [], {}) answered the whole ledger as if no
    node had been named: a script's wrong value passed for "every member".  Only the default
    ("" or null) means that; anything else must be a node id (INVALID_PARAMS)."""
    net, ids = mesh(1, extra=1)
    async with plugin_on(net, ids[0]) as plugin:
        await plugin.call("hive-genesis")
        for wrong in (0, False, [], {}, 0.0):
            with pytest.raises(PluginError, match="INVALID_PARAMS: node_id must be a node id"):
                await plugin.call("hive-contribution", node_id=wrong)
        everyone = await plugin.call("hive-contribution", node_id=None)
        assert "members" in everyone
        with pytest.raises(PluginError, match=r"NOT_FOUND: .* is not a member"):
            await plugin.call("hive-contribution", node_id=ids[1])  # a node id: looked up


async def test_a_welcome_later_than_the_joiners_patience_still_completes_the_join(
    tmp_path: Path,
) -> None:
    """The issuer admits the joiner at its ATTEST and queues WELCOME; lightningd fails the
    sends for a while (four garbled replies), so the joiner stops waiting first (its tries
    run out: `refused`, "no answer").  The WELCOME that arrived next was refused — the join
    "was not expecting it" — so the issuer counted a neophyte that did not know it was one,
    and neither `hive-join` (the ticket is used, the node "already a member") nor a new
    invitation ("already a member") could ever fix it.  Now a joiner that gave up waiting
    after its ATTEST takes the issuer's WELCOME when it comes."""
    net, ids = mesh(2, extra=0)
    lightning_dir = short_socket_dir()
    server = GarblingLightningd(
        SimLightningd(net, ids[0]), lightning_dir / "lightning-rpc", MsgType.WELCOME, garble=4
    )
    fast = '{"retry_base_s": 1, "retry_cap_s": 1, "handshake_retry_s": 2, "member_fee_zero": 0}'
    patience = FleetConfig(handshake_retry_s=0.5, handshake_tries=2, member_fee_zero=0)
    joiner = SimMember(net, ids[1], tmp_path / "joiner", config=patience)
    async with (
        SimDriver(net),
        server,
        PluginProcess(lightning_dir, env={TEST_ENV: fast}) as plugin,
        anyio.create_task_group() as tg,
    ):
        await plugin.start({})
        tg.start_soon(bridge, net, ids[0], plugin)
        await joiner.start(tg)
        try:
            await plugin.call("hive-genesis")
            ticket = await plugin.call("hive-invite", node_id=ids[1])
            await joiner.fleet.join(ticket["ticket"])
            states = set()
            with anyio.fail_after(30):
                while True:
                    joining = joiner.fleet.status()["joining"] or {}
                    states.add(joining.get("state"))
                    if joining.get("state") == "refused":  # what the operator is told meanwhile
                        assert "its WELCOME still completes the join" in joining["error"]
                    if joining.get("state") == "joined":
                        break
                    await anyio.sleep(0.05)
            assert "refused" in states and server.garbled == 4  # it had given up first
            assert joiner.fleet.view()["members"] == {ids[0]: "member", ids[1]: "neophyte"}
            listed = await plugin.call("hive-members")
            assert {m["node_id"]: m["tier"] for m in listed["members"]} == {
                ids[0]: "member", ids[1]: "neophyte",
            }  # fmt: skip
        finally:
            await joiner.stop()
            tg.cancel_scope.cancel()


async def test_a_silent_lightningd_costs_no_thread_per_call() -> None:
    """lightningd takes each request and never answers (stalled behind a hook, say).  Every
    call gave up after its timeout, NODE_UNAVAILABLE — but pyln's socket has no timeout, so
    each left its worker thread blocked for as long as lightningd stayed silent: thirty
    calls, thirty threads more.  Now the socket gives up too, and the threads end."""

    path = short_socket_dir() / "lightning-rpc"

    async def silent(stream: SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    listener = await anyio.create_unix_listener(path)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, silent)
        node = CLNBackend(str(path), timeout_s=0.2, breaker=CircuitBreaker(failures=1000))
        before = threading.active_count()
        for _ in range(30):
            with pytest.raises(NodeUnavailable, match="no answer within"):
                await node.info()
        # (a call's thread ends about a second after it gave up: a few stay busy at once)
        assert threading.active_count() - before <= 12
        tg.cancel_scope.cancel()


async def test_a_forward_the_store_cannot_hold_does_not_deafen_the_plugin(relay_url: str) -> None:
    """lightningd's `forward_event` with a fee no SQLite integer holds (a lightningd gone
    wrong; a full disk does the same): recording it for performance bonuses raised in the
    plugin's one event consumer, which ended — from then on no custom message, connect or
    forward reached the agent, so the fleet was deaf until lightningd restarted the plugin.
    Now a forward that cannot be recorded is logged and counted, and the stream goes on."""
    net, ids = mesh(2, extra=0)
    async with plugin_on(net, ids[0], **{"hive-relays": relay_url}) as plugin:
        await agent_started(plugin)
        scid = sorted(net.node(ids[0]).channels)[0]
        await plugin.notify("forward_event", {"forward_event": {
            "in_channel": scid, "out_channel": scid, "in_msat": 10**20, "out_msat": 0,
            "fee_msat": 10**20, "status": "settled", "received_time": 1.0,
            "resolved_time": 2.0,
        }})  # fmt: skip
        hive_frame = (32769).to_bytes(2, "big") + b'HIVE{"v":1}'
        await SimBackend(net, ids[1]).sendcustommsg(ids[0], hive_frame)
        with anyio.fail_after(10):
            while (await plugin.call("hive-status"))["events"].get("CustomMsg", 0) < 1:
                await anyio.sleep(0.1)
        events = (await plugin.call("hive-status"))["events"]
        assert events["Forward"] == events["ForwardNotRecorded"] == 1


async def test_a_store_locked_past_its_timeout_does_not_stop_the_fleet_loop(
    tmp_path: Path,
) -> None:
    """Another connection (a backup, a tool) holds agent.sqlite's write lock longer than the
    store waits (10 s): the fleet loop's upkeep commit raised "database is locked" out of
    the loop, which ended — and it alone retries the outbox, so a vouch queued while the
    neophyte was offline never reached it once it was back.  Now a failed pass is logged and
    counted and the next one runs."""
    import sqlite3

    net, ids = mesh(2, extra=0)
    lightning_dir = short_socket_dir()
    server = GarblingLightningd(SimLightningd(net, ids[0]), lightning_dir / "lightning-rpc")
    fast = '{"retry_base_s": 0.5, "retry_cap_s": 1, "handshake_retry_s": 2, "member_fee_zero": 0}'
    joiner = SimMember(net, ids[1], tmp_path / "joiner", config=FleetConfig(member_fee_zero=0))
    async with (
        SimDriver(net),
        server,
        PluginProcess(lightning_dir, env={TEST_ENV: fast}) as plugin,
        anyio.create_task_group() as tg,
    ):
        await plugin.start({})
        tg.start_soon(bridge, net, ids[0], plugin)
        await joiner.start(tg)
        try:
            await plugin.call("hive-genesis")
            ticket = await plugin.call("hive-invite", node_id=ids[1])
            await joiner.fleet.join(ticket["ticket"])
            with anyio.fail_after(20):
                while (joiner.fleet.status()["joining"] or {}).get("state") != "joined":
                    await anyio.sleep(0.1)
            other = sqlite3.connect(lightning_dir / "hive" / "agent.sqlite", timeout=30)
            other.execute("BEGIN IMMEDIATE")  # held past the plugin's 10 s
            await anyio.sleep(12)
            other.execute("ROLLBACK")
            other.close()
            net.disconnect(ids[0], ids[1])
            await plugin.call("hive-vouch", node_id=ids[1])  # queued: the neophyte is away
            net.connect(ids[0], ids[1])
            with anyio.fail_after(20):
                while joiner.fleet.view()["members"].get(ids[1]) != "member":
                    await anyio.sleep(0.1)
        finally:
            await joiner.stop()
            tg.cancel_scope.cancel()
