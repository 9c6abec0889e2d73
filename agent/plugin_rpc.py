"""The `hive-*` RPC methods as lightningd sees them: strict parameters, typed errors, and no
method ever holding up lightningd.

pyln's `Plugin` reads lightningd's requests on one thread.  A method that waits on the agent
(`portal.call`) holds every hook behind it — and `hive-join` may make lightningd `connect`,
which answers only after the `peer_connected` hook chain this plugin is part of: a stall until
the RPC times out.  So a `hive-*` method here only checks its parameters (on the stdin thread,
cheap) and returns a `Deferred`; `HivePlugin` starts it on the agent's loop and sends the reply
from there when it finishes (pyln writes replies under a lock, from any thread).

Errors: pyln attaches a Python traceback to every error it reports, and answers wrong or
missing parameters with -32600 and a sentence; here every failure is one `HiveError`, sent as
`{"code": 37xx, "message": "CODE: sentence", "data": {"code": "CODE", "message": …}}`, the
number fixed per hive error code in a range no Core Lightning code uses (agent/plugin_codes.py),
with no traceback.  This depends on pyln-client's request dispatch
(`Plugin._dispatch_request`, `Request._write_result`), pinned in requirements.lock and
covered by tests/test_plugin.py.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

from pyln.client import Plugin
from pyln.client.plugin import Request, RequestState

from agent.plugin_codes import rpc_code
from events.errors import HiveError, Internal, InvalidParams

log = logging.getLogger("hive.plugin")
Submit = Callable[[Callable[..., Awaitable[Any]], tuple[Any, ...]], "Future[Any]"]


class Deferred:
    """A method's work: `fn(*args)` on the agent's loop; its result is the reply."""

    def __init__(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self.fn = fn
        self.args = args


def error_reply(request_id: Any, error: HiveError) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": rpc_code(error.code), "message": str(error), "data": error.to_dict()},
    }


def _finish(request: Request, *, result: Any = None, error: HiveError | None = None) -> None:
    if request.state != RequestState.PENDING:
        return
    if error is None:
        request.set_result(result)
        return
    request._write_result(error_reply(request.id, error))
    request.state = RequestState.FAILED


def _binding_error(exc: TypeError) -> InvalidParams:
    text = re.sub(r"^[\w.]+\(\) ", "", str(exc))
    return InvalidParams(f"parameters: {text}"[:200])


class HivePlugin(Plugin):
    """pyln's Plugin, with `hive-*` methods dispatched as described in the module doc."""

    submit: Submit | None = None  # set once the agent's loop runs

    def _dispatch_request(self, request: Request) -> None:
        method = self.methods.get(request.method)
        ours = request.method.startswith("hive-") or request.method == "setconfig"
        if method is None or not ours:
            super()._dispatch_request(request)
            return
        try:
            if isinstance(request.params, list):
                bound = self._bind_pos(method.func, request.params, request)
            elif isinstance(request.params, dict):
                bound = self._bind_kwargs(method.func, request.params, request)
            else:
                raise InvalidParams("parameters must be a list or an object")
        except TypeError as exc:
            _finish(request, error=_binding_error(exc))
            return
        except HiveError as exc:
            _finish(request, error=exc)
            return
        self._run(request, lambda: method.func(*bound.args, **bound.kwargs))

    def _run(self, request: Request, call: Callable[[], Any]) -> None:
        try:
            result = call()
        except HiveError as exc:
            _finish(request, error=exc)
            return
        except Exception:
            log.exception("%s failed", request.method)
            _finish(request, error=Internal(f"{request.method} failed unexpectedly"))
            return
        if not isinstance(result, Deferred):
            _finish(request, result=result)
            return
        if self.submit is None:
            _finish(request, error=Internal("the hive agent is not running"))
            return
        try:
            future = self.submit(result.fn, result.args)
        except Exception:  # noqa: BLE001 - the agent's loop has stopped (lightningd shutting down)
            _finish(request, error=Internal("the hive agent is not running"))
            return
        future.add_done_callback(lambda done: _settle(request, done))


def _settle(request: Request, done: Future[Any]) -> None:
    if done.cancelled():  # the agent's loop stopped with this method still running
        _finish(request, error=Internal("the hive agent stopped before it finished"))
        return
    exc = done.exception()
    if exc is None:
        _finish(request, result=done.result())
    elif isinstance(exc, HiveError):
        _finish(request, error=exc)
    else:
        log.error("%s failed: %s: %s", request.method, type(exc).__name__, exc)
        _finish(request, error=Internal(f"{request.method} failed unexpectedly"))


# --- parameter checks (on the stdin thread: cheap, no I/O) -------------------------------------

NODE_ID = re.compile(r"^0[23][0-9a-f]{64}$")


def node_id(value: Any, name: str = "node_id") -> str:
    if not isinstance(value, str) or not NODE_ID.fullmatch(value.lower()):
        raise InvalidParams(f"{name} must be a node id (66 hex digits starting 02 or 03)")
    return value.lower()


def whole(value: Any, name: str, low: int, high: int) -> int:
    """An integer in [low, high]; a decimal string such as lightning-cli sends is accepted."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,12}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParams(f"{name} must be a whole number from {low} to {high}")
    return value


def integer(value: Any, name: str) -> int:
    """A whole number (or the decimal string lightning-cli sends); its bounds are checked where
    the value is used, by the same rule the CLI's checks go through."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(f"{name} must be a whole number")
    return value


def flag(value: Any, name: str) -> bool:
    """true or false (JSON, or exactly the words) — nothing else counts as either."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidParams(f"{name} must be true or false, not {str(value)[:20]!r}")


def text(value: Any, name: str, max_len: int = 200) -> str:
    if not isinstance(value, str) or len(value) > max_len:
        raise InvalidParams(f"{name} must be text of at most {max_len} characters")
    return value


def words(value: Any, name: str, max_items: int = 32) -> list[str]:
    """A list of short strings, or one comma-separated string."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > max_items:
        raise InvalidParams(f"{name} must be a list (or comma-separated text)")
    out = [text(item, name, 100).strip() for item in items]
    return [item for item in out if item]


def period(value: Any, name: str = "period") -> str:
    """A settlement period: an ISO week `YYYY-WW` that exists (InvalidParams otherwise)."""
    from agent.fleet.settlement_rules import parse_period

    if not isinstance(value, str):
        raise InvalidParams(f"{name} must be an ISO week like 2026-49")
    year, week = parse_period(value)
    return f"{year:04d}-{week:02d}"


def hex_id(value: Any, name: str, *, min_len: int = 6, max_len: int = 64) -> str:
    if not isinstance(value, str) or not re.fullmatch(
        rf"[0-9a-f]{{{min_len},{max_len}}}", value.lower()
    ):
        raise InvalidParams(f"{name} must be {min_len}–{max_len} hex digits")
    return value.lower()


def pubkey(value: Any, name: str) -> str:
    """A Nostr public key (hex, npub or nprofile, optionally `nostr:`-prefixed) as hex."""
    import nostr_sdk as sdk

    if not isinstance(value, str) or len(value) > 500:
        raise InvalidParams(f"{name} must be a Nostr public key (hex or npub)")
    try:
        return str(sdk.PublicKey.parse(value.strip().removeprefix("nostr:")).to_hex())
    except sdk.NostrSdkError:
        raise InvalidParams(f"{name} must be a Nostr public key (hex or npub)") from None
