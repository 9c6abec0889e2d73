"""`hive-agent keys | relay | run | note | notes | status | demo`: the agent itself — its key,
a relay to talk through, running it, private notes, what it has seen — and the demo."""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import nostr_sdk as sdk

from agent.cli.apps import announce, standalone_app
from agent.cli.common import Emit
from agent.cli.secrets import read_password, read_secret
from agent.cli.types import count, port, positive, pubkey
from agent.cli.views import pairs, since, table, when
from agent.errors import EX_UNAVAILABLE, ConfigInvalid, RelayUnavailable
from agent.home_lock import lock_home, process_alive
from agent.keys import create_key_file, import_key_file, load_key_file
from agent.nostr.local_relay import NOTES_PER_MINUTE, EmbeddedRelay
from agent.nostr.relay_policy import HiveWritePolicy, Limits
from agent.runtime import status_report
from agent.settings import Settings
from agent.store import Store
from agent.textsafe import inline
from agent.transport import new_note
from events.crypto import require_xonly

# --- keys -------------------------------------------------------------------------------------


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


def cmd_keys_import(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    secret = read_secret(args.secret_file)
    password = read_password(args.password_file) if "ncryptsec1" in secret else None
    keys = import_key_file(settings.key_file, secret, password, force=args.force)
    pub = keys.public_key()
    emit(
        {"pubkey": pub.to_hex(), "npub": pub.to_bech32(), "key_file": str(settings.key_file)},
        f"imported into {settings.key_file} (mode 0600)\npubkey {pub.to_hex()}\n"
        f"npub   {pub.to_bech32()}",
    )
    return 0


# --- relay ------------------------------------------------------------------------------------


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


def _relay_warning(args: argparse.Namespace) -> str | None:
    """Checks --host and --open; the warning for a reachable address (None on loopback)."""
    if not args.host.strip():
        raise ConfigInvalid("--host is empty; name an address (0.0.0.0 for every interface)")
    loopback = _is_loopback(args.host)
    if args.open and not loopback:
        raise ConfigInvalid(
            f"--open (no write policy) only on a loopback address, not {args.host}: an open "
            "relay on a reachable address stores anything anyone sends"
        )
    return (
        None
        if loopback
        else f"warning: serving on {args.host}: events are limited to Lightning Hive kinds at "
        f"{args.rate}/min per client; for a public relay use a production relay "
        "(strfry, nostr-rs-relay, ...)"
    )


def cmd_relay(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    warning = _relay_warning(args)
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


# --- run, note, notes, status, demo -----------------------------------------------------------


async def _run(args: argparse.Namespace, settings: Settings, emit: Emit) -> None:
    lock_home(settings.root, "run")
    app = standalone_app(args, settings)
    async with app.agent as agent:
        emit({"pubkey": agent.pubkey, "status": "running"}, f"agent {agent.pubkey} running")
        await announce(app, args)  # relay lists and profile, only if they changed
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
    # one note, one row: a newline in a sender's text would forge rows from someone else
    rows = [(when(n["received_at"]), n["sender"][:16] + "…", inline(n["text"])) for n in notes]
    emit({"notes": notes}, table(["received", "from", "text"], rows) if rows else "no notes")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    report = status_report(Store(settings.store_file))
    agent, at = report["agent"] or {}, report["status_at"]
    running = process_alive(agent.get("pid"), at)
    report["process"] = {"pid": agent.get("pid"), "running": running}
    report["snapshot_age_s"] = None if at is None else max(0, int(time.time() - at))
    emit(report, status_text(report, running))
    return 0


def status_text(report: dict[str, Any], running: bool) -> str:
    """`hive-agent status` for a person: whether the agent runs, then the last snapshot."""
    agent, pid = report["agent"] or {}, report["process"]["pid"]
    if not agent:
        return "agent     (never ran on this home)"
    npub = sdk.PublicKey.parse(agent["pubkey"]).to_bech32()
    process = f"running (pid {pid})" if running else f"not running (last pid {pid})"
    head = pairs(
        [("agent", f"{agent['pubkey']} ({npub})"), ("process", process),
         ("snapshot", since(report["status_at"]))]
    )  # fmt: skip
    was = "" if running else "was "
    relays = [
        (inline(r["url"]), was + r["status"], since(r["since"]), r["acks"], r["received"],
         inline(r["last_error"]) if r["last_error"] else None)
        for r in report["relays"]
    ]  # fmt: skip
    parts = [
        head,
        table(["relay", "status", "since", "acks", "received", "last error"], relays),
        _counts("outbox", "state", report["outbox"]),
        _counts("errors", "code", report["errors"]),
        _counts("inbound", "event", report["inbound"]),
    ]
    return "\n\n".join(parts)


def _counts(title: str, key: str, counts: dict[str, int]) -> str:
    if not counts:
        return f"{title}: none"
    return f"{title}\n" + table([key, "count"], sorted(counts.items()))


def cmd_demo(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    from agent.demo import run_demo

    keep = Path(tempfile.mkdtemp(prefix="hive-demo-")) if args.dashboard else None
    report = anyio.run(run_demo, args.fast, args.json, keep, backend="asyncio")
    if args.json:
        emit(report, "")
    if keep is not None:  # the advisory act's node, its credentials and receipts, in a browser
        from agent.dashboard.command import serve_home

        try:
            serve_home(Settings(home=keep / "node"), args, emit)
        finally:
            shutil.rmtree(keep, ignore_errors=True)
    return 0


# --- parsers ----------------------------------------------------------------------------------


def register(sub: Any, relay_opt: argparse.ArgumentParser) -> None:
    """keys, relay, run, note, notes and status (the demo comes last: `register_demo`)."""
    keys = sub.add_parser("keys", help="the agent's Nostr key").add_subparsers(
        required=True, metavar="ACTION"
    )
    keys.add_parser("new", help="create a key file (0600)").set_defaults(func=cmd_keys_new)
    keys.add_parser("show", help="print the public key").set_defaults(func=cmd_keys_show)
    imp = keys.add_parser(
        "import",
        help="write a key given as hex, nsec1… or ncryptsec1… (prompted, or from a file/stdin)",
    )
    imp.add_argument(
        "--from", dest="secret_file", metavar="FILE", help="read the key from FILE ('-': stdin)"
    )
    imp.add_argument(
        "--password-file", metavar="FILE", help="ncryptsec password (else HIVE_KEY_PASSWORD)"
    )
    imp.add_argument("--force", action="store_true", help="replace an existing key file")
    imp.set_defaults(func=cmd_keys_import)
    _register_relay(sub)
    _register_run(sub, relay_opt)
    notes = sub.add_parser("note", help="private notes (gift-wrapped)").add_subparsers(
        required=True, metavar="ACTION"
    )
    send = notes.add_parser("send", parents=[relay_opt], help="send a note to a pubkey")
    send.add_argument("pubkey", type=pubkey, help="recipient (hex, npub or nprofile)")
    send.add_argument("text")
    send.add_argument("--no-wait", action="store_true", help="queue it and return at once")
    send.set_defaults(func=cmd_note_send)
    sub.add_parser("notes", help="list received notes").set_defaults(func=cmd_notes)
    sub.add_parser("status", help="relays, outbox and error counts").set_defaults(func=cmd_status)


def _register_relay(sub: Any) -> None:
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


def _register_run(sub: Any, relay_opt: argparse.ArgumentParser) -> None:
    run = sub.add_parser("run", parents=[relay_opt], help="run the agent until stopped")
    run.add_argument("--until-idle", action="store_true", help="stop once nothing is pending")
    run.add_argument("--seconds", type=positive, help="stop after this long")
    run.add_argument(
        "--timeout", type=positive, help="with --until-idle: stop after this long at most"
    )
    run.set_defaults(func=cmd_run)


def register_demo(sub: Any) -> None:
    demo = sub.add_parser("demo", help="the whole story on an embedded relay")
    demo.add_argument("--fast", action="store_true", help="no pauses (CI smoke test)")
    demo.add_argument(
        "--dashboard",
        action="store_true",
        help="end by serving the dashboard of the advisory act's node (prints its URL)",
    )
    demo.set_defaults(func=cmd_demo)
