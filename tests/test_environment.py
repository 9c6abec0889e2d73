"""The environment CI builds: the dependency clash is exactly the one README names, and the
pyln-client plugin and RPC paths and the cashu wallet path import and run in it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

PLUGIN = Path(__file__).parent / "plugins/minimal_plugin.py"
NODE_ID = "02" + "11" * 32


def test_the_only_unmet_requirements_are_pyln_protos() -> None:
    """README, Dependencies: pyln-proto is installed without its pins; nothing else is unmet."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    problems = [line for line in result.stdout.splitlines() if line.strip()]
    assert problems, "pip check is clean: update README's Dependencies section"
    assert all(line.startswith("pyln-proto ") for line in problems), problems
    assert len(problems) == 3  # bitstring>=4.3, cryptography>=46, coincurve-cp314-fix


class FakeLightningd:
    """A unix socket answering CLN JSON-RPC `getinfo` with CLN's framing (reply + blank line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                decoder, buf = json.JSONDecoder(), ""
                while chunk := conn.recv(65536):
                    buf += chunk.decode()
                    try:
                        request, end = decoder.raw_decode(buf.lstrip())
                    except ValueError:
                        continue
                    buf = buf.lstrip()[end:]
                    reply = {"jsonrpc": "2.0", "id": request["id"], "result": {"id": NODE_ID}}
                    conn.sendall(json.dumps(reply).encode() + b"\n\n")

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def lightningd() -> Iterator[FakeLightningd]:
    with tempfile.TemporaryDirectory(prefix="hive-") as short:  # unix paths are ≤ 107 bytes
        fake = FakeLightningd(Path(short) / "lightning-rpc")
        yield fake
        fake.close()


def test_lightning_rpc_path(lightningd: FakeLightningd) -> None:
    from pyln.client import LightningRpc

    assert LightningRpc(str(lightningd.path)).getinfo()["id"] == NODE_ID


def rpc(proc: subprocess.Popen[str], req_id: int, method: str, params: dict) -> dict:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(
        json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}) + "\n\n"
    )
    proc.stdin.flush()
    decoder, buf = json.JSONDecoder(), ""
    while True:
        buf += proc.stdout.readline()
        try:
            message, _ = decoder.raw_decode(buf.strip())
        except ValueError:
            continue
        buf = ""
        if message.get("id") == req_id:
            return message


def test_plugin_path(lightningd: FakeLightningd) -> None:
    env = {**os.environ, "LIGHTNINGD_PLUGIN": "1", "LIGHTNINGD_VERSION": "v25.12"}
    proc = subprocess.Popen(
        [sys.executable, str(PLUGIN)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        manifest = rpc(proc, 1, "getmanifest", {})["result"]
        assert [m["name"] for m in manifest["rpcmethods"]] == ["env-check"]
        config = {
            "lightning-dir": str(lightningd.path.parent),
            "rpc-file": lightningd.path.name,
            "startup": True,
            "network": "regtest",
            "feature_set": {},
        }
        assert "result" in rpc(proc, 2, "init", {"options": {}, "configuration": config})
        answer = rpc(proc, 3, "env-check", {"name": "hive"})["result"]
        assert answer == {"hello": "hive", "id": NODE_ID}
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_cashu_wallet_path() -> None:
    from cashu.core.htlc import HTLCSecret
    from cashu.core.secret import Secret, SecretKind, Tags
    from cashu.wallet.wallet import Wallet

    secret = Secret(
        kind=SecretKind.HTLC.value,
        data="ab" * 32,
        tags=Tags(
            [
                ["pubkeys", "02" + "22" * 32],
                ["locktime", "1700000000"],
                ["refund", "02" + "33" * 32],
            ]
        ),
    )
    restored = HTLCSecret.from_secret(Secret.deserialize(secret.serialize()))
    assert restored.data == "ab" * 32 and restored.locktime == 1700000000
    assert callable(Wallet.with_db)
