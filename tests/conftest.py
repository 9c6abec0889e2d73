"""Shared fixtures: real components in session fixtures, polled until ready.

A component that is missing fails the run under CI=true; elsewhere the test is skipped with a
reason that says how to install it (`./scripts/dev setup`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
HIVE_AGENT = str(VENV_BIN / "hive-agent")
IN_CI = os.environ.get("CI", "").lower() == "true"

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.load_profile("default")


def missing_component(what: str, how: str) -> None:
    """Fail under CI (a missing component is a broken build), skip with a reason elsewhere."""
    message = f"{what} is not available: {how}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nostr-sdk's futures run on asyncio, not trio


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")


class RelayProcess:
    """`hive-agent relay` running out of process (nostr-sdk's LocalRelay)."""

    def __init__(self, db: Path | None = None) -> None:
        self.db = db
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> str:
        cmd = [HIVE_AGENT, "relay", "--port", "0"]
        if self.db is not None:
            cmd += ["--db", str(self.db)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("ws://"):
            _, err = self.proc.communicate(timeout=5)
            raise RuntimeError(f"relay did not start: {self.url!r} {err!r}")
        host, port = self.url.removeprefix("ws://").rsplit(":", 1)
        wait_for_port(host, int(port))
        return self.url

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.communicate(timeout=10)


@pytest.fixture(scope="session")
def relay_url() -> Iterator[str]:
    """One real relay for the whole session."""
    relay = RelayProcess()
    yield relay.start()
    relay.stop()


@pytest.fixture(scope="session")
def nostr_tools() -> Iterator[object]:
    """nostr-tools (node) driven over a line protocol; see tests/interop/nt.mjs."""
    from tests.interop.nostr_tools import NostrTools

    node = shutil.which("node")
    if node is None or not (ROOT / "tests/interop/node_modules/nostr-tools").is_dir():
        missing_component("nostr-tools under node", "run ./scripts/dev setup (needs node and npm)")
    tools = NostrTools(node or "node", ROOT / "tests/interop/nt.mjs")
    yield tools
    tools.close()
