"""The embedded relay picks its own port without racing other processes: a port that was free
when the relay was made and taken before it started does not stop it (it happened in CI)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agent.errors import RelayUnavailable
from agent.nostr.local_relay import EmbeddedRelay
from agent.procs import port_open

pytestmark = pytest.mark.anyio


def occupy(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


@pytest.mark.parametrize("auth", [False, True], ids=["spliced", "nip42"])
async def test_a_port_taken_meanwhile_is_not_fatal(tmp_path: Path, auth: bool) -> None:
    relay = EmbeddedRelay(db_dir=tmp_path / "db", auth=auth)
    taken = relay.port
    with occupy(taken):
        url = await relay.start()
        try:
            port = int(url.rsplit(":", 1)[1])
            assert port != taken and port_open("127.0.0.1", port)
        finally:
            await relay.stop()


async def test_a_named_port_in_use_is_refused_with_its_reason() -> None:
    with occupy(0) as sock:
        port = sock.getsockname()[1]
        relay = EmbeddedRelay(port=port)
        with pytest.raises(RelayUnavailable, match="address already in use"):
            await relay.start()
