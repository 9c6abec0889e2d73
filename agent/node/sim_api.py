"""The Core Lightning JSON-RPC subset this project uses, answered by one simulated node.

Results have the shapes CLN documents for these commands (only the fields the project reads
are filled in); failures are CLN-style `{code, message}` errors with CLN's numeric codes, so
`CLNBackend` maps them exactly as it would map lightningd's.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

import anyio

from agent.errors import PeerNotConnected
from agent.node.sim import INVOICE_EXPIRY_S, Network
from agent.node.sim_plugins import PluginFailure, SimPlugins, plugins_on
from agent.node.simnode import channel_view
from events import lnsig
from events.errors import HiveError, InsufficientBalance, InvalidParams, NotFound, PaymentFailed

# Core Lightning's error codes (common/jsonrpc_errors.h and the command man pages)
INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601
PAY_ROUTE_NOT_FOUND = 205
PAY_INVOICE_EXPIRED = 207
PAY_STOPPED_RETRYING = 210
FUND_CANNOT_AFFORD = 301
SENDCUSTOMMSG_NOT_CONNECTED = -1
CONNECT_FAILED = 401  # CLN's CONNECT_ALL_ADDRESSES_FAILED
HOOK_TIMEOUT_S = 30.0  # lightningd itself waits forever; its RPC callers do not
CODE_OF = {
    NotFound: INVALID_PARAMS,
    InvalidParams: INVALID_PARAMS,
    PaymentFailed: PAY_STOPPED_RETRYING,
    InsufficientBalance: FUND_CANNOT_AFFORD,
    PeerNotConnected: SENDCUSTOMMSG_NOT_CONNECTED,
}


class RpcFailure(Exception):
    """Raised by a handler to answer with a CLN JSON-RPC error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class SimLightningd:
    """CLN-shaped answers for one node of a simulated `Network`."""

    def __init__(self, network: Network, node_id: str) -> None:
        self.net = network
        self.me = node_id
        self.sendpays: dict[str, dict[str, Any]] = {}
        self.methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            name.removeprefix("rpc_").replace("_", ""): getattr(self, name)
            for name in dir(self)
            if name.startswith("rpc_")
        }

    def dispatch(self, method: str, params: dict[str, Any] | list[Any]) -> Any:
        if isinstance(params, dict) and (host := plugins_on(self.net, self.me)).answers(method):
            return _plugin_answer(host, method, params)  # other plugins (sim_plugins.py)
        handler = self.methods.get(method)
        if handler is None:
            raise RpcFailure(METHOD_NOT_FOUND, f"Unknown command '{method}'")
        if not isinstance(params, dict):
            raise RpcFailure(INVALID_PARAMS, "this simulator takes named parameters only")
        try:
            result = handler(params)
        except (HiveError, KeyError, TypeError, ValueError) as exc:
            raise _failure(method, exc) from None
        if inspect.isawaitable(result):  # an async method: its errors surface when awaited
            return _mapped(method, result)
        return result

    # --- node and peers ------------------------------------------------------------------

    def rpc_getinfo(self, p: dict[str, Any]) -> dict[str, Any]:
        node = self.net.node(self.me)
        return {
            "id": self.me,
            "alias": node.alias,
            "blockheight": self.net.blockheight,
            "num_peers": len(self.net.peers(self.me)),
            "num_active_channels": len(node.channels),
            "network": "regtest",
            "version": "v25.12-hive-sim",
        }

    def rpc_listpeers(self, p: dict[str, Any]) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for scid in self.net.node(self.me).channels:
            other = self.net.channels[scid].other(self.me)
            counts[other] = counts.get(other, 0) + 1
        ids = sorted(set(self.net.peers(self.me)) | set(counts))
        return {
            "peers": [
                {
                    "id": i,
                    "connected": self.net.connected(self.me, i),
                    "num_channels": counts.get(i, 0),
                }
                for i in ids
                if p.get("id") in (None, i)
            ]
        }

    async def rpc_connect(self, p: dict[str, Any]) -> dict[str, Any]:
        """As lightningd: a new connection is answered only once this node's `peer_connected`
        hook chain has answered (a plugin that blocks its hooks stalls its own `connect`)."""
        peer = p["id"].split("@")[0]
        self.net.node(peer)  # NotFound for an unknown node
        if peer == self.me:
            raise RpcFailure(CONNECT_FAILED, "Connection to ourselves")
        if not self.net.reachable(self.me, peer):
            raise RpcFailure(CONNECT_FAILED, "All addresses failed: the peer is unreachable")
        newly = not self.net.connected(self.me, peer)
        answered = self.net.hooks_answered[(self.me, peer)]
        self.net.connect(self.me, peer)
        if newly and self.me in self.net.plugins:  # a plugin is attached: wait for its hook
            with anyio.move_on_after(HOOK_TIMEOUT_S):
                while self.net.hooks_answered[(self.me, peer)] == answered:  # noqa: ASYNC110 - a counter the bridge bumps
                    await anyio.sleep(0.01)
            if self.net.hooks_answered[(self.me, peer)] == answered:
                raise RpcFailure(CONNECT_FAILED, "peer_connected hook did not answer")
        return {"id": peer, "features": "", "direction": "out"}

    # --- channels ------------------------------------------------------------------------

    def _channel_json(self, scid: str) -> dict[str, Any]:
        c = channel_view(self.net, self.me, scid)
        return {
            "peer_id": c.peer_id,
            "peer_connected": self.net.connected(self.me, c.peer_id),
            "state": c.state.value,
            "short_channel_id": scid,
            "total_msat": c.capacity_sat * 1000,
            "to_us_msat": c.local_msat,
            "our_reserve_msat": c.reserve_sat * 1000,
            "updates": {
                "local": {
                    "fee_base_msat": c.policy.base_msat,
                    "fee_proportional_millionths": c.policy.ppm,
                    "htlc_minimum_msat": c.policy.htlc_min_msat,
                    "htlc_maximum_msat": c.policy.htlc_max_msat,
                    "cltv_expiry_delta": c.policy.cltv_delta,
                }
            },
        }

    def rpc_listpeerchannels(self, p: dict[str, Any]) -> dict[str, Any]:
        scids = sorted(self.net.node(self.me).channels)
        chans = [self._channel_json(s) for s in scids]
        if p.get("id"):
            chans = [c for c in chans if c["peer_id"] == p["id"]]
        return {"channels": chans}

    def rpc_listchannels(self, p: dict[str, Any]) -> dict[str, Any]:
        """One channel (`short_channel_id`), or every open one (filtered by `source` or
        `destination` if given), once per direction."""
        if p.get("short_channel_id"):
            chans = [self.net.channel(p["short_channel_id"])]
        else:
            chans = [self.net.channels[s] for s in sorted(self.net.channels)]
            chans = [c for c in chans if c.open]
        out = []
        for chan, source in ((c, s) for c in chans for s in sorted((c.a, c.b))):
            if p.get("source") not in (None, source):
                continue
            if p.get("destination") not in (None, chan.other(source)):
                continue
            pol = chan.policy[source]
            out.append({
                "source": source, "destination": chan.other(source),
                "short_channel_id": chan.scid, "amount_msat": chan.capacity_sat * 1000,
                "base_fee_millisatoshi": pol.base_msat, "fee_per_millionth": pol.ppm,
                "delay": pol.cltv_delta, "htlc_minimum_msat": pol.htlc_min_msat,
                "htlc_maximum_msat": pol.htlc_max_msat, "active": chan.open,
            })  # fmt: skip
        return {"channels": out}

    def rpc_setchannel(self, p: dict[str, Any]) -> dict[str, Any]:
        names = {
            "feebase": "base_msat",
            "feeppm": "ppm",
            "htlcmin": "htlc_min_msat",
            "htlcmax": "htlc_max_msat",
        }
        changes = {names[k]: int(v) for k, v in p.items() if k in names}
        pol = self.net.set_policy(self.me, p["id"], **changes)
        return {"channels": [{
            "short_channel_id": p["id"], "fee_base_msat": pol.base_msat,
            "fee_proportional_millionths": pol.ppm, "minimum_htlc_out_msat": pol.htlc_min_msat,
            "maximum_htlc_out_msat": pol.htlc_max_msat,
        }]}  # fmt: skip

    def rpc_fundchannel(self, p: dict[str, Any]) -> dict[str, Any]:
        scid = self.net.open_channel(self.me, p["id"], int(p["amount"]))
        return {"short_channel_id": scid, "channel_id": hashlib.sha256(scid.encode()).hexdigest()}

    def rpc_close(self, p: dict[str, Any]) -> dict[str, Any]:
        self.net.close_channel(p["id"], self.me)
        return {"type": "mutual"}

    # --- funds -----------------------------------------------------------------------------

    def rpc_listfunds(self, p: dict[str, Any]) -> dict[str, Any]:
        node = self.net.node(self.me)
        outputs = (
            [{"amount_msat": node.onchain_sat * 1000, "status": "confirmed"}]
            if node.onchain_sat
            else []
        )
        chans = [
            {"short_channel_id": s, "our_amount_msat": self.net.channels[s].balance[self.me]}
            for s in sorted(node.channels)
        ]
        return {"outputs": outputs, "channels": chans}

    def rpc_withdraw(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"txid": self.net.withdraw(self.me, int(p["satoshi"]))}

    # --- payments --------------------------------------------------------------------------

    def rpc_invoice(self, p: dict[str, Any]) -> dict[str, Any]:
        expiry = int(p.get("expiry") or INVOICE_EXPIRY_S)
        inv = self.net.invoice(self.me, int(p["amount_msat"]), str(p["label"]), expiry)
        return {
            "bolt11": inv.bolt11, "payment_hash": inv.payment_hash, "payment_secret": "00" * 32,
            "expires_at": inv.expires_at,
        }  # fmt: skip

    def rpc_decode(self, p: dict[str, Any]) -> dict[str, Any]:
        amount, payee, payment_hash, expires = self.net.decode(p["string"])
        made: dict[str, int] = {}  # (an invoice of before 2026-12 says no expiry)
        if expires is not None:
            made = {"created_at": expires - INVOICE_EXPIRY_S, "expiry": INVOICE_EXPIRY_S}
        return {
            "type": "bolt11 invoice",
            "valid": True,
            "amount_msat": amount,
            "payee": payee,
            "payment_hash": payment_hash,
        } | made

    def rpc_listinvoices(self, p: dict[str, Any]) -> dict[str, Any]:
        node = self.net.node(self.me)
        payment_hash = node.labels.get(p.get("label", ""))
        if payment_hash is None:
            return {"invoices": []}
        preimage, amount, paid = node.invoices[payment_hash]
        inv = self.net.invoice_of(self.me, payment_hash)
        expired = not paid and self.net.expired(self.me, payment_hash)
        return {
            "invoices": [
                {
                    "label": p["label"],
                    "payment_hash": payment_hash,
                    "status": "paid" if paid else "expired" if expired else "unpaid",
                    "amount_msat": amount,
                    "amount_received_msat": amount if paid else 0,
                    "payment_preimage": preimage if paid else None,
                    "bolt11": inv.bolt11,
                    "expires_at": inv.expires_at,
                }
            ]
        }

    def rpc_listpays(self, p: dict[str, Any]) -> dict[str, Any]:
        paid = self.net.node(self.me).payments.get(str(p.get("payment_hash", "")))
        if paid is None:
            return {"pays": []}
        return {"pays": [{
            "payment_hash": paid.payment_hash, "status": "complete", "preimage": paid.preimage,
            "amount_msat": paid.amount_msat, "amount_sent_msat": paid.amount_msat + paid.fee_msat,
        }]}  # fmt: skip

    def rpc_pay(self, p: dict[str, Any]) -> dict[str, Any]:
        maxfee = p.get("maxfee")
        _, payee, payment_hash, _ = self.net.decode(str(p["bolt11"]))
        if payee in self.net.nodes and self.net.expired(payee, payment_hash):
            raise RpcFailure(PAY_INVOICE_EXPIRED, "Invoice expired")
        paid = self.net.pay(self.me, p["bolt11"], None if maxfee is None else int(maxfee))
        return {
            "payment_hash": paid.payment_hash, "payment_preimage": paid.preimage,
            "amount_msat": paid.amount_msat, "amount_sent_msat": paid.amount_msat + paid.fee_msat,
            "parts": 1, "status": "complete",
        }  # fmt: skip

    def rpc_getroute(self, p: dict[str, Any]) -> dict[str, Any]:
        src, dst = p.get("fromid", self.me), p["id"]
        exclude = {e for e in p.get("exclude", []) if len(e) == 66}
        amount, final_cltv = int(p["amount_msat"]), int(p.get("cltv", 9))
        hops = self.net._cheapest_path(src, dst, amount, exclude=exclude)
        if not hops:
            raise RpcFailure(PAY_ROUTE_NOT_FOUND, "Could not find a route")
        route, amt, delay = [], amount, final_cltv
        for i in range(len(hops) - 1, -1, -1):
            scid, frm, to = hops[i]
            route.insert(0, {"id": to, "channel": scid, "direction": int(frm > to),
                             "amount_msat": amt, "delay": delay, "style": "tlv"})  # fmt: skip
            if i > 0:
                pol = self.net.channels[scid].policy[frm]
                amt += self.net._fee(pol, amt)
                delay += pol.cltv_delta
        return {"route": route}

    def rpc_sendpay(self, p: dict[str, Any]) -> dict[str, Any]:
        route, payment_hash = p["route"], p["payment_hash"]
        hops, prev = [], self.me
        for hop in route:
            hops.append((hop["channel"], prev, hop["id"]))
            prev = hop["id"]
        final = int(route[-1]["amount_msat"])
        try:
            paid = self.net._send_along(hops, final, payment_hash, None)
        except Exception as exc:  # noqa: BLE001 - any failure is reported through waitsendpay
            self.sendpays[payment_hash] = {"status": "failed", "message": str(exc) or "hop failed"}
            return {"payment_hash": payment_hash, "status": "pending"}
        if paid.amount_msat + paid.fee_msat > int(route[0]["amount_msat"]):
            raise RpcFailure(204, "WIRE_FEE_INSUFFICIENT: the route does not pay enough fees")
        preimage = ""
        node = self.net.node(prev)
        if payment_hash in node.invoices:
            pre, amount, _ = node.invoices[payment_hash]
            node.invoices[payment_hash] = (pre, amount, True)
            preimage = pre
        self.sendpays[payment_hash] = {
            "status": "complete", "payment_hash": payment_hash, "payment_preimage": preimage,
            "amount_msat": final, "amount_sent_msat": paid.amount_msat + paid.fee_msat,
        }  # fmt: skip
        return {"payment_hash": payment_hash, "status": "pending"}

    def rpc_waitsendpay(self, p: dict[str, Any]) -> dict[str, Any]:
        result = self.sendpays.get(p["payment_hash"])
        if result is None:
            raise RpcFailure(208, "Never attempted payment")
        if result["status"] != "complete":
            raise RpcFailure(204, f"failed: {result['message']}")
        return result

    # --- keys and messages ---------------------------------------------------------------

    def rpc_signmessage(self, p: dict[str, Any]) -> dict[str, Any]:
        signed = lnsig.sign(self.net.node(self.me).secret, p["message"])
        return {
            "signature": signed.signature,
            "recid": f"{signed.recid:02x}",
            "zbase": signed.zbase,
        }

    def rpc_checkmessage(self, p: dict[str, Any]) -> dict[str, Any]:
        try:
            signer = lnsig.recover(p["message"], p["zbase"])
        except HiveError:
            raise RpcFailure(INVALID_PARAMS, "zbase is not a valid signature") from None
        if p.get("pubkey"):
            return {"pubkey": p["pubkey"], "verified": signer == p["pubkey"]}
        return {"pubkey": signer, "verified": True}

    def rpc_makesecret(self, p: dict[str, Any]) -> dict[str, Any]:
        label = p.get("string") or bytes.fromhex(p["hex"]).decode("utf-8", "replace")
        secret = hashlib.sha256(self.net.node(self.me).secret + b"makesecret:" + label.encode())
        return {"secret": secret.hexdigest()}

    def rpc_sendcustommsg(self, p: dict[str, Any]) -> dict[str, Any]:
        self.net.send_custommsg(self.me, p["node_id"], bytes.fromhex(p["msg"]))
        return {"status": "Message sent to connectd for delivery"}


def _failure(method: str, exc: Exception) -> RpcFailure:
    if isinstance(exc, RpcFailure):
        return exc
    if isinstance(exc, HiveError):
        return RpcFailure(CODE_OF.get(type(exc), INVALID_PARAMS), exc.message)
    return RpcFailure(INVALID_PARAMS, f"bad parameters for {method}: {exc}")


async def _mapped(method: str, pending: Any) -> Any:
    try:
        return await pending
    except (HiveError, KeyError, TypeError, ValueError) as exc:
        raise _failure(method, exc) from None


async def _plugin_answer(host: SimPlugins, method: str, params: dict[str, Any]) -> Any:
    try:
        return await host.call(method, params)
    except PluginFailure as exc:
        raise RpcFailure(exc.code, exc.message) from None
