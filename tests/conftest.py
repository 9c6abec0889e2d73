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
from collections.abc import Callable, Iterator
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

    def __init__(self, db: Path | None = None, *, auth: bool = False, policy: bool = False):
        self.db = db
        self.auth = auth
        self.flags = [*(["--auth"] if auth else []), *([] if policy else ["--open"])]
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> str:
        cmd = [HIVE_AGENT, "relay", "--port", "0", *self.flags]
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

    def kill(self) -> None:
        """SIGKILL: the relay dies without closing anything, like a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)

    def restart(self) -> str:
        """Start again on the same port (and the same database, if any)."""
        port = int(self.url.rsplit(":", 1)[1])
        cmd = [HIVE_AGENT, "relay", "--port", str(port), *self.flags]
        if self.db is not None:
            cmd += ["--db", str(self.db)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == self.url
        wait_for_port("127.0.0.1", port)
        return self.url


class NostrRelayProcess:
    """PyPI `nostr-relay` (a different implementation) out of process, in its own venv."""

    BIN = ROOT / ".venv-nostr-relay/bin/nostr-relay"

    def __init__(self, workdir: Path, port: int = 0) -> None:
        from agent.nostr.local_relay import free_port

        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        if not self.BIN.exists():
            missing_component("PyPI nostr-relay", "run ./scripts/dev setup")
        self.workdir.mkdir(parents=True, exist_ok=True)
        template = (ROOT / "tests/relays/nostr-relay.yaml").read_text()
        config = self.workdir / "nostr-relay.yaml"
        db = self.workdir / "relay.sqlite3"
        config.write_text(template.replace("{port}", str(self.port)).replace("{db}", str(db)))
        log = (self.workdir / "relay.log").open("ab")
        self.proc = subprocess.Popen(
            [str(self.BIN), "-c", str(config), "serve", "--use-uvicorn"],
            stdout=log,
            stderr=log,
            cwd=self.workdir,
        )
        log.close()
        wait_for_port("127.0.0.1", self.port, timeout=30)
        return self.url

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self) -> str:
        """Start again on the same port, with the same database."""
        return self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[Callable[..., RelayProcess | NostrRelayProcess]]:
    """Make relays for one test; every one is stopped at teardown, even if the test fails.

    relays() is nostr-sdk's relay in memory, relays(db=True) with LMDB storage,
    relays(auth=True) requiring NIP-42, relays(policy=True) with the write policy a reachable
    relay runs (the others are loopback test relays started with --open),
    relays(kind="nostr-relay") the PyPI implementation.
    """
    made: list[RelayProcess | NostrRelayProcess] = []

    def make(
        *, db: bool = False, auth: bool = False, policy: bool = False, kind: str = "nostr-sdk"
    ):
        where = tmp_path / f"relay{len(made)}"
        if kind == "nostr-relay":
            relay: RelayProcess | NostrRelayProcess = NostrRelayProcess(where)
        else:
            relay = RelayProcess(where if db else None, auth=auth, policy=policy)
        made.append(relay)
        return relay

    yield make
    for relay in made:
        relay.stop()


@pytest.fixture(scope="session")
def nostr_relay_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One PyPI nostr-relay for the whole session."""
    relay = NostrRelayProcess(tmp_path_factory.mktemp("nostr-relay"))
    yield relay.start()
    relay.stop()


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


@pytest.fixture(scope="session")
def mint_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Nutshell mint (the `cashu` package's `mint`, FakeWallet backend) on 127.0.0.1."""
    from agent.escrow.mint import MintProcess
    from events.errors import MintUnavailable

    if not (Path(sys.executable).with_name("mint")).exists():
        missing_component("the Nutshell mint", "run ./scripts/dev setup (installs cashu)")
    mint = MintProcess(tmp_path_factory.mktemp("mint"))
    try:
        url = mint.start()
    except MintUnavailable as exc:
        missing_component("the Nutshell mint", str(exc))
    yield url
    mint.stop()
