"""Shared fixtures: real components in session fixtures, polled until ready.

A component that is missing fails the test, saying how to install it (`./scripts/dev setup`,
which the README's test command runs first): a test that cannot reach its real component has
not passed, in CI or anywhere else.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from agent.procs import ChildProcess, listening, port_open

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
HIVE_AGENT = str(VENV_BIN / "hive-agent")

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.load_profile("default")


def missing_component(what: str, how: str) -> None:
    """Fail, naming the component and how to install it (never a silent skip)."""
    pytest.fail(f"{what} is not available: {how}")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nostr-sdk's futures run on asyncio, not trio


class RelayProcess:
    """`hive-agent relay` running out of process (nostr-sdk's LocalRelay)."""

    def __init__(self, db: Path | None = None, *, auth: bool = False, policy: bool = False):
        self.db = db
        self.auth = auth
        self.flags = [*(["--auth"] if auth else []), *([] if policy else ["--open"])]
        self.url = ""
        self.child = ChildProcess(
            "hive-agent relay", self._cmd(0), stdout="lines", ready=self._listening, poll_s=0.02
        )

    def _cmd(self, port: int) -> list[str]:
        db = ["--db", str(self.db)] if self.db is not None else []
        return [HIVE_AGENT, "relay", "--port", str(port), *self.flags, *db]

    @staticmethod
    def _listening(child: ChildProcess) -> bool:
        """Ready once it printed its URL and the port accepts connections."""
        lines = child.lines()
        if not lines:
            return False
        if not lines[0].startswith("ws://"):
            raise RuntimeError(f"relay did not start: {lines[0]!r}\n{child.tail()}")
        host, port = lines[0].removeprefix("ws://").rsplit(":", 1)
        return port_open(host, int(port))

    def start(self) -> str:
        self.child.start()
        self.url = self.child.lines()[0]
        return self.url

    def stop(self) -> int | None:
        return self.child.stop()

    def kill(self) -> None:
        """SIGKILL: the relay dies without closing anything, like a crash."""
        self.child.kill()

    def restart(self) -> str:
        """Start again on the same port (and the same database, if any)."""
        self.child.argv = self._cmd(int(self.url.rsplit(":", 1)[1]))
        self.child.restart()
        assert self.child.lines()[0] == self.url
        return self.url


class NostrRelayProcess:
    """PyPI `nostr-relay` (a different implementation) out of process, in its own venv."""

    BIN = ROOT / ".venv-nostr-relay/bin/nostr-relay"

    def __init__(self, workdir: Path, port: int = 0) -> None:
        from agent.nostr.local_relay import free_port

        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.config = workdir / "nostr-relay.yaml"
        self.child = ChildProcess(
            "PyPI nostr-relay",
            [str(self.BIN), "-c", str(self.config), "serve", "--use-uvicorn"],
            cwd=workdir,
            log=workdir / "relay.log",
            ready=listening("127.0.0.1", self.port),
            poll_s=0.02,
        )

    def start(self) -> str:
        if not self.BIN.exists():
            missing_component("PyPI nostr-relay", "run ./scripts/dev setup")
        self.workdir.mkdir(parents=True, exist_ok=True)
        template = (ROOT / "tests/relays/nostr-relay.yaml").read_text()
        db = self.workdir / "relay.sqlite3"
        self.config.write_text(template.replace("{port}", str(self.port)).replace("{db}", str(db)))
        self.child.start()
        return self.url

    def kill(self) -> None:
        self.child.kill()

    def restart(self) -> str:
        """Start again on the same port, with the same database."""
        return self.start()

    def stop(self) -> None:
        self.child.stop()


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
