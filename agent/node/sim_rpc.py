"""The simulator's Core Lightning RPC socket.

Serves `SimLightningd` on a unix socket with lightningd's framing (each reply is a JSON object
followed by a blank line), so pyln-client's `LightningRpc` — and through it the real plugin
process — talk to a simulated node exactly as they would to lightningd.  Unix socket paths are
limited to 107 bytes; `short_socket_dir()` gives a directory short enough.
"""

from __future__ import annotations

import inspect
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketStream

from agent.node.sim_api import RpcFailure, SimLightningd

log = logging.getLogger("hive.sim.rpc")
MAX_REQUEST = 16 * 1024 * 1024
MAX_SOCKET_PATH = 107
INTERNAL_ERROR = -32603  # JSON-RPC's


def short_socket_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="hive-", dir="/tmp"))


class SimRpcServer:
    """`async with SimRpcServer(api, path):` serves until the block ends."""

    def __init__(self, api: SimLightningd, path: Path) -> None:
        if len(str(path).encode()) > MAX_SOCKET_PATH:
            raise ValueError(f"unix socket path is over {MAX_SOCKET_PATH} bytes: {path}")
        self.api = api
        self.path = path
        self.calls = 0

    async def __aenter__(self) -> SimRpcServer:
        self._listener = await anyio.create_unix_listener(self.path)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._listener.serve, self._handle)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        await self._listener.aclose()

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id")}
        try:
            result = self.api.dispatch(str(request.get("method")), request.get("params") or {})
            reply["result"] = await result if inspect.isawaitable(result) else result
        except RpcFailure as failure:
            reply["error"] = {"code": failure.code, "message": failure.message}
        except Exception as exc:  # noqa: BLE001 — one request never takes the socket down
            # (a simulated plugin given a wrong-typed parameter, say: lightningd answers a
            # plugin's crash with an error too, and goes on serving)
            log.warning("sim rpc: %.40s failed (%s)", request.get("method"), type(exc).__name__)
            reply["error"] = {"code": INTERNAL_ERROR, "message": f"{type(exc).__name__}"}
        return reply

    async def _handle(self, stream: SocketStream) -> None:
        decoder, buffer = json.JSONDecoder(), ""
        async with stream:
            while True:
                try:
                    chunk = await stream.receive(65536)
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                buffer += chunk.decode("utf-8", "replace")
                if len(buffer) > MAX_REQUEST:
                    return
                while buffer.strip():
                    try:
                        request, end = decoder.raw_decode(buffer.lstrip())
                    except ValueError:
                        break  # incomplete: wait for more bytes
                    buffer = buffer.lstrip()[end:]
                    reply = await self.answer(request) if isinstance(request, dict) else {
                        "jsonrpc": "2.0", "id": None,
                        "error": {"code": -32600, "message": "request must be an object"},
                    }  # fmt: skip
                    try:
                        await stream.send(json.dumps(reply).encode() + b"\n\n")
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        return  # the client went away (a plugin killed mid-call)
