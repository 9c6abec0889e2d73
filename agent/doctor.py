"""`hive-agent doctor`: each thing the agent needs, checked on its own and reported in one line
(ok, warn, fail, or skip when it is not configured).

The checks, in order: the home directory (not writable by others), the key file (there, 0600,
a valid key), relays.json, each configured relay (a websocket within the timeout, one REQ
answered, NIP-42 AUTH asked and whether ours is accepted), the clock against the HTTP `Date`
of every relay and mint that sent one (commands allow ±300 s: warn past 60 s, fail past 300),
policy.json, each of its mints (NUT-06 `/v1/info`, and NUT-07/10/11/14 for escrow), Core
Lightning's RPC and `makesecret` (when `--cln-rpc` names it) and the store's schema version.

Exit status by the worst: 0 when nothing failed (warnings included), 78 (EX_CONFIG) when a
local setting failed (home, key, configuration files, clock, a mint unfit for escrow, the
store), else 69 (EX_UNAVAILABLE) when a relay, mint or node did not answer.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import anyio
import httpx
import nostr_sdk as sdk

from agent.advisory.policy import PolicyConfig
from agent.errors import EX_CONFIG, EX_UNAVAILABLE
from agent.escrow.mint import missing_nuts, normalize
from agent.keys import load_key_file
from agent.relay_probe import Probe, http_date, probe
from agent.settings import RelaysConfig, Settings
from agent.store.database import code_versions, stored_versions
from events.errors import HiveError
from events.kinds import Kind

WARN_SKEW_S = 60
MAX_SKEW_S = 300  # what commands allow (agent/advisory: a command's created_at)


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """One line of the report; `exit_code` says what kind of failure a FAIL is."""

    name: str
    status: Status
    detail: str
    exit_code: int = 0

    def row(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status.value, "detail": self.detail}


def ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def warn(name: str, detail: str) -> Check:
    return Check(name, Status.WARN, detail)


def fail(name: str, detail: str, exit_code: int = EX_CONFIG) -> Check:
    return Check(name, Status.FAIL, detail, exit_code)


def skip(name: str, detail: str) -> Check:
    return Check(name, Status.SKIP, detail)


@dataclass
class Clock:
    """Server times seen (source, server epoch, local epoch when it arrived)."""

    seen: list[tuple[str, float, float]] = field(default_factory=list)

    def add(self, source: str, server: float | None) -> None:
        if server is not None:
            self.seen.append((source, server, time.time()))


# --- local checks -----------------------------------------------------------------------------


def check_home(settings: Settings) -> Check:
    root = settings.root
    if not root.is_dir():
        return fail("home", f"{root} does not exist; run `hive-agent init`")
    mode = stat.S_IMODE(root.stat().st_mode)
    if mode & stat.S_IWOTH:
        return fail("home", f"{root} is writable by every user (mode {mode:04o}); chmod 700 it")
    if mode & stat.S_IWGRP:
        return warn("home", f"{root} is writable by its group (mode {mode:04o}); chmod 700 it")
    return ok("home", f"{root} (mode {mode:04o})")


def check_key(settings: Settings) -> tuple[Check, sdk.Keys | None]:
    path = settings.key_file
    if not path.exists():
        return fail("key", f"no key file {path}; run `hive-agent init`"), None
    try:
        keys = load_key_file(path)
    except HiveError as exc:
        return fail("key", str(exc)), None
    mode = stat.S_IMODE(path.stat().st_mode)
    return ok("key", f"{path} (mode {mode:04o}), {keys.public_key().to_bech32()}"), keys


def check_relays_file(settings: Settings) -> tuple[Check, RelaysConfig | None]:
    path = settings.relays_file
    if not path.exists():
        return fail("relays.json", f"no {path}; run `hive-agent init`"), None
    try:
        config = RelaysConfig.load(path)
    except HiveError as exc:
        return fail("relays.json", str(exc)), None
    n, r, w = len(config.relays), len(config.read_urls), len(config.write_urls)
    plural = "relay" if n == 1 else "relays"
    return ok("relays.json", f"{n} {plural} ({r} read, {w} write)"), config


def check_policy(settings: Settings) -> tuple[Check, PolicyConfig | None]:
    path = settings.root / "policy.json"
    try:
        policy = PolicyConfig.load(path)
    except HiveError as exc:
        return fail("policy.json", str(exc)), None
    where = "" if path.exists() else "no policy.json, defaults: "
    mints = len(policy.mints)
    return ok(
        "policy.json",
        f"{where}preset {policy.preset.value}, mode {policy.mode.value}, "
        f"{mints} mint{'' if mints == 1 else 's'}",
    ), policy


def check_store(settings: Settings) -> Check:
    path = settings.store_file
    if not path.exists():
        return skip("store", "no store yet (the first command that needs one creates it)")
    try:
        found = stored_versions(path)
    except HiveError as exc:
        return fail("store", str(exc))
    known = code_versions()
    shown = ", ".join(f"{n} {found.get(n, 0)}" for n in known)
    newer = [n for n, v in known.items() if found.get(n, 0) > v]
    if newer:
        return fail("store", f"made by a newer hive-agent ({shown}); upgrade hive-agent")
    if any(found.get(n, 0) < v for n, v in known.items()):
        want = ", ".join(f"{n} {v}" for n, v in known.items())
        return warn("store", f"schema {shown}, this hive-agent has {want}: migrated (with a "
                    "backup) when the agent next opens it")  # fmt: skip
    return ok("store", f"schema current ({shown})")


def check_clock(clock: Clock) -> Check:
    if not clock.seen:
        return skip("clock", "no relay or mint sent its time (HTTP Date)")
    source, server, local = max(clock.seen, key=lambda s: abs(s[2] - s[1]))
    skew = int(local - server)  # a Date header has whole seconds: truncated, as here
    text = f"{skew:+d} s against {source} (the largest of {len(clock.seen)})"
    if abs(skew) > MAX_SKEW_S:
        return fail("clock", f"{text}: commands allow ±{MAX_SKEW_S} s; set the clock (NTP)")
    if abs(skew) > WARN_SKEW_S:
        return warn("clock", f"{text}: commands allow ±{MAX_SKEW_S} s; check NTP")
    return ok("clock", text)


# --- remote checks ----------------------------------------------------------------------------


def relay_check(found: Probe, timeout_s: float, *, has_key: bool = True) -> Check:
    name = f"relay {found.url}"
    if found.error is not None:
        return fail(name, f"unreachable: {found.error}", EX_UNAVAILABLE)
    if found.auth_asked and not has_key:
        return warn(name, "connected; asks NIP-42 AUTH, and there is no key to answer with")
    if found.auth_asked:
        if found.auth_ok is True:
            return ok(name, "connected; asks NIP-42 AUTH, ours accepted")
        if found.auth_ok is False:
            reason = f": {found.auth_reason}" if found.auth_reason else ""
            return fail(name, f"connected; our NIP-42 AUTH was refused{reason}", EX_UNAVAILABLE)
        if found.auth_ok is None:
            return warn(name, "connected; asks NIP-42 AUTH, no answer to ours in time")
    if found.closed_reason:
        return warn(name, f"connected; our REQ was refused: {found.closed_reason}")
    if not found.answered:
        return warn(name, f"connected; no answer to a REQ within {timeout_s:g} s")
    return ok(name, "connected; no AUTH asked")


def _nuts(info: dict[str, Any]) -> str:
    nuts = info.get("nuts") if isinstance(info.get("nuts"), dict) else {}
    on = [
        int(k)
        for k, v in (nuts or {}).items()
        if k.isdigit() and isinstance(v, dict) and v.get("supported", True) is not False
        and not v.get("disabled", False)
    ]  # fmt: skip
    return ", ".join(str(n) for n in sorted(on)) or "none"


async def check_mint(url: str, timeout_s: float, clock: Clock) -> Check:
    name = f"mint {url}"
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            reply = await client.get(f"{normalize(url)}/v1/info")
        clock.add(name, http_date(reply.headers.get("date")))
        reply.raise_for_status()
        info = reply.json()
    except (httpx.HTTPError, ValueError) as exc:
        return fail(name, f"unreachable: {exc or type(exc).__name__}"[:300], EX_UNAVAILABLE)
    if not isinstance(info, dict):
        return fail(name, "/v1/info is not a NUT-06 info object", EX_UNAVAILABLE)
    who = f"{info.get('name') or 'unnamed'} ({info.get('version') or 'no version'})"
    missing = missing_nuts(info)
    if missing:
        return fail(name, f"{who} lacks {', '.join(missing)}, which escrow needs")
    return ok(name, f"{who}; NUTs {_nuts(info)}; escrow's 7, 10, 11, 14 all supported")


async def check_cln(rpc: str | None, timeout_s: float) -> Check:
    if not rpc:
        return skip("cln", "not configured (--cln-rpc names lightningd's RPC socket)")
    name = f"cln {rpc}"

    def ask() -> Check:
        from pyln.client import LightningRpc, RpcError

        if not Path(rpc).exists():
            return fail(name, f"no socket at {rpc}", EX_UNAVAILABLE)
        node = LightningRpc(rpc)
        try:
            info = node.getinfo()
            node.call("makesecret", {"string": "hive-agent doctor"})
        except RpcError as exc:
            return fail(name, f"lightningd refused: {exc.error}"[:300], EX_UNAVAILABLE)
        except (OSError, ValueError) as exc:
            return fail(name, f"unreachable: {exc}"[:300], EX_UNAVAILABLE)
        alias = info.get("alias") or "no alias"
        return ok(name, f"node {info.get('id', '?')} ({alias}); makesecret works")

    with anyio.move_on_after(timeout_s):
        return await anyio.to_thread.run_sync(ask, abandon_on_cancel=True)
    return fail(name, f"no answer within {timeout_s:g} s", EX_UNAVAILABLE)


# --- all of them ------------------------------------------------------------------------------


async def run_checks(
    settings: Settings, *, timeout_s: float | None = None, cln_rpc: str | None = None
) -> list[Check]:
    """Every check, in report order; the remote ones run concurrently."""
    home = check_home(settings)
    key, keys = check_key(settings)
    relays, config = check_relays_file(settings)
    policy, pol = check_policy(settings)
    wait = timeout_s or (config.connect_timeout_s if config else 5.0)
    urls = [r.url for r in config.relays] if config else []
    mints = pol.mints if pol else []
    probes: dict[str, Probe] = {}
    mint_checks: dict[str, Check] = {}
    clock = Clock()
    own = keys.public_key().to_hex() if keys else None
    filters: list[dict[str, Any]] = [
        {"kinds": [Kind.RELAY_LIST], "limit": 1, **({"authors": [own]} if own else {})}
    ]

    async def one_relay(url: str) -> None:
        probes[url] = await probe(url, keys, filters, wait)
        clock.add(f"relay {url}", probes[url].server_time)

    async def one_mint(url: str) -> None:
        mint_checks[url] = await check_mint(url, wait, clock)

    cln: list[Check] = []

    async def node() -> None:
        cln.append(await check_cln(cln_rpc, wait))

    async with anyio.create_task_group() as tg:
        for url in urls:
            tg.start_soon(one_relay, url)
        for url in mints:
            tg.start_soon(one_mint, url)
        tg.start_soon(node)
    return [
        home,
        key,
        relays,
        *(relay_check(probes[u], wait, has_key=keys is not None) for u in urls),
        check_clock(clock),
        policy,
        *(mint_checks[u] for u in mints),
        *([] if mints or pol is None else [skip("mints", "none configured (policy.json mints)")]),
        *cln,
        check_store(settings),
    ]


def exit_status(checks: list[Check]) -> int:
    """0 unless something failed; 78 for a local setting, else 69 (see the module's text)."""
    codes = {c.exit_code for c in checks if c.status is Status.FAIL}
    if EX_CONFIG in codes:
        return EX_CONFIG
    return EX_UNAVAILABLE if codes else 0


def summary(checks: list[Check]) -> str:
    counts = {s: sum(c.status is s for c in checks) for s in Status}
    return ", ".join(f"{counts[s]} {s.value}" for s in Status)


def home_env(settings: Settings) -> str:
    """`--home X ` when the home is not the default one (for the hints we print)."""
    default = Path(os.environ.get("HIVE_HOME", "~/.hive-agent")).expanduser()
    return "" if settings.root == default else f"--home {settings.root} "
