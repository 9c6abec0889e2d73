"""Mints: what escrow requires of one (NUT-06 info), and a local Nutshell mint process.

Before any funds are locked the operator's agent reads the mint's `/v1/info` itself — before the
Cashu wallet library talks to the mint at all — and refuses a mint that is not in the
operator's `mints` list or whose info lacks NUT-07 (state checks, to see spends and recover a
revealed preimage), NUT-10 (spending conditions), NUT-11 (P2PK signatures) or NUT-14 (HTLCs).
A mint that does not understand a secret kind may treat it as anyone-can-spend.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from agent.nostr import dial
from agent.nostr.local_relay import free_port
from agent.procs import ChildExited, ChildNotReady, ChildProcess
from events.errors import MintNotAllowed, MintUnavailable, MintUnsupported

REQUIRED_NUTS = ("7", "10", "11", "12", "14")


def normalize(url: str) -> str:
    return url.strip().rstrip("/").lower()


def missing_nuts(info: dict[str, Any]) -> list[str]:
    """The escrow NUTs this info does not declare as supported."""
    nuts = info.get("nuts") if isinstance(info, dict) else None
    nuts = nuts if isinstance(nuts, dict) else {}
    out = []
    for nut in REQUIRED_NUTS:
        entry = nuts.get(nut)
        if not (isinstance(entry, dict) and entry.get("supported") is True):
            out.append(f"NUT-{int(nut):02d}")
    return out


async def fetch_info(url: str, timeout_s: float = 10) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            reply = await client.get(f"{normalize(url)}/v1/info")
            reply.raise_for_status()
            info = reply.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise MintUnavailable(f"cannot read {url}/v1/info: {exc}"[:300]) from None
    if not isinstance(info, dict):
        raise MintUnavailable(f"{url}/v1/info is not a NUT-06 info object")
    return info


async def check_mint(url: str, allowed: list[str]) -> dict[str, Any]:
    """The mint's info if escrow may use it; MintNotAllowed or MintUnsupported otherwise."""
    if normalize(url) not in {normalize(u) for u in allowed}:
        raise MintNotAllowed(
            f"{url} is not in the operator's mints ({', '.join(allowed) or 'none'})"
        )
    info = await fetch_info(url)
    missing = missing_nuts(info)
    if missing:
        raise MintUnsupported(f"{url} lacks {', '.join(missing)}, which escrow needs")
    return info


async def check_named_mint(url: str, *, allow_private: bool, timeout_s: float = 5) -> None:
    """A mint someone else named (a token's, accepted with --trust-mint) is dialled only if it
    is a plain http(s) URL whose host resolves to public addresses only — a stranger's token
    must not make the wallet send requests into the operator's network (loopback, private,
    link-local…; the same rule as relays named in others' lists, and the same switch for test
    networks).  MintNotAllowed otherwise.  A mint in the operator's `mints` is never judged."""
    parts = urlsplit(url)
    plain = url.isascii() and url.isprintable() and not any(c in url for c in "\\@ ")
    if not plain or parts.scheme not in ("http", "https") or not parts.hostname:
        raise MintNotAllowed(f"the token's mint {url[:80]!r} is not a plain http(s) URL")
    if allow_private:
        return
    as_relay = ("wss" if parts.scheme == "https" else "ws") + url[len(parts.scheme) :]
    reason = await dial.refusal_in_time(as_relay, timeout_s)  # (the relays' rule, as said)
    if reason is not None:
        raise MintNotAllowed(f"the token's mint {url} is refused: {reason}")


class MintProcess:
    """Nutshell's `mint` server with the FakeWallet backend, on 127.0.0.1 (tests and demo).

    FakeWallet marks every mint quote paid after `delay_s` (at once by default), so tokens can
    be minted without Lightning, and pays every melt at once.
    """

    def __init__(
        self,
        workdir: Path,
        port: int = 0,
        *,
        delay_s: float = 0,
        brr: bool = True,
        input_fee_ppk: int = 0,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.delay_s = delay_s
        self.brr = brr  # False: invoices are paid only by melts at this same mint
        self.input_fee_ppk = input_fee_ppk  # NUT-02: what spending each proof costs, ‰ sat
        self.proc: ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30) -> str:
        env = {
            **os.environ,
            "MINT_BACKEND_BOLT11_SAT": "FakeWallet",
            "MINT_PRIVATE_KEY": secrets.token_hex(32),
            "MINT_LISTEN_HOST": "127.0.0.1",
            "MINT_LISTEN_PORT": str(self.port),
            "MINT_DATABASE": str(self.workdir / "mint"),
            "MINT_INPUT_FEE_PPK": str(self.input_fee_ppk),
            "FAKEWALLET_DELAY_INCOMING_PAYMENT": str(self.delay_s),
            "FAKEWALLET_DELAY_OUTGOING_PAYMENT": "0",
            "FAKEWALLET_BRR": "TRUE" if self.brr else "FALSE",
            "DEBUG": "FALSE",
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "mint.log"
        self.proc = ChildProcess(
            "the mint",
            [str(Path(sys.executable).with_name("mint"))],
            env=env,
            cwd=self.workdir,
            log=log,
            ready=lambda _child: self._answers(),
            ready_timeout_s=timeout_s,
            poll_s=0.1,
        )
        try:
            self.proc.start()
        except ChildExited as exc:
            last = exc.tail.strip().splitlines()[-1:] or [f"exit code {exc.returncode}"]
            raise MintUnavailable(f"the mint exited at start ({last[0]}); see {log}") from None
        except ChildNotReady:
            raise MintUnavailable(f"the mint did not answer within {timeout_s:.0f} s") from None
        return self.url

    def _answers(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/v1/info", timeout=1).status_code == 200
        return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        self.proc = None
