"""The Cashu side of escrow, through the `cashu` package's wallet (no hand-written Cashu crypto).

One `CashuWallet` per (agent, mint).  The library keeps its own SQLite (keysets, NUT-13
derivation counters) under `<home>/cashu/` (0700); the agent's store stays the ledger of
proofs and tickets.  The wallet seed is derived from the agent's Nostr key, so NUT-13/NUT-09
restore needs nothing but that key.

Lock keys are Nostr x-only keys with the `02` prefix; an agent whose key has an odd y signs
with the negated secret, which has the same x and an even y (so both parities work).

The library logs through loguru, at TRACE with private keys and at ERROR with whole proofs
(bearer secrets), so its sinks are removed here and nothing it logs is kept.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import nostr_sdk as sdk
from coincurve import PrivateKey
from pydantic import ValidationError

from agent.escrow.coins import amount_split
from events.dleq import ORDER
from events.errors import MintRefused, MintUnavailable
from events.escrow import CashuProof, Dleq, fee_of, lock_key

_environ = dict(os.environ)  # the library copies a .env it finds into the environment
from cashu.core.base import HTLCWitness, Proof  # isort: skip  # noqa: E402
from cashu.core.htlc import HTLCSecret  # isort: skip  # noqa: E402
from cashu.core.secret import SecretKind, Tags  # isort: skip  # noqa: E402
from cashu.core.settings import settings as _cashu_settings  # isort: skip  # noqa: E402
from cashu.wallet.wallet import Wallet  # isort: skip  # noqa: E402
from loguru import logger as _cashu_log  # isort: skip  # noqa: E402

os.environ.clear()
os.environ.update(_environ)
_cashu_log.remove()  # cashu.wallet adds a stderr sink on import; keep none of it
# The library's DEBUG (from the environment or a .env in the working directory) builds its
# HTTP client without TLS verification or timeouts, and TOR starts a tor daemon: neither
# may steer the agent's mint connections (its own client is used anyway: `_Wallet.httpx`).
_cashu_settings.debug = False
_cashu_settings.tor = False
MINT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)  # per request; a melt's payment: none


class _Wallet(Wallet):
    """cashu 0.20.2 builds a new HTTP client before every API call and drops the old one with
    its open connections; here one client of ours is kept instead — TLS verified, finite
    timeouts, no proxy but the standard environment's — (the library's never connect) and
    `CashuWallet.close()` closes it.  Each wallet has keysets of its own, and splits amounts
    into powers of two."""

    _client: httpx.AsyncClient | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # the library's `keysets` is a class attribute, one dict every wallet fills: a wallet
        # then swapped at one mint with another mint's active keyset ("keyset id unknown")
        self.keysets = {}
        super().__init__(*args, **kwargs)

    def split_wallet_state(self, amount: int) -> list[int]:
        """Change and minted ecash in the fewest proofs, one per power of two (the library
        aims at three of every denomination, from what it holds in memory): at a mint that
        charges a fee per proof spent each costs a fee later, and escrow's funding check
        (coins.check_funds) plays swaps out with this same split."""
        return amount_split(amount)

    @property  # type: ignore[override]
    def httpx(self) -> httpx.AsyncClient:
        assert self._client is not None
        return self._client

    @httpx.setter
    def httpx(self, client: httpx.AsyncClient) -> None:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(
                base_url=client.base_url, headers=client.headers, timeout=MINT_TIMEOUT
            )


PREIMAGE = re.compile(r"[0-9a-fA-F]{64}")
CHECK_BATCH = 500  # proofs per NUT-07 state check
RESTORE_WINDOW = 64  # outputs a swap of one ticket part can have (one per power of two)


def signing_key(keys: sdk.Keys) -> PrivateKey:
    """The secret whose public key is `02 ‖ x` for the agent's x-only Nostr key."""
    secret = bytes.fromhex(keys.secret_key().to_hex())
    key = PrivateKey(secret)
    if key.public_key.format()[0] == 3:  # odd y: the negated secret has the same x, even y
        key = PrivateKey((ORDER - int.from_bytes(secret, "big")).to_bytes(32, "big"))
    return key


