"""Playing lightningd's side of the plugin protocol, for a simulated node.

No lightningd can run here, so tests, the demo and benchmarks start the *real* plugin
(`plugin_shim.py`) as a child process and speak CLN's plugin JSON-RPC to it over stdin/stdout:
`getmanifest`, `init` (with a configuration pointing at the simulator's RPC socket), hook
calls, notifications and method calls — the same messages, in the same framing, lightningd
sends.  `bridge()` turns a simulated node's events into the hooks and notifications lightningd
would send for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

from agent.node.models import CustomMsg, Forward, PeerConnected, PeerDisconnected
from agent.node.sim import Network
from agent.procs import ChildProcess, PipeReader, PipeWriter

ROOT = Path(__file__).resolve().parent.parent.parent
PLUGIN = ROOT / "plugin_shim.py"


class PluginError(Exception):
    """Raised when the plugin answers a request with a JSON-RPC error."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", str(error)))
        self.error = error


class PluginProcess:
    """The real plugin process, driven as lightningd drives it."""

    def __init__(
        self,
        lightning_dir: Path,
        rpc_file: str = "lightning-rpc",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.lightning_dir = lightning_dir
        self.rpc_file = rpc_file
        self.extra_env = dict(env or {})  # added to this process's environment (tests)
        self.process: ChildProcess | None = None
        self.logs: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []  # the plugin's own topics: method, params
        self.manifest: dict[str, Any] = {}
        self._next_id = 0
        self._waiting: dict[int, tuple[anyio.Event, list[dict[str, Any]]]] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._stdin: PipeWriter | None = None
        self.exit_code: int | None = None  # 0 after a clean exit on `shutdown`; -9 if killed

    async def __aenter__(self) -> PluginProcess:
        env = {
            **os.environ,
            **self.extra_env,
            "LIGHTNINGD_PLUGIN": "1",
            "LIGHTNINGD_VERSION": "v25.12-hive-sim",
        }
        self.process = ChildProcess(
            "the plugin",
            [sys.executable, str(PLUGIN)],
            env=env,
            cwd=ROOT,
            log=self.lightning_dir / "plugin.stderr",
            stdout="pipe",
        )
        self.process.start()  # no readiness here: getmanifest and init are start()
        self._stdin, stdout = self.process.pipes()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._read, stdout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None:
            with anyio.move_on_after(5):
                if self.process.running:
                    # a plugin that already died (SIGKILL) has no stdin to read `shutdown` from
                    with contextlib.suppress(OSError):
                        await self.notify("shutdown", {})
                await self.process.exited(5)
            self.exit_code = self.process.kill()  # SIGKILL only if it is still there
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
        if self.process is not None:
            self.process.close()

    async def _read(self, stdout: PipeReader) -> None:
        decoder, buffer = json.JSONDecoder(), ""
        async for chunk in stdout:
            buffer += chunk.decode("utf-8", "replace")
            while True:
                stripped = buffer.lstrip()
                try:
                    message, end = decoder.raw_decode(stripped)
                except ValueError:
                    break
                buffer = stripped[end:]
                self._dispatch(message)
        # the plugin is gone: nobody will answer what is still waiting (lightningd fails them)
        for req_id, (event, box) in list(self._waiting.items()):
            box.append({"id": req_id, "error": {"code": -4, "message": "plugin exited"}})
            event.set()
        self._waiting.clear()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message and message["id"] in self._waiting:
            event, box = self._waiting.pop(message["id"])
            box.append(message)
            event.set()
        elif message.get("method") == "log":
            self.logs.append(message.get("params", {}))
        elif "id" not in message and "method" in message:
            self.notifications.append(message)

    async def _send(self, obj: dict[str, Any]) -> None:
        assert self._stdin is not None
        await self._stdin.send(json.dumps(obj).encode() + b"\n\n")

    async def request(self, method: str, params: dict[str, Any], limit_s: float = 60) -> Any:
        """Send a request lightningd-style and wait for the reply (PluginError on error)."""
        self._next_id += 1
        req_id = self._next_id
        done, box = anyio.Event(), []
        self._waiting[req_id] = (done, box)
        await self._send({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params})
        with anyio.fail_after(limit_s):
            await done.wait()
        reply = box[0]
        if "error" in reply:
            raise PluginError(reply["error"])
        return reply.get("result")

    async def notify(self, topic: str, params: dict[str, Any]) -> None:
        await self._send({"jsonrpc": "2.0", "method": topic, "params": params})

    async def start(self, options: dict[str, Any] | None = None) -> tuple[float, float]:
        """getmanifest then init; returns how long each took (CLN allows 60 s each)."""
        started = time.monotonic()
        self.manifest = await self.request("getmanifest", {"allow-deprecated-apis": False})
        manifest_s = time.monotonic() - started
        config = {
            "lightning-dir": str(self.lightning_dir),
            "rpc-file": self.rpc_file,
            "startup": True,
            "network": "regtest",
            "feature_set": {"init": "", "node": "", "channel": "", "invoice": ""},
        }
        started = time.monotonic()
        result = await self.request("init", {"options": options or {}, "configuration": config})
        if isinstance(result, dict) and "disable" in result:
            raise PluginError({"message": f"plugin disabled itself: {result['disable']}"})
        return manifest_s, time.monotonic() - started

    async def setconfig(self, name: str, val: str | list[str] | None) -> Any:
        """`lightning-cli setconfig name val` on a dynamic option: lightningd calls the plugin's
        `setconfig` with {config, val} (an array of strings for a multi option)."""
        params: dict[str, Any] = {"config": name}
        if val is not None:
            params["val"] = val
        return await self.request("setconfig", params)

    async def call(self, method: str, **params: Any) -> Any:
        """Call one of the plugin's RPC methods, as `lightning-cli method` would."""
        return await self.request(method, params)


async def bridge(network: Network, node_id: str, plugin: PluginProcess) -> None:
    """Forever: hand the simulated node's events to the plugin as lightningd would."""
    send, receive = anyio.create_memory_object_stream[Any](10_000)
    network.listeners[node_id].append(send.send_nowait)
    network.plugins.add(node_id)
    try:
        async with receive:
            async for event in receive:
                await deliver(plugin, event)
                if isinstance(event, PeerConnected):  # the hook chain answered: a `connect`
                    network.hooks_answered[(node_id, event.peer_id)] += 1  # waiting may return
    finally:
        network.plugins.discard(node_id)
        network.listeners[node_id].remove(send.send_nowait)
        send.close()


async def deliver(plugin: PluginProcess, event: Any) -> Any:
    if isinstance(event, CustomMsg):
        return await plugin.request(
            "custommsg", {"peer_id": event.peer_id, "payload": event.payload.hex()}
        )
    if isinstance(event, PeerConnected):
        await plugin.request("peer_connected", {"peer": {"id": event.peer_id, "direction": "in"}})
        return await plugin.notify("connect", {"connect": {"id": event.peer_id, "direction": "in"}})
    if isinstance(event, PeerDisconnected):
        return await plugin.notify("disconnect", {"disconnect": {"id": event.peer_id}})
    if isinstance(event, Forward):
        return await plugin.notify(
            "forward_event", {"forward_event": event.model_dump(mode="json")}
        )
    return None


def plugin_stderr(lightning_dir: Path) -> str:
    path = lightning_dir / "plugin.stderr"
    return path.read_text(errors="replace") if path.exists() else ""
