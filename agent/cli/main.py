"""`hive-agent`: the command line.

Errors are one line on stderr (`error: CODE: sentence`), or a JSON object with `--json`; the
exit status says what kind of failure it was (sysexits.h, see agent/errors.py).  Tracebacks
only with HIVE_DEBUG=1.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import json
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import anyio
from pydantic import ValidationError

from agent import __version__
from agent.cli import advisory as cli_advisory
from agent.cli import escrow as cli_escrow
from agent.cli import market as cli_market
from agent.cli.apps import standalone_app
from agent.cli.types import count, port, positive, pubkey
from agent.errors import (
    EX_UNAVAILABLE,
    ConfigInvalid,
    DiskError,
    RelayUnavailable,
    StoreBusy,
    StoreCorrupt,
    UsageError,
    exit_code_of,
)
from agent.home_lock import lock_home
from agent.keys import create_key_file, load_key_file
from agent.nostr.local_relay import NOTES_PER_MINUTE, EmbeddedRelay
from agent.nostr.relay_policy import HiveWritePolicy, Limits
from agent.runtime import status_report
from agent.settings import Settings
from agent.store import Store
from agent.textsafe import for_terminal, inline
from agent.transport import new_note
from events.crypto import require_xonly
from events.errors import HiveError, Internal, InvalidParams
from events.types import first_error

DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT, errno.EFBIG}

Emit = Callable[[dict[str, Any], str], None]


def _emitter(as_json: bool) -> Emit:
    def emit(data: dict[str, Any], text: str) -> None:
        # text views show strangers' words (notes, titles, relay messages): never raw escapes
        print(json.dumps(data, sort_keys=True) if as_json else for_terminal(text), flush=True)

    return emit


def cmd_keys_new(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    keys = create_key_file(settings.key_file)
    pub = keys.public_key()
    emit(
        {"pubkey": pub.to_hex(), "npub": pub.to_bech32(), "key_file": str(settings.key_file)},
        f"created {settings.key_file} (mode 0600)\npubkey {pub.to_hex()}\nnpub   {pub.to_bech32()}",
    )
    return 0


def cmd_keys_show(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    pub = load_key_file(settings.key_file).public_key()
    emit(
        {"pubkey": pub.to_hex(), "npub": pub.to_bech32(), "key_file": str(settings.key_file)},
        f"pubkey {pub.to_hex()}\nnpub   {pub.to_bech32()}",
    )
    return 0


async def _serve_relay(relay: EmbeddedRelay, emit: Emit, warning: str | None = None) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        await relay.start()
        emit({"url": relay.url, "status": "running"}, relay.url)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        async for signum in signals:
            await relay.stop()
            emit(
                {"url": relay.url, "status": "stopped"}, f"stopped ({signal.Signals(signum).name})"
            )
            return


def cmd_relay(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    if not args.host.strip():
        raise ConfigInvalid("--host is empty; name an address (0.0.0.0 for every interface)")
    loopback = _is_loopback(args.host)
    if args.open and not loopback:
        raise ConfigInvalid(
            f"--open (no write policy) only on a loopback address, not {args.host}: an open "
            "relay on a reachable address stores anything anyone sends"
        )
    warning = (
        None
        if loopback
        else f"warning: serving on {args.host}: events are limited to Lightning Hive kinds at "
        f"{args.rate}/min per client; for a public relay use a production relay "
        "(strfry, nostr-rs-relay, ...)"
    )
    policy = None if args.open else HiveWritePolicy(Limits(per_minute=args.rate))
    try:
        relay = EmbeddedRelay(
            args.host,
            args.port,
            args.db,
            auth=args.auth,
            policy=policy,
            notes_per_minute=NOTES_PER_MINUTE if args.open else args.rate,
        )
        anyio.run(_serve_relay, relay, emit, warning, backend="asyncio")
    except OSError as exc:  # an address that is not ours, a database path that cannot be one
        where = f"{args.host}:{args.port}" + (f" with --db {args.db}" if args.db else "")
        raise RelayUnavailable(f"cannot serve on {where}: {exc.strerror or exc}") from None
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cmd_demo(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    from agent.demo import run_demo

    report = anyio.run(run_demo, args.fast, args.json, backend="asyncio")
    if args.json:
        emit(report, "")
    return 0


async def _run(args: argparse.Namespace, settings: Settings, emit: Emit) -> None:
    lock_home(settings.root, "run")
    app = standalone_app(args, settings)
    async with app.agent as agent:
        emit({"pubkey": agent.pubkey, "status": "running"}, f"agent {agent.pubkey} running")
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:

                async def stop_on_signal() -> None:
                    async for _ in signals:
                        tg.cancel_scope.cancel()

                tg.start_soon(stop_on_signal)
                for loop in app.loops():
                    tg.start_soon(loop)
                if args.until_idle:
                    with anyio.move_on_after(args.timeout):
                        await agent.until_idle()
                    tg.cancel_scope.cancel()
                elif args.seconds:
                    await anyio.sleep(args.seconds)
                    tg.cancel_scope.cancel()
        await app.close()
    emit({"pubkey": agent.pubkey, "status": "stopped"}, "stopped")


def cmd_run(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    anyio.run(_run, args, settings, emit, backend="asyncio")
    return 0


async def _send_note(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    recipient = require_xonly(args.pubkey).hex()
    new_note(args.text)  # checked before connecting to anything
    async with standalone_app(args, settings).agent as agent:
        item = await agent.send_note(recipient, args.text, wait=not args.no_wait)
    return {
        "event_id": item.event_id,
        "published": item.published,
        "acked_by": sorted(item.acked),
        "pending": item.missing,
    }


def cmd_note_send(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    result = anyio.run(_send_note, args, settings, backend="asyncio")
    state = "published" if result["published"] else "queued (delivered by `hive-agent run`)"
    emit(result, f"note {result['event_id']} {state}; acknowledged by {result['acked_by']}")
    return 0 if result["published"] or args.no_wait else EX_UNAVAILABLE


def cmd_notes(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    notes = Store(settings.store_file).notes()
    lines = [f"{n['received_at']}  {n['sender'][:16]}…  {n['text']}" for n in notes]
    emit({"notes": notes}, "\n".join(lines) or "no notes")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    report = status_report(Store(settings.store_file))
    lines = [f"agent   {(report['agent'] or {}).get('pubkey', '(never ran)')}"]
    for r in report["relays"]:
        error = f"  last error: {inline(r['last_error'])}" if r["last_error"] else ""
        lines.append(f"relay   {inline(r['url']):<40} {r['status']:<12} acks {r['acks']}{error}")
    lines.append(f"outbox  {report['outbox'] or 'empty'}")
    lines.append(f"errors  {report['errors'] or 'none'}")
    emit(report, "\n".join(lines))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse that raises a typed usage error (printed as JSON under --json) instead of
    printing its own message and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hive-agent",
        description="Lightning Hive agent: Lightning nodes, advisors and fleets over Nostr.",
    )
    parser.add_argument("--version", action="version", version=f"hive-agent {__version__}")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument(
        "--home", type=Path, help="agent directory (default ~/.hive-agent, env HIVE_HOME)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keys = sub.add_parser("keys", help="the agent's Nostr key").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    keys.add_parser("new", help="create a key file (0600)").set_defaults(func=cmd_keys_new)
    keys.add_parser("show", help="print the public key").set_defaults(func=cmd_keys_show)

    relay = sub.add_parser("relay", help="run nostr-sdk's relay as a standalone server")
    relay.add_argument("--host", default="127.0.0.1")
    relay.add_argument("--port", type=port, default=0, help="0 picks a free port")
    relay.add_argument("--db", type=Path, help="keep events in LMDB in this directory")
    relay.add_argument("--auth", action="store_true", help="require NIP-42 AUTH to read and write")
    relay.add_argument(
        "--rate", type=count, default=600, help="events a minute per client (write policy)"
    )
    relay.add_argument(
        "--open",
        action="store_true",
        help="no write policy and no realistic rate (loopback only: tests and benchmarks)",
    )
    relay.set_defaults(func=cmd_relay)

    relay_opt = argparse.ArgumentParser(add_help=False)
    relay_opt.add_argument(
        "--relay",
        action="append",
        metavar="URL",
        help="use this relay (repeatable) instead of relays.json",
    )
    run = sub.add_parser("run", parents=[relay_opt], help="run the agent until stopped")
    run.add_argument("--until-idle", action="store_true", help="stop once nothing is pending")
    run.add_argument("--seconds", type=positive, help="stop after this long")
    run.add_argument(
        "--timeout", type=positive, help="with --until-idle: stop after this long at most"
    )
    run.set_defaults(func=cmd_run)

    notes = sub.add_parser("note", help="private notes (gift-wrapped)").add_subparsers(
        dest="note_command", required=True, metavar="ACTION"
    )
    send = notes.add_parser("send", parents=[relay_opt], help="send a note to a pubkey")
    send.add_argument("pubkey", type=pubkey, help="recipient (hex, npub or nprofile)")
    send.add_argument("text")
    send.add_argument("--no-wait", action="store_true", help="queue it and return at once")
    send.set_defaults(func=cmd_note_send)
    sub.add_parser("notes", help="list received notes").set_defaults(func=cmd_notes)
    sub.add_parser("status", help="relays, outbox and error counts").set_defaults(func=cmd_status)

    def bind(command: Any) -> Any:
        return lambda args, settings, emit: command(args, settings, emit, standalone_app)

    cli_market.register(sub, relay_opt, bind)
    cli_advisory.register(sub, relay_opt, bind)
    cli_escrow.register(sub, relay_opt, bind)

    demo = sub.add_parser("demo", help="the whole story on an embedded relay")
    demo.add_argument("--fast", action="store_true", help="no pauses (CI smoke test)")
    demo.set_defaults(func=cmd_demo)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    try:
        settings = Settings(home=args.home) if args.home is not None else Settings()
    except ValidationError as exc:
        raise ConfigInvalid(f"setting {first_error(exc)}") from None
    settings.check_home()
    return settings


def _fail(error: HiveError, as_json: bool) -> int:
    try:
        if as_json:
            print(json.dumps({"error": error.to_dict()}), flush=True)
        else:
            print(f"error: {for_terminal(inline(str(error)))}", file=sys.stderr, flush=True)
    except BrokenPipeError:
        _quiet_stdout()
    return exit_code_of(error)


def _quiet_stdout() -> None:
    """The reader went away (`hive-agent … | head`): nothing more is written, quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups from task groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def as_typed(exc: BaseException) -> HiveError | None:
    """A typed error for failures the environment causes (disk, store), else None."""
    if isinstance(exc, HiveError):
        return exc
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        return DiskError(f"{exc.strerror or exc} ({getattr(exc, 'filename', '') or 'disk'})")
    if isinstance(exc, OSError) and getattr(exc, "filename", None):
        return ConfigInvalid(f"cannot use {exc.filename}: {exc.strerror or exc}")
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreBusy(f"the store is locked by another process ({text})")
        if "disk" in text or "full" in text or "readonly" in text:
            return DiskError(f"the store cannot be written: {text}")
    if isinstance(exc, sqlite3.DatabaseError):
        return StoreCorrupt(f"the store is damaged: {exc}; restore it from a backup")
    if isinstance(exc, RecursionError):
        return InvalidParams("the input is nested too deeply")
    return None