def wallet_mnemonic(keys: sdk.Keys) -> str:
    from mnemonic import Mnemonic

    seed = hmac.new(
        bytes.fromhex(keys.secret_key().to_hex()), b"hive-agent/cashu-wallet-seed", "sha256"
    )
    return Mnemonic("english").to_mnemonic(seed.digest()[:16])


def to_cashu(proof: CashuProof, witness: str | None = None) -> Proof:
    return Proof(id=proof.id, amount=proof.amount, secret=proof.secret, C=proof.C, witness=witness)


def from_cashu(proof: Proof) -> CashuProof:
    """Ours, with the mint's DLEQ and our blinding factor when the library kept them (a
    proof the mint signed for us: anyone we pay it to can check the signature, NUT-12)."""
    got, dleq = proof.dleq, None
    if got is not None and got.r:
        with contextlib.suppress(ValidationError):  # (malformed: as if the mint sent none)
            dleq = Dleq(e=got.e, s=got.s, r=got.r)
    return CashuProof(id=proof.id, amount=proof.amount, secret=proof.secret, C=proof.C, dleq=dleq)


@dataclass(frozen=True)
class Keyset:
    """What a check needs of one of a mint's keysets."""

    id: str
    unit: str
    keys: dict[int, str]  # amount → the mint's public key (compressed hex)
    fee_ppk: int  # NUT-02 input fee per proof spent, in thousandths of a sat
    final_expiry: int | None  # after this (unix time) the mint may refuse its ecash


def _mint_error(exc: Exception) -> Exception:
    if isinstance(exc, httpx.HTTPError):
        return MintUnavailable(f"the mint did not answer: {exc}"[:300])
    text = str(exc).strip() or type(exc).__name__
    return MintRefused(text.removeprefix("Mint Error: ")[:300])


