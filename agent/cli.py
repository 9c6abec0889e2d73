"""`hive-agent`: the command line.

Errors are one line on stderr (`error: CODE: sentence`), or a JSON object with `--json`; the
exit status says what kind of failure it was (sysexits.h, see agent/errors.py).  Tracebacks
only with HIVE_DEBUG=1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from agent import __version__
from agent.errors import EX_SOFTWARE, exit_code_of
from agent.keys import create_key_file, load_key_file
from agent.nostr.local_relay import EmbeddedRelay
from agent.settings import Settings
from events.errors import HiveError

Emit = Callable[[dict[str, Any], str], None]


def _emitter(as_json: bool) -> Emit:
    def emit(data: dict[str, Any], text: str) -> None:
        print(json.dumps(data, sort_keys=True) if as_json else text, flush=True)

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


async def _serve_relay(relay: EmbeddedRelay, emit: Emit) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        await relay.start()
        emit({"url": relay.url, "status": "running"}, relay.url)
        async for signum in signals:
            await relay.stop()
            emit(
                {"url": relay.url, "status": "stopped"}, f"stopped ({signal.Signals(signum).name})"
            )
            return


def cmd_relay(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    relay = EmbeddedRelay(args.host, args.port, args.db)
    anyio.run(_serve_relay, relay, emit, backend="asyncio")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    from agent.demo import run_demo

    report = anyio.run(run_demo, args.fast, args.json, backend="asyncio")
    if args.json:
        emit(report, "")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    relay.add_argument("--port", type=int, default=0, help="0 picks a free port")
    relay.add_argument("--db", type=Path, help="keep events in LMDB in this directory")
    relay.set_defaults(func=cmd_relay)

    demo = sub.add_parser("demo", help="the whole story on an embedded relay")
    demo.add_argument("--fast", action="store_true", help="no pauses (CI smoke test)")
    demo.set_defaults(func=cmd_demo)
    return parser


def _fail(error: HiveError, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"error": error.to_dict()}), flush=True)
    else:
        print(f"error: {error}", file=sys.stderr, flush=True)
    return exit_code_of(error)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings(home=args.home) if args.home else Settings()
        return int(args.func(args, settings, _emitter(args.json)))
    except HiveError as error:
        return _fail(error, args.json)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("HIVE_DEBUG"):
            raise
        print(
            f"error: INTERNAL: unexpected {type(exc).__name__}: {exc} "
            "(HIVE_DEBUG=1 shows a traceback)",
            file=sys.stderr,
        )
        return EX_SOFTWARE
