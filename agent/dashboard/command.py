"""`hive-agent dashboard [--port N] [--host H]`: serves the dashboard for an agent home (beside
a running `hive-agent node` or `run` on the same home) until interrupted.  Prints the URL with
its access token once; binding anywhere but loopback prints a warning (still token-protected)."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import uvicorn

from agent.advisory.policy import PolicyConfig
from agent.cli.common import Emit
from agent.dashboard.actions import HomeOperator, Operator
from agent.dashboard.security import Gate
from agent.dashboard.server import Context, FleetView, create_app
from agent.logs import log_event
from agent.node.backend import NodeBackend
from agent.settings import Settings
from agent.store import Store

DEFAULT_PORT = 8787
log = logging.getLogger("hive.dashboard")


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hosts_for(host: str, port: int) -> set[str] | None:
    """The Host header values the server answers to (any, when bound to every address)."""
    if host in ("0.0.0.0", "::"):  # noqa: S104 - the operator asked for it (and was warned)
        return None
    names = {host} | ({"127.0.0.1", "localhost", "::1"} if loopback(host) else set())
    names = {f"[{name}]" if ":" in name else name for name in names}  # an IPv6 address: [..]
    return {f"{name}:{port}" for name in names} | (names if port == 80 else set())  # (80: no port)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (it re-raises SIGTERM after stopping): the
    command stops it on SIGINT/SIGTERM itself and exits 0, as `hive-agent node` does."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Dashboard:
    """A bound dashboard: `url` (with the token) is known before it serves."""

    def __init__(
        self,
        store_file: Path,
        operator: Operator,
        policy: PolicyConfig,
        host: str,
        port: int,
        *,
        node: NodeBackend | None = None,
        fleet: FleetView | None = None,
        relays: Callable[[], list[dict[str, Any]]] | None = None,
    ):
        self.sock = bind(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.gate = Gate(hosts_for(host, self.port))
        self.context = Context(
            store_file, operator, self.gate, policy, node=node, fleet=fleet, relays=relays
        )
        self.app = create_app(self.context)
        config = uvicorn.Config(  # (log_config None: the process's own logging, untouched —
            self.app,  # inside the plugin uvicorn's dictConfig failed on lightningd's set-up)
            log_level="warning",
            log_config=None,
            timeout_graceful_shutdown=1,
            lifespan="off",
        )
        self.server = _Server(config)

    @property
    def base(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    @property
    def home(self) -> str:
        """The dashboard's pages: its address and its secret prefix (no token)."""
        return f"{self.base}{self.gate.root}"

    @property
    def url(self) -> str:
        return f"{self.home}/?token={self.gate.token}"

    async def serve(self) -> None:
        await self.server.serve(sockets=[self.sock])

    def stop(self) -> None:
        self.context.closing = True
        self.server.should_exit = True


def cmd_dashboard(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    serve_home(settings, args, emit)
    return 0


def serve_home(settings: Settings, args: argparse.Namespace, emit: Emit) -> None:
    """Serve the dashboard of an agent home until SIGINT/SIGTERM (`dashboard`, and `demo
    --dashboard` on the advisory act's node)."""
    host, port = getattr(args, "host", "127.0.0.1"), getattr(args, "port", 0)
    policy = PolicyConfig.load(settings.root / "policy.json")
    Store(settings.store_file).close()  # made (and migrated) before serving
    board = Dashboard(settings.store_file, HomeOperator(settings, args), policy, host, port)
    if not loopback(host):
        log.warning(
            "the dashboard listens on %s, not only on this machine; anyone who can reach it "
            "and learns the token can approve commands (prefer an SSH tunnel)",
            host,
        )
    log_event(log, logging.INFO, "dashboard_started", host=host, port=board.port)
    emit(
        {"url": board.url, "host": host, "port": board.port},
        f"dashboard: open {board.url}\n(the token is asked once; keep this URL to yourself)",
    )
    anyio.run(_serve_until_signalled, board, backend="asyncio")


async def _serve_until_signalled(board: Dashboard) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:

            async def stop() -> None:
                async for _ in signals:
                    board.stop()
                    return

            tg.start_soon(stop)
            await board.serve()
            tg.cancel_scope.cancel()
    log_event(log, logging.INFO, "dashboard_stopped", port=board.port)


def register(sub: Any, relay_opt: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "dashboard", parents=[relay_opt], help="a local web dashboard (approvals, advisors, node)"
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--policy", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_dashboard)