class CashuWallet:
    def __init__(self, home: Path, mint_url: str, keys: sdk.Keys) -> None:
        self.dir = home / "cashu"
        self.mint_url = mint_url.rstrip("/")
        self.keys = keys
        self.lock_pubkey = lock_key(keys.public_key().to_hex())
        self.w: Wallet | None = None
        self.name = "wallet-" + hashlib.sha256(self.mint_url.encode()).hexdigest()[:12]
        self._local = anyio.Lock()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """One operation that moves this wallet's NUT-13 derivation counter at a time, in this
        process and in every other on the same home (a file lock, which the OS releases if its
        holder dies).  Inside it, a swap's outputs start exactly at `next_outputs()` and run
        on without a gap; `redeem`, `refund` and `restore` expect to be called inside it."""
        async with self._local:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.dir / f"{self.name}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.EACCES):
                            raise
                        await anyio.sleep(0.02)  # another process swaps; cancellable wait
                yield
            finally:
                os.close(fd)  # closing the descriptor releases the lock

    async def open(self) -> CashuWallet:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.w = w = _Wallet(url=self.mint_url, db=str(self.dir), name=self.name)
        try:
            await w._migrate_database()
            await w._init_private_key(from_mnemonic=wallet_mnemonic(self.keys))
            w.private_key = signing_key(self.keys)
            assert w.private_key.public_key.format().hex() == self.lock_pubkey
            for path in self.dir.iterdir():
                os.chmod(path, 0o600)
            try:
                await w.load_mint()
            except Exception as exc:  # noqa: BLE001 - the library raises bare exceptions
                raise _mint_error(exc) from None
        except BaseException:  # (cancelled too: nothing is left open)
            with anyio.CancelScope(shield=True):
                await self.close()
            raise
        return self

    async def close(self) -> None:
        """Close the library's HTTP client and database engine."""
        if self.w is not None:
            if self.w._client is not None:
                await self.w._client.aclose()
            await self.w.db.engine.dispose()
            self.w = None

    async def __aenter__(self) -> CashuWallet:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def wallet(self) -> Wallet:
        assert self.w is not None, "open() first"
        return self.w

    async def topup(self, amount: int) -> tuple[str, list[CashuProof]]:
        """Ask the mint for `amount` sat of ecash: (the bolt11 to pay, proofs once paid).

        A FakeWallet mint marks the quote paid at once; with a real one, the proofs are empty
        until the invoice is paid and `claim(quote)` succeeds.
        """
        try:
            quote = await self.wallet.request_mint(amount)
            state = await self.wallet.get_mint_quote(quote.quote)
            if str(state.state.value) not in ("PAID", "paid"):
                return quote.request, []
            async with self.exclusive():
                proofs = await self.wallet.mint(amount, quote.quote)
        except Exception as exc:  # noqa: BLE001
            raise _mint_error(exc) from None
        return quote.request, [from_cashu(p) for p in proofs]

    async def lock(
        self,
        inputs: list[CashuProof],
        amount: int,
        *,
        hash_hex: str,
        payee_xonly: str,
        refund_xonly: str,
        locktime: int,
    ) -> tuple[list[CashuProof], list[CashuProof]]:
        """Swap `inputs` into (change, `amount` locked with a NUT-14 HTLC)."""
        tags = Tags()
        tags["pubkeys"] = [lock_key(payee_xonly)]
        tags["locktime"] = str(locktime)
        tags["refund"] = [lock_key(refund_xonly)]
        secret = HTLCSecret(kind=SecretKind.HTLC.value, data=hash_hex, tags=tags)
        try:
            async with self.exclusive():
                keep, send = await self.wallet.split(
                    [to_cashu(p) for p in inputs], amount, secret_lock=secret
                )
        except Exception as exc:  # noqa: BLE001
            raise _mint_error(exc) from None
        return [from_cashu(p) for p in keep], [from_cashu(p) for p in send]

    async def split(
        self, inputs: list[CashuProof], amount: int
    ) -> tuple[list[CashuProof], list[CashuProof]]:
        """Swap `inputs` into (change, exactly `amount`) with no spending conditions."""
        try:
            async with self.exclusive():
                keep, send = await self.wallet.split([to_cashu(p) for p in inputs], amount)
        except Exception as exc:  # noqa: BLE001
            raise _mint_error(exc) from None
        return [from_cashu(p) for p in keep], [from_cashu(p) for p in send]

    async def redeem(self, locked: list[CashuProof], preimage: str) -> list[CashuProof]:
        """The payee's path: preimage + our signature (added by the library) → fresh proofs.
        Call inside `exclusive()`."""
        witness = HTLCWitness(preimage=preimage).model_dump_json()
        return await self._swap([to_cashu(p, witness) for p in locked])

    async def refund(self, locked: list[CashuProof]) -> list[CashuProof]:
        """The funder's path after the locktime: our refund-key signature → fresh proofs.
        Call inside `exclusive()`."""
        return await self._swap([to_cashu(p) for p in locked])

    async def _swap(self, proofs: list[Proof]) -> list[CashuProof]:
        try:
            keep, _ = await self.wallet.redeem(proofs)
        except Exception as exc:  # noqa: BLE001
            raise _mint_error(exc) from None
        return [from_cashu(p) for p in keep]

    async def next_outputs(self) -> str:
        """Where the next swap's outputs start: `<keyset id>:<NUT-13 counter>` (recorded before
        a swap, so its outputs can be restored if the answer is lost)."""
        from cashu.wallet.crud import bump_secret_derivation

        kid = self.wallet.keyset_id
        counter = await bump_secret_derivation(db=self.wallet.db, keyset_id=kid, by=0, skip=True)
        return f"{kid}:{counter}"

    async def restore(self, start: str, count: int = RESTORE_WINDOW) -> list[CashuProof]:
        """The unspent proofs for outputs derived from `start` onwards, in derivation order
        (`next_outputs()` taken before a swap whose answer was lost: crash, cancel, timeout).

        Those the library stored before the loss are taken from its database; the rest are
        asked of the mint (NUT-09).  The derivation counter is never moved back."""
        from cashu.wallet.crud import get_proofs

        kid, _, first = start.partition(":")
        w = self.wallet
        try:
            secrets, rs, paths = await w.generate_secrets_from_to(
                int(first), int(first) + count - 1, keyset_id=kid
            )
            held = {p.secret: p for p in await get_proofs(db=w.db, id=kid)}
            ask = [i for i, secret in enumerate(secrets) if secret not in held]
            got: list[Proof] = []
            if ask:
                outputs, _ = w._construct_outputs(
                    [1] * len(ask), [secrets[i] for i in ask], [rs[i] for i in ask], keyset_id=kid
                )
                _, got = await w.restore_promises(
                    outputs,
                    [secrets[i] for i in ask],
                    [rs[i] for i in ask],
                    [paths[i] for i in ask],
                )
            signed = {**{p.secret: p for p in got}, **held}
            found: list[Proof] = []
            for secret in secrets:  # one swap's outputs are consecutive: stop at the first gap
                if secret not in signed:
                    break
                found.append(signed[secret])
        except Exception as exc:  # noqa: BLE001
            raise _mint_error(exc) from None
        return await self.unspent(found)

    async def keyset(self, keyset_id: str) -> Keyset:
        """One of the mint's keysets, active or not: its keys (NUT-01, `/v1/keys/{id}`) and
        its terms (NUT-02, `/v1/keysets`: the input fee and the final expiry, if any)."""
        try:
            found = await self.wallet._get_keyset(keyset_id)
            listed = {k.id: k for k in await self.wallet._get_keysets()}
        except Exception as exc:  # noqa: BLE001
            raise _mint_error(exc) from None
        keys = {int(amount): key.format().hex() for amount, key in found.public_keys.items()}
        terms = listed.get(keyset_id)
        fee = int(terms.input_fee_ppk or 0) if terms is not None else 0
        expiry = terms.final_expiry if terms is not None else None
        return Keyset(keyset_id, found.unit.name, keys, max(0, fee), expiry)

    def fee_ppk(self, keyset_id: str) -> int:
        """What spending one proof of one of this wallet's keysets costs, in thousandths of a
        sat (NUT-02 `input_fee_ppk`; 0 for a keyset the wallet has not loaded)."""
        found = self.wallet.keysets.get(keyset_id)
        return max(0, int(found.input_fee_ppk or 0)) if found is not None else 0

    def input_fee(self, proofs: list[CashuProof]) -> int:
        """The mint's fee, in sat, for a swap or melt spending `proofs` (NUT-02: the sum of
        their keysets' fees per proof, rounded up to the sat)."""
        return fee_of(self.fee_ppk(p.id) for p in proofs)

    def output_fee_ppk(self) -> int:
        """The input fee per proof of the keyset new proofs are signed in (the active one)."""
        return self.fee_ppk(self.wallet.keyset_id)

    async def _states(self, proofs: list[Proof]) -> list[Any]:
        """NUT-07, in batches: the mint's state of each of `proofs`, matched by Y
        (hash_to_curve of the secret), in their order.  A reply that leaves any proof out —
        a mint that lies or breaks — is MintRefused: it must not pass for "all spent" or
        crash a loop."""
        by_y = {}
        for at in range(0, len(proofs), CHECK_BATCH):  # a mint takes 1,000 at most (Nutshell)
            try:
                reply = await self.wallet.check_proof_state(proofs[at : at + CHECK_BATCH])
            except Exception as exc:  # noqa: BLE001
                raise _mint_error(exc) from None
            by_y.update({state.Y: state for state in reply.states})
        found = [by_y.get(p.Y) for p in proofs]
        missing = sum(1 for state in found if state is None)
        if missing:
            raise MintRefused(f"the mint's state check left out {missing} of {len(proofs)} proofs")
        return found

    async def unspent(self, proofs: list[Proof]) -> list[CashuProof]:
        """Those of the library's `proofs` the mint says are unspent (NUT-07), as ours."""
        if not proofs:
            return []
        found = await self._states(proofs)
        return [
            from_cashu(p)
            for p, s in zip(proofs, found, strict=True)
            if str(s.state.value).lower() == "unspent"
        ]

    async def states(self, proofs: list[CashuProof]) -> list[dict[str, Any]]:
        """NUT-07: each proof's state, and the preimage if a spend revealed it."""
        if not proofs:
            return []
        out = []
        for state in await self._states([to_cashu(p) for p in proofs]):
            preimage = None
            if state.witness:
                try:
                    preimage = HTLCWitness.from_witness(state.witness).preimage
                except Exception:  # noqa: BLE001 - not an HTLC witness
                    preimage = None
            if preimage is not None:  # the mint's text: a preimage, or nothing
                preimage = preimage.lower() if PREIMAGE.fullmatch(preimage) else None
            out.append({"state": str(state.state.value).lower(), "preimage": preimage})
        return out
