"""pyln-client's `LightningRpc` with a socket that gives up, and what a reply lightningd never
sends becomes (`malformed`, NODE_UNAVAILABLE).

pyln reads lightningd's reply from a socket with no timeout: a call lightningd never answers
holds its thread until lightningd closes the socket.  `CLNBackend` runs each call in a worker
thread under its own timeout and abandons the thread when that passes, so every unanswered
call used to leave one thread blocked behind — a lightningd that stalls for an hour cost the
plugin a thread per call tried meanwhile.  Here the socket itself times out (a little after
the backend's own limit, which decides), the thread ends, and the socket is closed whatever
happened (pyln left it open when a reply was malformed).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from pyln.client import LightningRpc, RpcError
from pyln.client.lightning import UnixSocket

from agent.errors import NodeUnavailable
from events.errors import HiveError

GRACE_S = 1.0  # the socket outlives the backend's timeout by this much: the backend decides
# what reading a reply Core Lightning never sends raises: pyln's own checks and ours below (not
# JSON, not UTF-8, another request's id, no result: ValueError, TypeError), the backend's
# reading (a field missing or of the wrong type: KeyError, IndexError, AttributeError,
# pydantic's ValidationError) and JSON nested past the stack (RecursionError)
MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError)
P = ParamSpec("P")
T = TypeVar("T")


def malformed(method: str, exc: BaseException) -> NodeUnavailable:
    """The typed error for a reply that cannot be read: named by its kind only — the reply is
    never repeated (it may hold a secret: makesecret answers with one)."""
    return NodeUnavailable(f"{method}: lightningd's reply is malformed ({type(exc).__name__})")


def reads(
    rpc: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """A backend operation whose reply from `rpc` is read field by field: a field missing or
    of the wrong type is NodeUnavailable, never a KeyError that ends the caller's loop."""

    def wrap(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        async def read(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await fn(*args, **kwargs)
            except HiveError:
                raise
            except MALFORMED as exc:
                raise malformed(rpc, exc) from None

        return read

    return wrap


class TimedRpc(LightningRpc):  # type: ignore[misc]  # (pyln is untyped)
    def __init__(self, socket_path: str, timeout_s: float) -> None:
        super().__init__(socket_path)
        self.timeout_s = timeout_s + GRACE_S

    def call(
        self, method: str, payload: Any = None, cmdprefix: str | None = None, filter: Any = None
    ) -> Any:
        """As pyln's `call` (one request on a fresh connection, lightningd's framing, the same
        errors: RpcError for an error object, ValueError or TypeError for a malformed reply),
        with a socket timeout (TimeoutError); no notifications are asked for."""
        if isinstance(payload, dict):
            payload = {k: v for k, v in payload.items() if v is not None}
        this_id = self.get_json_id(method, cmdprefix)
        self.next_id += 1
        request: dict[str, Any] = {
            "jsonrpc": "2.0", "method": method, "params": payload or {}, "id": this_id,
        }  # fmt: skip
        if filter is not None:
            request["filter"] = filter
        sock = UnixSocket(self.socket_path)
        try:
            if sock.sock is not None:
                sock.sock.settimeout(self.timeout_s)
            self._writeobj(sock, request)
            resp, _ = self._readobj(sock)
        finally:
            sock.close()
        if not isinstance(resp, dict):
            raise TypeError("malformed response: not an object")
        if resp.get("id", this_id) != this_id:
            raise ValueError("malformed response: the id is not the request's")
        if "error" in resp:
            raise RpcError(method, payload, resp["error"])
        if "result" not in resp:
            raise ValueError('malformed response: "result" missing')
        return resp["result"]