class _SafeLogFormatter(logging.Formatter):
    """Log lines carry strangers' words (a relay's refusal, a URL from someone's list): one
    line per message, control characters escaped."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {inline(record.getMessage())}"
        if record.exc_info:
            text += "\n" + for_terminal(self.formatException(record.exc_info))
        return text


def _log_to_stderr() -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_SafeLogFormatter())
        root.addHandler(handler)
        root.setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _log_to_stderr()
    as_json = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
    except HiveError as error:  # usage errors, and values an argument type refused
        return _fail(error, as_json)
    try:
        settings = _settings(args)
        return int(args.func(args, settings, _emitter(args.json)))
    except (Exception, KeyboardInterrupt) as raised:
        exc = _leaf(raised)
        if isinstance(exc, KeyboardInterrupt):
            return 130
        if isinstance(exc, BrokenPipeError):
            _quiet_stdout()
            return 0
        typed = as_typed(exc)
        if typed is not None:
            return _fail(typed, args.json)
        if os.environ.get("HIVE_DEBUG"):
            raise
        detail = f"unexpected {type(exc).__name__}: {exc} (HIVE_DEBUG=1 shows a traceback)"
        return _fail(Internal(inline(detail)[:400]), args.json)


def entry() -> None:
    """The `hive-agent` console script: `main()`, then leave without the interpreter's
    teardown, in which a Rust-side nostr-sdk runtime that an error path left running could
    still crash the process (SIGSEGV) after the answer was printed."""
    try:
        code = main()
    except SystemExit as done:  # --help, --version
        code = done.code if isinstance(done.code, int) else 0 if done.code is None else 2
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    os._exit(code)
