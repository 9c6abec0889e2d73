"""`hive-agent init | doctor`: set up an agent's home, then check everything it needs.

`init` writes the key, relays.json and policy.json (agent/home_setup.py), one line per file,
and is safe to run again: what exists is kept (and said so) unless `--force`, which never
replaces the key.  `doctor` runs agent/doctor.py's checks, one line each, and exits by the
worst: 0, 78 (a local setting) or 69 (something did not answer).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import anyio

from agent import doctor
from agent.advisory.policy import Preset
from agent.cli.common import Emit
from agent.cli.types import positive
from agent.home_setup import (
    DEFAULT_DM_RELAYS,
    DEFAULT_RELAYS,
    Written,
    dump,
    ensure_file,
    ensure_key,
    policy_for,
    published_relays,
    relays_for,
)
from agent.settings import RelaysConfig, Settings

# --- init -------------------------------------------------------------------------------------


def _relays(
    args: argparse.Namespace, settings: Settings, keys: Any, new_key: bool
) -> tuple[RelaysConfig, str]:
    """relays.json's content and where it came from."""
    urls = args.relay or DEFAULT_RELAYS
    if args.from_nostr and not new_key:
        found = anyio.run(published_relays, keys, urls, args.timeout, backend="asyncio")
        if found is not None:
            return found[0], f"your relay list (kind 10002) from {found[1]}"
        fallback = "no relay list of yours (kind 10002) on " + ", ".join(urls)
    elif args.from_nostr:
        fallback = "a new key has no published relay list"
    else:
        fallback = ""
    if args.relay:
        config, source = relays_for(args.relay), "--relay"
    else:
        config, source = relays_for(DEFAULT_RELAYS, DEFAULT_DM_RELAYS), "defaults"
    return config, f"{source}; {fallback}" if fallback else source


def cmd_init(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    settings.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_row, keys = ensure_key(settings.key_file, args.key)
    new_key = key_row.action == "created"
    rows = [key_row]
    if settings.relays_file.exists() and not args.force:
        rows.append(ensure_file(settings.relays_file, "", "", force=False))
    else:
        config, source = _relays(args, settings, keys, new_key)
        n = len(config.relays)
        detail = f"{n} relay{'' if n == 1 else 's'} ({source})"
        rows.append(ensure_file(settings.relays_file, dump(config), detail, force=args.force))
    preset = Preset(args.preset)
    policy = policy_for(preset, args.mint or [])
    detail = f"preset {preset.value}, mode {policy.mode.value}, {len(policy.mints)} mint(s)"
    rows.append(ensure_file(settings.root / "policy.json", dump(policy), detail, force=args.force))
    nxt = f"hive-agent {doctor.home_env(settings)}doctor"
    emit(
        {"files": [r.row() for r in rows], "npub": keys.public_key().to_bech32(), "next": nxt},
        "\n".join(_line(r) for r in rows) + f"\nnext: {nxt}",
    )
    return 0


def _line(row: Written) -> str:
    return f"{row.action:<8}  {row.path}  {row.detail}"


# --- doctor -----------------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace, settings: Settings, emit: Emit) -> int:
    checks = anyio.run(_checks, args, settings, backend="asyncio")
    code = doctor.exit_status(checks)
    lines = [f"{c.status.value:<4}  {c.name}: {c.detail}" for c in checks]
    lines.append(f"{doctor.summary(checks)} (exit {code})")
    emit({"checks": [c.row() for c in checks], "exit_code": code}, "\n".join(lines))
    return code


async def _checks(args: argparse.Namespace, settings: Settings) -> list[doctor.Check]:
    return await doctor.run_checks(settings, timeout_s=args.timeout, cln_rpc=args.cln_rpc)


# --- parsers ----------------------------------------------------------------------------------


def register_init(sub: Any) -> None:
    init = sub.add_parser("init", help="create the key, relays.json and policy.json")
    init.add_argument(
        "--preset",
        choices=[p.value for p in Preset],
        default=Preset.MODERATE.value,
        help="policy.json preset (default moderate)",
    )
    init.add_argument("--relay", action="append", metavar="URL", help="relays (repeatable)")
    init.add_argument(
        "--from-nostr",
        action="store_true",
        help="relays.json from your published NIP-65 list (kind 10002), looked up on --relay "
        "or the default relays",
    )
    init.add_argument("--mint", action="append", metavar="URL", help="escrow mint (repeatable)")
    init.add_argument("--key", type=Path, metavar="FILE", help="use this key file's secret (0600)")
    init.add_argument("--force", action="store_true", help="replace relays.json and policy.json")
    init.add_argument("--timeout", type=positive, default=5.0, help="per relay (--from-nostr)")
    init.set_defaults(func=cmd_init)


def register_doctor(sub: Any) -> None:
    doc = sub.add_parser("doctor", help="check the key, relays, clock, mints, node and store")
    doc.add_argument("--timeout", type=positive, help="per relay or mint (default relays.json's)")
    doc.add_argument("--cln-rpc", metavar="PATH", help="lightningd's RPC socket to check")
    doc.set_defaults(func=cmd_doctor)


def register(sub: Any) -> None:
    """init and doctor."""
    register_init(sub)
    register_doctor(sub)
