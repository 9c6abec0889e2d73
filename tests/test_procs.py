"""The child-process harness (agent/procs.py) on small Python children: a typed error with the
child's output when it dies before it is ready, SIGTERM escalating to SIGKILL, a restart on the
same port, a chatty child that never blocks, and the async pipes the plugin is spoken to over."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import anyio
import pytest

from agent.nostr.local_relay import free_port
from agent.procs import (
    ChildExited,
    ChildNotReady,
    ChildProcess,
    listening,
    port_open,
    printed_a_line,
)

DIES = "import sys; print('cannot open the database', file=sys.stderr); sys.exit(3)"
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""
SERVER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
time.sleep(60)
"""
CHATTY = """
import sys, time
for _ in range(2_000):
    sys.stderr.write("x" * 999 + "\\n")
sys.stderr.flush()
print("ready", flush=True)
time.sleep(60)
"""
ECHO = """
import os
while chunk := os.read(0, 65536):
    os.write(1, chunk)
"""


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


@pytest.mark.parametrize("logged", [False, True], ids=["tail in memory", "log file"])
def test_a_child_that_dies_before_ready_says_why(tmp_path: Path, logged: bool) -> None:
    log = tmp_path / "child.log" if logged else None
    child = ChildProcess(
        "the db server", python(DIES), log=log, ready=listening("127.0.0.1", free_port())
    )
    with pytest.raises(ChildExited) as caught:
        child.start()
    assert caught.value.returncode == 3 and not child.running
    assert "cannot open the database" in caught.value.tail
    assert "the db server exited with 3" in str(caught.value)
    assert "cannot open the database" in str(caught.value)


def test_a_log_file_tail_is_this_lifes_output(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    log.write_text("an earlier life\n")
    child = ChildProcess("child", python(DIES), log=log, ready=printed_a_line)
    with pytest.raises(ChildExited) as caught:
        child.start()
    assert "an earlier life" not in caught.value.tail
    assert log.read_text().startswith("an earlier life\ncannot open the database")


def test_a_child_never_ready_is_stopped(tmp_path: Path) -> None:
    child = ChildProcess(
        "silent",
        python("import time; time.sleep(60)"),
        ready=listening("127.0.0.1", free_port()),
        ready_timeout_s=0.5,
    )
    with pytest.raises(ChildNotReady, match=r"silent was not ready within 0\.5 s"):
        child.start()
    assert not child.running and child.returncode == -signal.SIGTERM


def test_stop_escalates_to_sigkill_for_a_child_ignoring_sigterm() -> None:
    child = ChildProcess("stubborn", python(STUBBORN), stdout="lines", ready=printed_a_line)
    child.start()
    assert child.lines() == ["ready"]
    started = time.monotonic()
    assert child.stop(timeout_s=0.5) == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 5
    assert not child.running


def test_kill_is_a_real_sigkill() -> None:
    child = ChildProcess("stubborn", python(STUBBORN), stdout="lines", ready=printed_a_line)
    child.start()
    assert child.kill() == -signal.SIGKILL
    assert child.kill() == -signal.SIGKILL  # again: nothing left to do


def test_restart_keeps_the_port() -> None:
    port = free_port()
    child = ChildProcess(
        "server", python(SERVER, str(port)), stdout="lines", ready=listening("127.0.0.1", port)
    )
    child.start()
    first = child.pid
    child.kill()
    assert not port_open("127.0.0.1", port)
    child.restart()
    assert child.pid != first and port_open("127.0.0.1", port)
    assert child.lines() == ["listening"]  # this life's output only
    assert child.stop() == -signal.SIGTERM


def test_a_chatty_child_never_blocks_on_its_pipe() -> None:
    """2 MB on stderr before it is ready: far more than a pipe holds, drained by a thread."""
    child = ChildProcess("chatty", python(CHATTY), stdout="lines", ready=printed_a_line)
    child.start()
    try:
        assert child.lines() == ["ready"]
        assert "x" * 999 in child.tail()
    finally:
        child.stop()


@pytest.mark.anyio
async def test_pipes_carry_bytes_both_ways_and_end_at_exit() -> None:
    child = ChildProcess("echo", python(ECHO), stdout="pipe")
    child.start()
    try:
        stdin, stdout = child.pipes()
        message = b"x" * 200_000  # more than a pipe buffer: written in parts, in order
        got = b""
        async with anyio.create_task_group() as tg:
            tg.start_soon(stdin.send, message)
            with anyio.fail_after(10):
                while len(got) < len(message):
                    got += await stdout.receive()
        assert got == message
        assert child.kill() == -signal.SIGKILL
        with anyio.fail_after(10):
            assert [chunk async for chunk in stdout] == []  # end of stream, no hang
        with pytest.raises(BrokenPipeError):
            await stdin.send(b"nobody reads this")
    finally:
        child.close()
