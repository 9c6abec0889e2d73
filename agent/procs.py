"""One harness for the child processes tests, benchmarks and the demo start.

Relays (`hive-agent relay`, PyPI nostr-relay), the Nutshell mint, the plugin and the `hive-agent
node` of the crash tests are all a `ChildProcess`: a command with its environment and working
directory, where its output goes, how to tell that it is ready, and how it ends.

- Output: stderr (and stdout, unless captured) is appended to a log file, or, without one, read
  by a thread into a bounded tail, so a child never blocks on a full pipe.  stdout="lines"
  keeps stdout's lines (a relay prints its URL there); stdout="pipe" leaves stdin and stdout
  to the owner, as async byte streams (the plugin's JSON-RPC).
- start() polls `ready` until it holds.  A child that exits first raises ChildExited, one that
  is not ready in time ChildNotReady (after it is stopped); both carry the tail of its output.
- stop() is SIGTERM, then SIGKILL after a timeout; kill() is SIGKILL at once, a crash;
  restart() runs `argv` again (the same port and database, if the command names them).
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Literal

import anyio
import anyio.lowlevel

Stdout = Literal["log", "lines", "pipe"]
Ready = Callable[["ChildProcess"], bool]
TAIL_LINES = 40
TAIL_BYTES = 8_192
DRAIN_JOIN_S = 5.0


class ChildFailed(RuntimeError):
    """A child is not running when it should be; `tail` is the end of its output."""

    def __init__(self, name: str, what: str, returncode: int | None, tail: str) -> None:
        shown = f"\n--- last output of {name} ---\n{tail}" if tail.strip() else ""
        super().__init__(f"{name} {what}{shown}")
        self.name, self.returncode, self.tail = name, returncode, tail


class ChildExited(ChildFailed):
    """The child exited before it was ready."""


class ChildNotReady(ChildFailed):
    """The child was not ready within its time (it has been stopped)."""


def port_open(host: str, port: int) -> bool:
    """Something accepts TCP connections on host:port right now."""
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def listening(host: str, port: int) -> Ready:
    """Readiness: the port accepts connections."""
    return lambda _child: port_open(host, port)


def printed_a_line(child: ChildProcess) -> bool:
    """Readiness: the child wrote its first line to stdout (stdout="lines")."""
    return bool(child.lines())


class ChildProcess:
    """One child process: started, checked for readiness, stopped or killed, restarted."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log: Path | None = None,
        stdout: Stdout = "log",
        ready: Ready | None = None,
        ready_timeout_s: float = 30.0,
        poll_s: float = 0.05,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)  # an owner may change it before restart() (e.g. pin a port)
        self.env = dict(env) if env is not None else None
        self.cwd, self.log, self.stdout = cwd, log, stdout
        self.ready, self.ready_timeout_s, self.poll_s = ready, ready_timeout_s, poll_s
        self.stop_timeout_s = stop_timeout_s
        self.popen: subprocess.Popen[bytes] | None = None
        self._lines: list[str] = []
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._drains: list[threading.Thread] = []
        self._kept = threading.Lock()  # drain threads append, callers read
        self._log_from = 0

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    @property
    def returncode(self) -> int | None:
        """None while running (or never started); -N after death by signal N."""
        return None if self.popen is None else self.popen.poll()

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def lines(self) -> list[str]:
        """What this life of the child has written to stdout, by line (stdout="lines")."""
        with self._kept:
            return list(self._lines)

    def tail(self) -> str:
        """The end of this life's output: the log file's, or what the drain threads kept."""
        if self.log is None:
            with self._kept:
                return "\n".join(self._tail)
        with contextlib.suppress(OSError), self.log.open("rb") as f:
            f.seek(max(self._log_from, f.seek(0, os.SEEK_END) - TAIL_BYTES))
            lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-TAIL_LINES:])
        return ""

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the child and wait until it is ready (ChildExited, ChildNotReady)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.popen = self._spawn()
        try:
            self._await_ready(self.popen)
        except BaseException:
            self.stop()
            raise

    def restart(self) -> None:
        """Stop the child if it runs, then start `argv` again."""
        self.stop()
        self.start()

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL if the child is still there after the timeout; its exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(self.stop_timeout_s if timeout_s is None else timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._join_drains()
        return self.popen.returncode

    def kill(self) -> int | None:
        """SIGKILL: the child dies without closing anything, like a crash."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._join_drains()
        return self.popen.returncode

    def wait(self, timeout_s: float | None = None) -> int:
        """Wait for the child to exit by itself (TimeoutError if it does not in time)."""
        assert self.popen is not None, f"{self.name} was never started"
        try:
            code = self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} still runs after {timeout_s} s") from None
        self._join_drains()
        return code

    def close(self) -> None:
        """Kill the child if it still runs and close the pipes an owner had (stdout="pipe")."""
        self.kill()
        if self.popen is not None:
            for stream in (self.popen.stdin, self.popen.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()

    # --- from async code -----------------------------------------------------------------

    async def astart(self) -> None:
        """start() in a worker thread, so the event loop runs on while the child comes up."""
        await anyio.to_thread.run_sync(self.start)

    async def akill(self) -> int | None:
        return await anyio.to_thread.run_sync(self.kill)

    async def exited(self, timeout_s: float) -> int | None:
        """Wait up to timeout_s for the child to exit by itself; its exit code, or None."""
        with anyio.move_on_after(timeout_s):
            while self.running:  # noqa: ASYNC110 - nothing signals a Popen child's exit
                await anyio.sleep(0.01)
        return self.returncode

    def pipes(self) -> tuple[PipeWriter, PipeReader]:
        """The child's stdin and stdout (stdout="pipe") as async byte streams."""
        assert self.popen is not None and self.popen.stdin is not None
        assert self.popen.stdout is not None, f"{self.name} was not started with stdout='pipe'"
        return PipeWriter(self.popen.stdin.fileno()), PipeReader(self.popen.stdout.fileno())

    # --- internals -----------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self._kept:
            self._lines.clear()
            self._tail.clear()
        self._drains = []
        with contextlib.ExitStack() as stack:
            log: int | IO[bytes] = subprocess.PIPE
            if self.log is not None:
                self.log.parent.mkdir(parents=True, exist_ok=True)
                log = stack.enter_context(self.log.open("ab"))
                self._log_from = log.tell()
            captured = self.stdout != "log"
            popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE if self.stdout == "pipe" else subprocess.DEVNULL,
                stdout=subprocess.PIPE if captured or self.log is None else log,
                stderr=subprocess.STDOUT if not captured and self.log is None else log,
                env=self.env,
                cwd=self.cwd,
            )
        self._start_drains(popen)
        return popen

    def _start_drains(self, popen: subprocess.Popen[bytes]) -> None:
        streams: list[tuple[IO[bytes] | None, Callable[[str], None]]] = [
            (popen.stderr, self._to_tail)
        ]
        if self.stdout == "lines":
            streams.append((popen.stdout, self._to_lines))
        elif self.stdout == "log":
            streams.append((popen.stdout, self._to_tail))  # merged with stderr, no log file
        for stream, sink in streams:
            if stream is not None:
                thread = threading.Thread(
                    target=_drain, args=(stream, sink), name=f"drain {self.name}", daemon=True
                )
                thread.start()
                self._drains.append(thread)

    def _to_tail(self, line: str) -> None:
        with self._kept:
            self._tail.append(line)

    def _to_lines(self, line: str) -> None:
        with self._kept:
            self._lines.append(line)
            self._tail.append(line)

    def _join_drains(self) -> None:
        for thread in self._drains:
            thread.join(DRAIN_JOIN_S)  # a grandchild holding the pipe must not hang us

    def _await_ready(self, popen: subprocess.Popen[bytes]) -> None:
        if self.ready is None:
            return
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            code = popen.poll()
            if code is not None:
                self._join_drains()
                raise ChildExited(
                    self.name, f"exited with {code} before it was ready", code, self.tail()
                )
            if self.ready(self):
                return
            if time.monotonic() >= deadline:
                self.stop()
                what = f"was not ready within {self.ready_timeout_s:g} s"
                raise ChildNotReady(self.name, what, None, self.tail())
            time.sleep(self.poll_s)


def _drain(stream: IO[bytes], sink: Callable[[str], None]) -> None:
    with stream:
        for raw in iter(stream.readline, b""):
            sink(raw.decode("utf-8", "replace").rstrip("\r\n"))


class PipeReader:
    """The read end of a child's pipe, read without blocking the event loop."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd

    async def receive(self, max_bytes: int = 65_536) -> bytes:
        """The next bytes the child wrote; b"" once its end is closed (it exited)."""
        await anyio.lowlevel.checkpoint()
        while True:
            try:
                return os.read(self.fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self.fd)

    def __aiter__(self) -> PipeReader:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.receive()
        if not chunk:
            raise StopAsyncIteration
        return chunk


class PipeWriter:
    """The write end of a child's pipe; one message at a time, so messages never interleave."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._lock = anyio.Lock()

    async def send(self, data: bytes) -> None:
        """Write all of data; BrokenPipeError once the child is gone."""
        async with self._lock:
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(self.fd, view) :]
                except BlockingIOError:
                    await anyio.wait_writable(self.fd)
