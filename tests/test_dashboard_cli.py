"""`hive-agent dashboard` as a process: it prints its URL with the token (JSON under --json),
answers 401 without it, opens a session with it, warns when bound beyond loopback, and stops
cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

HIVE_AGENT = str(Path(sys.executable).with_name("hive-agent"))


def start(home: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    child = subprocess.Popen(
        [HIVE_AGENT, "--home", str(home), "--json", "dashboard", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HIVE_LOG": "info"},
    )
    assert child.stdout is not None
    first = json.loads(child.stdout.readline())
    return child, first


def stop(child: subprocess.Popen[str]) -> str:
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=10)
    assert child.returncode == 0
    return err


def test_the_command_prints_its_url_and_guards_every_request(tmp_path: Path) -> None:
    child, first = start(tmp_path / "home")
    try:
        url = str(first["url"])
        base, token = url.split("/?token=")
        address = f"http://127.0.0.1:{first['port']}"
        root = base.removeprefix(address)  # the secret prefix every page lives under
        assert base.startswith(address) and len(root) >= 16 and len(token) >= 40
        with httpx.Client(base_url=base) as client:
            assert client.get("/approvals").status_code == 401
            assert client.get("/approvals?token=nope").status_code == 401
            assert client.get(f"{address}/approvals?token={token}").status_code == 404
            opened = client.get(f"/approvals?token={token}")
            assert opened.status_code == 303 and opened.headers["location"] == f"{root}/approvals"
            page = client.get("/approvals")
            assert page.status_code == 200 and "Nothing waits for approval" in page.text
    finally:
        err = stop(child)
    assert "event=dashboard_started" in err and "event=session_opened" in err
    assert token not in err  # the token is printed once, to stdout, never logged


def test_beyond_loopback_it_warns(tmp_path: Path) -> None:
    child, first = start(tmp_path / "home", "--host", "0.0.0.0")  # noqa: S104
    try:
        prefix = "/" + str(first["url"]).split("/?token=")[0].split("/", 3)[3]  # the secret one
        local = f"http://127.0.0.1:{first['port']}{prefix}"
        assert httpx.get(f"{local}/approvals").status_code == 401  # still token-protected
    finally:
        err = stop(child)
    assert "not only on this machine" in err
