"""What `hive-agent init` writes into the agent's home: the key, relays.json and policy.json.

Every file is created private (0600, the home 0700) and never replaced unless asked
(`--force`); the key is never replaced at all — it is the agent's identity, and its escrow
wallet's seed.  relays.json holds the default relays (those of relays.example.json), the
relays named with `--relay`, or the user's own published NIP-65 list (kind 10002, with their
NIP-17 inbox relays, kind 10050); policy.json one of the presets, validated by the model the
agent reads it with.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nostr_sdk as sdk

from agent.advisory.policy import Budgets, Mode, PolicyConfig, Preset
from agent.errors import ConfigInvalid, KeyFileExists
from agent.keys import create_key_file, load_key_file
from agent.relay_probe import probe
from agent.settings import RelayEntry, RelaysConfig
from events.base import NostrEvent
from events.errors import HiveError
from events.kinds import Kind
from events.relay_lists import parse_dm_relays, parse_relay_list

DEFAULT_RELAYS = ["wss://nos.lol", "wss://relay.damus.io", "wss://relay.primal.net"]
DEFAULT_DM_RELAYS = ["wss://nos.lol", "wss://relay.damus.io"]

PRESETS: dict[Preset, dict[str, Any]] = {
    # every automatic action waits for the operator; small budgets
    Preset.CONSERVATIVE: {
        "mode": Mode.OPERATOR,
        "budgets": Budgets(
            sats_moved_per_day=5_000_000,
            sats_moved_per_week=20_000_000,
            sats_moved_per_advisor_day=2_500_000,
            fees_per_day_sat=5_000,
            fees_per_week_sat=20_000,
            channels_per_day=1,
            channels_per_week=3,
        ),
        "rate_per_minute": 20,
        "dangerous_rate_per_minute": 2,
    },
    Preset.MODERATE: {"mode": Mode.AUTONOMOUS},  # the model's defaults
    # actions run on their own within larger budgets
    Preset.AGGRESSIVE: {
        "mode": Mode.AUTONOMOUS,
        "budgets": Budgets(
            sats_moved_per_day=200_000_000,
            sats_moved_per_week=800_000_000,
            sats_moved_per_advisor_day=100_000_000,
            fees_per_day_sat=200_000,
            fees_per_week_sat=800_000,
            channels_per_day=10,
            channels_per_week=40,
        ),
        "rate_per_minute": 120,
        "dangerous_rate_per_minute": 10,
    },
}


@dataclass(frozen=True)
class Written:
    """One file `init` looked at: `action` is created, replaced or kept."""

    path: Path
    action: str
    detail: str

    def row(self) -> dict[str, str]:
        return {"file": str(self.path), "action": self.action, "detail": self.detail}


def policy_for(preset: Preset, mints: list[str]) -> PolicyConfig:
    """The policy of a preset (checked by the model the agent reads policy.json with)."""
    return PolicyConfig.model_validate({"preset": preset, "mints": mints, **PRESETS[preset]})


def relays_for(urls: list[str], dm: list[str] | None = None) -> RelaysConfig:
    """A relays.json for these read-and-write relays; two acknowledgements once there are
    three relays or more, else one."""
    return RelaysConfig.from_urls(urls, dm_relays=dm or [], min_acks=2 if len(urls) >= 3 else 1)


def relays_from_list(tags: list[list[str]], dm: list[str]) -> RelaysConfig:
    """relays.json from a NIP-65 list ([[url, marker]], '' = read and write)."""
    entries = [RelayEntry(url=u, read=m in ("", "read"), write=m in ("", "write")) for u, m in tags]
    writers = sum(e.write for e in entries)
    try:
        return RelaysConfig(relays=entries, dm_relays=dm[:3], min_acks=2 if writers >= 3 else 1)
    except ValueError as exc:
        raise ConfigInvalid(f"your published relay list cannot be used: {exc}"[:300]) from None


def write_private(path: Path, text: str, *, replace: bool) -> None:
    """`text` into `path`, mode 0600; atomically replacing an existing file only if `replace`."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = path.with_name(f".{path.name}.new") if replace else path
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    if replace:
        os.replace(target, path)


def dump(model: Any) -> str:
    return json.dumps(model.model_dump(mode="json"), indent=2) + "\n"


def ensure_key(path: Path, source: Path | None) -> tuple[Written, sdk.Keys]:
    """The key file: kept if there is one, else copied from `source` or created."""
    if path.exists():
        keys = load_key_file(path)
        if source is not None and load_key_file(source).secret_key() != keys.secret_key():
            raise KeyFileExists(f"{path} holds another key; refusing to overwrite a key")
        return Written(path, "kept", keys.public_key().to_bech32()), keys
    if source is None:
        keys = create_key_file(path)
        return Written(path, "created", keys.public_key().to_bech32()), keys
    keys = load_key_file(source)  # checked (0600, one valid key) before it is copied
    try:
        write_private(path, keys.secret_key().to_hex() + "\n", replace=False)
    except FileExistsError:
        raise KeyFileExists(f"{path} already exists; refusing to overwrite a key") from None
    return Written(path, "created", f"{keys.public_key().to_bech32()} (from {source})"), keys


def ensure_file(path: Path, text: str, detail: str, *, force: bool) -> Written:
    if path.exists() and not force:
        return Written(path, "kept", "exists; --force replaces it")
    action = "replaced" if path.exists() else "created"
    write_private(path, text, replace=path.exists())
    return Written(path, action, detail)


async def published_relays(
    keys: sdk.Keys, where: list[str], timeout_s: float
) -> tuple[RelaysConfig, str] | None:
    """The newest relay list (kind 10002) `keys` published on any of `where`, with its inbox
    relays (kind 10050) as dm_relays, and the relay it came from; None if none has one."""
    import anyio

    own = keys.public_key().to_hex()
    filters = [{"kinds": [Kind.RELAY_LIST, Kind.DM_RELAYS], "authors": [own]}]
    found: list[tuple[NostrEvent, str]] = []

    async def ask(url: str) -> None:
        result = await probe(url, keys, filters, timeout_s)
        found.extend((ev, url) for ev in result.events if ev.pubkey == own)

    async with anyio.create_task_group() as tg:
        for url in where:
            tg.start_soon(ask, url)
    newest = _newest(found, Kind.RELAY_LIST)
    if newest is None:
        return None
    inbox = _newest(found, Kind.DM_RELAYS)
    try:
        tags = parse_relay_list(newest[0])
        dm = [u for u, _ in parse_dm_relays(inbox[0])] if inbox else []
    except HiveError as exc:
        raise ConfigInvalid(f"your published relay list cannot be used: {exc}") from None
    return relays_from_list(tags, dm), newest[1]


def _newest(found: list[tuple[NostrEvent, str]], kind: int) -> tuple[NostrEvent, str] | None:
    mine = [f for f in found if f[0].kind == kind]
    return max(mine, key=lambda f: f[0].created_at) if mine else None
