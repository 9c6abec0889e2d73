"""`CLNBackend`: Core Lightning through pyln-client's `LightningRpc` (with a socket that gives
up: agent/node/cln_rpc.py).

Each operation maps to the CLN RPCs it needs (listed per method).  Calls run in worker threads
(one `LightningRpc` per thread, so request ids never race) under a timeout, behind a circuit
breaker: after `failures` consecutive unreachable/timeout failures the breaker opens and calls
fail fast with NODE_UNAVAILABLE for `reset_s`, then one trial call decides.  Errors lightningd
returns are mapped by CLN's numeric codes to the project's typed errors.

Events (custom messages, connects, forwards) reach this backend from the plugin's hooks and
notifications through `inject()`.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import threading
from collections.abc import AsyncGenerator
from typing import Any

import anyio
from pyln.client import RpcError

from agent.breaker import CircuitBreaker
from agent.errors import NodeRefused, NodeUnavailable, PeerNotConnected
from agent.node.cln_rpc import MALFORMED, TimedRpc, malformed, reads
from agent.node.models import (
    Channel,
    ChannelState,
    FeePolicy,
    Funds,
    GraphChannel,
    Invoice,
    NodeEvent,
    NodeInfo,
    Payment,
    Peer,
    SignedMessage,
)
from events.errors import HiveError, InsufficientBalance, InvalidParams, NotFound, PaymentFailed

FINAL_CLTV = 18
PAY_CODES = {203, 204, 205, 206, 207, 209, 210}
__all__ = ["CLNBackend", "CircuitBreaker", "map_rpc_error"]


def map_rpc_error(method: str, error: dict[str, Any]) -> HiveError:
    """The typed error for a lightningd error object."""
    code, message = error.get("code"), str(error.get("message", ""))[:300]
    if not isinstance(code, int):  # (a list would not even hash): no code we know
        code = None
    text = f"{method}: {message}"
    if code in PAY_CODES:
        return PaymentFailed(text)
    if code in (300, 301, 302):
        return InsufficientBalance(text)
    if method == "sendcustommsg" or "not connected" in message.lower():
        return PeerNotConnected(text)
    if code == -32602:
        lowered = message.lower()
        missing = (
            "unknown",
            "not found",
            "no such",
            "no channel",
            "no open channel",
            "could not find",
        )
        if any(word in lowered for word in missing):
            return NotFound(text)
        return InvalidParams(text)
    return NodeRefused(text)


def _channel(c: dict[str, Any]) -> Channel:
    local = c.get("updates", {}).get("local", {})
    state = c.get("state", "")
    return Channel(
        short_channel_id=c.get("short_channel_id") or f"pending:{c.get('channel_id', '')[:16]}",
        peer_id=c["peer_id"],
        capacity_sat=int(c.get("total_msat", 0)) // 1000,
        local_msat=int(c.get("to_us_msat", 0)),
        remote_msat=int(c.get("total_msat", 0)) - int(c.get("to_us_msat", 0)),
        reserve_sat=int(c.get("our_reserve_msat", 0)) // 1000,
        state=ChannelState.NORMAL
        if state == "CHANNELD_NORMAL"
        else ChannelState.CLOSED
        if "ONCHAIN" in state or "CLOSING" in state
        else ChannelState.PENDING,
        policy=FeePolicy(
            base_msat=int(local.get("fee_base_msat", c.get("fee_base_msat", 0))),
            ppm=int(
                local.get("fee_proportional_millionths", c.get("fee_proportional_millionths", 0))
            ),
            htlc_min_msat=int(local.get("htlc_minimum_msat", 0)),
            htlc_max_msat=int(local.get("htlc_maximum_msat", 0)),
            cltv_delta=int(local.get("cltv_expiry_delta", 0)),
        ),
    )


class CLNBackend:
    def __init__(
        self, rpc_path: str, *, timeout_s: float = 30.0, breaker: CircuitBreaker | None = None
    ) -> None:
        self.rpc_path = rpc_path
        self.timeout_s = timeout_s
        self.breaker = breaker or CircuitBreaker()
        self._local = threading.local()
        self._send: anyio.abc.ObjectSendStream[NodeEvent] | None = None
        self._my_id: str | None = None

    def _rpc(self) -> TimedRpc:
        if not hasattr(self._local, "rpc"):
            self._local.rpc = TimedRpc(self.rpc_path, self.timeout_s)
        return self._local.rpc

    def _call_sync(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._rpc().call(method, params)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One RPC, with timeout, circuit breaker and typed errors."""
        self.breaker.check()
        params = {k: v for k, v in params.items() if v is not None}
        try:
            with anyio.fail_after(self.timeout_s):
                result = await anyio.to_thread.run_sync(
                    functools.partial(self._call_sync, method, params), abandon_on_cancel=True
                )
        except TimeoutError:
            self.breaker.failure()
            raise NodeUnavailable(f"{method} got no answer within {self.timeout_s:.0f} s") from None
        except RpcError as exc:
            self.breaker.success()  # lightningd answered: it is up
            raise map_rpc_error(method, exc.error if isinstance(exc.error, dict) else {}) from None
        except OSError as exc:
            self.breaker.failure()
            raise NodeUnavailable(f"cannot reach lightningd at {self.rpc_path}: {exc}") from None
        except MALFORMED as exc:  # (after RpcError, a ValueError too): a lightningd gone wrong
            self.breaker.failure()
            raise malformed(method, exc) from None
        self.breaker.success()
        return result

    async def my_id(self) -> str:
        if self._my_id is None:
            self._my_id = (await self.info()).id
        return self._my_id

    # --- NodeBackend ---------------------------------------------------------------------

    @reads("getinfo")
    async def info(self) -> NodeInfo:  # getinfo
        r = await self.call("getinfo")
        return NodeInfo(
            id=r["id"],
            alias=r.get("alias", ""),
            blockheight=int(r.get("blockheight", 0)),
            num_peers=int(r.get("num_peers", 0)),
            num_channels=int(r.get("num_active_channels", 0)),
        )

    @reads("listpeers")
    async def peers(self) -> list[Peer]:  # listpeers
        r = await self.call("listpeers")
        return [
            Peer(
                id=p["id"],
                connected=bool(p.get("connected")),
                num_channels=int(p.get("num_channels", 0)),
            )
            for p in r.get("peers", [])
        ]

    @reads("listpeerchannels")
    async def channels(self) -> list[Channel]:  # listpeerchannels
        r = await self.call("listpeerchannels")
        chans = [_channel(c) for c in r.get("channels", [])]
        return sorted(
            (c for c in chans if c.state != ChannelState.CLOSED), key=lambda c: c.short_channel_id
        )

    @reads("setchannel")
    async def set_fees(  # setchannel
        self,
        scid: str,
        *,
        base_msat: int | None = None,
        ppm: int | None = None,
        htlc_min_msat: int | None = None,
        htlc_max_msat: int | None = None,
    ) -> Channel:
        await self.call(
            "setchannel",
            id=scid,
            feebase=base_msat,
            feeppm=ppm,
            htlcmin=htlc_min_msat,
            htlcmax=htlc_max_msat,
        )
        return await _open_channel(self, scid)

    @reads("fundchannel")
    async def open_channel(self, peer_id: str, amount_sat: int) -> Channel:  # fundchannel
        r = await self.call("fundchannel", id=peer_id, amount=amount_sat)
        if r.get("short_channel_id"):
            return await _open_channel(self, r["short_channel_id"])
        chans = (await self.call("listpeerchannels", id=peer_id)).get("channels", [])
        mine = [c for c in chans if c.get("channel_id") == r.get("channel_id")] or chans
        return _channel(mine[-1])

    async def close_channel(self, scid: str) -> None:  # close
        await self.call("close", id=scid)

    @reads("invoice")
    async def invoice(self, amount_msat: int, label: str) -> Invoice:  # invoice
        r = await self.call("invoice", amount_msat=amount_msat, label=label, description=label)
        return Invoice(
            bolt11=r["bolt11"], payment_hash=r["payment_hash"], amount_msat=amount_msat,
            expires_at=_unix(r.get("expires_at")),
        )  # fmt: skip

    @reads("pay")
    async def pay(self, bolt11: str, *, max_fee_msat: int | None = None) -> Payment:  # pay
        r = await self.call("pay", bolt11=bolt11, maxfee=max_fee_msat)
        amount, sent = int(r["amount_msat"]), int(r["amount_sent_msat"])
        return Payment(
            payment_hash=r["payment_hash"],
            preimage=r["payment_preimage"],
            amount_msat=amount,
            fee_msat=sent - amount,
            hops=int(r.get("parts", 1)),
        )

    @reads("sendpay")
    async def rebalance(  # invoice, listchannels, getroute(fromid), sendpay, waitsendpay
        self,
        out_scid: str,
        in_scid: str,
        amount_msat: int,
        *,
        max_fee_ppm: int,
        label: str | None = None,
    ) -> Payment:
        me = await self.my_id()
        out_chan, in_chan = await _open_channel(self, out_scid), await _open_channel(self, in_scid)
        first, last = out_chan.peer_id, in_chan.peer_id
        inv = await self.call(
            "invoice",
            amount_msat=amount_msat,
            label=f"hive-rebalance-{label or secrets.token_hex(8)}",
            description="hive rebalance",
        )
        inner, over_out, first_delay = await self._route_around(
            me, in_scid, first, last, amount_msat
        )
        fee = over_out - amount_msat
        if fee > amount_msat * max_fee_ppm // 1_000_000:
            raise PaymentFailed(
                f"the cheapest circular route costs {fee:,} msat, over {max_fee_ppm} ppm"
            )
        hops = [
            {"id": first, "channel": out_scid, "amount_msat": over_out, "delay": first_delay},
            *(_hop(h) for h in inner),
            {"id": me, "channel": in_scid, "amount_msat": amount_msat, "delay": FINAL_CLTV},
        ]
        await self.call(
            "sendpay",
            route=hops,
            payment_hash=inv["payment_hash"],
            payment_secret=inv.get("payment_secret"),
            amount_msat=amount_msat,
        )
        done = await self.call("waitsendpay", payment_hash=inv["payment_hash"], timeout=60)
        return Payment(
            payment_hash=inv["payment_hash"],
            preimage=done.get("payment_preimage", ""),
            amount_msat=amount_msat,
            fee_msat=fee,
            hops=len(hops),
        )

    async def _route_around(  # listchannels, getroute(fromid)
        self, me: str, in_scid: str, first: str, last: str, amount_msat: int
    ) -> tuple[list[dict[str, Any]], int, int]:
        """The cheapest route from our peer `first` to our peer `last` (not through us) that
        delivers `amount_msat` back to us over `in_scid`: its hops, and the amount and delay
        the first hop (from us to `first`) must carry, fees of the forwarding nodes included."""
        last_pol = await _policy_from(self, in_scid, last)
        at_last = amount_msat + _fee(last_pol, amount_msat)
        final_delay = FINAL_CLTV + int(last_pol["delay"])
        if first == last:
            return [], at_last, final_delay
        route = await self.call(
            "getroute",
            id=last,
            amount_msat=at_last,
            riskfactor=1,
            fromid=first,
            exclude=[me],
            cltv=final_delay,
        )
        inner: list[dict[str, Any]] = route["route"]
        if not inner:
            return [], at_last, final_delay
        over_first = int(inner[0]["amount_msat"])
        first_pol = await _policy_from(self, inner[0]["channel"], first)
        return (
            inner,
            over_first + _fee(first_pol, over_first),
            inner[0]["delay"] + int(first_pol["delay"]),
        )

    @reads("listinvoices")
    async def find_rebalance(self, label: str) -> Payment | None:  # listinvoices
        found = (await self.call("listinvoices", label=f"hive-rebalance-{label}")).get(
            "invoices", []
        )
        if not found or found[0].get("status") != "paid":
            return None
        inv = found[0]
        amount = int(inv.get("amount_received_msat", inv.get("amount_msat", 0)))
        return Payment(
            payment_hash=inv["payment_hash"],
            preimage=inv.get("payment_preimage", ""),
            amount_msat=amount,
            fee_msat=0,
            hops=0,
        )

    @reads("listpays")
    async def find_payment(self, payment_hash: str) -> Payment | None:  # listpays
        pays = (await self.call("listpays", payment_hash=payment_hash)).get("pays", [])
        done = [p for p in pays if p.get("status") == "complete"]
        if not done:
            return None
        p = done[0]
        amount = int(p.get("amount_msat", 0))
        sent = int(p.get("amount_sent_msat", amount))
        return Payment(
            payment_hash=payment_hash, preimage=p.get("preimage", ""), amount_msat=amount,
            fee_msat=max(0, sent - amount), hops=0,
        )  # fmt: skip

    @reads("listinvoices")
    async def find_invoice(self, label: str) -> Invoice | None:  # listinvoices
        found = (await self.call("listinvoices", label=label)).get("invoices", [])
        if not found:
            return None
        inv = found[0]
        amount = int(inv.get("amount_msat", 0))
        return Invoice(bolt11=inv["bolt11"], payment_hash=inv["payment_hash"], amount_msat=amount,
                       expires_at=_unix(inv.get("expires_at")))  # fmt: skip

    @reads("decode")
    async def decode_invoice(self, bolt11: str) -> Invoice:  # decode
        d = await self.call("decode", string=bolt11)
        made, expiry = _unix(d.get("created_at")), _unix(d.get("expiry"))
        return Invoice(bolt11=bolt11, payment_hash=str(d.get("payment_hash", "")),
                       amount_msat=int(d.get("amount_msat", 0)),
                       expires_at=None if made is None or expiry is None else made + expiry,
                       )  # fmt: skip

    @reads("listfunds")
    async def funds(self) -> Funds:  # listfunds
        r = await self.call("listfunds")
        onchain = sum(
            int(o["amount_msat"]) for o in r.get("outputs", []) if o.get("status") == "confirmed"
        )
        local = sum(int(c.get("our_amount_msat", 0)) for c in r.get("channels", []))
        return Funds(onchain_sat=onchain // 1000, channels_local_msat=local)

    @reads("withdraw")
    async def withdraw(self, address: str, amount_sat: int) -> str:  # withdraw
        return str((await self.call("withdraw", destination=address, satoshi=amount_sat))["txid"])

    @reads("signmessage")
    async def signmessage(self, message: str) -> SignedMessage:  # signmessage
        r = await self.call("signmessage", message=message)
        return SignedMessage(signature=r["signature"], recid=int(r["recid"], 16), zbase=r["zbase"])

    @reads("checkmessage")
    async def checkmessage(self, message: str, zbase: str, node_id: str) -> bool:  # checkmessage
        try:
            r = await self.call("checkmessage", message=message, zbase=zbase, pubkey=node_id)
        except InvalidParams:
            return False
        return bool(r.get("verified"))

    @reads("makesecret")
    async def makesecret(self, label: str) -> bytes:  # makesecret
        return bytes.fromhex((await self.call("makesecret", string=label))["secret"])

    async def connect(self, peer_id: str) -> None:  # connect
        await self.call("connect", id=peer_id)

    async def sendcustommsg(self, peer_id: str, payload: bytes) -> None:  # sendcustommsg
        await self.call("sendcustommsg", node_id=peer_id, msg=payload.hex())

    def inject(self, event: NodeEvent) -> None:
        """Hand an event from a plugin hook or notification to `events()` (event-loop thread)."""
        with contextlib.suppress(
            anyio.WouldBlock
        ):  # a stalled consumer loses events, not lightningd
            self._send.send_nowait(event)

    async def events(self) -> AsyncGenerator[NodeEvent, None]:
        self._send, receive = anyio.create_memory_object_stream[NodeEvent](10_000)
        try:
            async with receive:
                async for event in receive:
                    yield event
        finally:
            self._send.close()
            self._send = None

    @reads("listchannels")
    async def graph(self) -> list[GraphChannel]:  # listchannels (no arguments: the whole graph)
        halves = (await self.call("listchannels")).get("channels", [])
        out = [
            GraphChannel(
                source=h["source"],
                destination=h["destination"],
                scid=h["short_channel_id"],
                capacity_sat=int(h.get("amount_msat", 0)) // 1000,
                fee_base_msat=int(h.get("base_fee_millisatoshi", 0)),
                fee_ppm=int(h.get("fee_per_millionth", 0)),
                active=bool(h.get("active", True)),
            )
            for h in halves
        ]
        return sorted(out, key=lambda g: (g.scid, g.source))

    @reads("plugin")
    async def plugin_call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Any method by name (other plugins' RPCs): the same socket, timeout and errors."""
        result = await self.call(method, **params)
        return result if isinstance(result, dict) else {"result": result}


async def _open_channel(node: CLNBackend, scid: str) -> Channel:
    for chan in await node.channels():
        if chan.short_channel_id == scid:
            return chan
    raise NotFound(f"no open channel {scid}")


async def _policy_from(node: CLNBackend, scid: str, source: str) -> dict[str, Any]:
    """What `source` charges on `scid` (listchannels)."""
    for half in (await node.call("listchannels", short_channel_id=scid)).get("channels", []):
        if half["source"] == source:
            return half
    raise NotFound(f"no gossip for channel {scid} from {source[:16]}…")


def _fee(half: dict[str, Any], amount_msat: int) -> int:
    return (
        int(half["base_fee_millisatoshi"])
        + amount_msat * int(half["fee_per_millionth"]) // 1_000_000
    )


def _hop(h: dict[str, Any]) -> dict[str, Any]:
    """A `getroute` hop as `sendpay` takes it."""
    return {
        "id": h["id"],
        "channel": h["channel"],
        "amount_msat": int(h["amount_msat"]),
        "delay": h["delay"],
    }


def _unix(value: Any) -> int | None:
    """A time or duration lightningd gave (seconds), or None if it gave none usable."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return int(value) if 0 <= value < 2**40 else None
