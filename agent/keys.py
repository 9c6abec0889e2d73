"""The agent's Nostr key on disk: created 0600, refused when others can read it.

The file holds the secret on one line: 64 hex digits (what `keys new` and `keys import` write)
or an `nsec1…`.  Beside Core Lightning the key is derived
from the node's HSM instead (plugin_shim, via `makesecret`), so there is no file to lose.
The secret is never logged or printed.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import nostr_sdk as sdk

from agent.errors import (
    ConfigInvalid,
    KeyFileExists,
    KeyFileInsecure,
    KeyFileInvalid,
    KeyFileMissing,
)
from events.errors import InvalidKey
from events.nip19 import secret_hex
from events.nip44 import keys_from_secret


def create_key_file(path: Path) -> sdk.Keys:
    """Generate a key and write it to `path` (mode 0600, parent 0700).

    Raises KeyFileExists rather than overwrite an existing file.
    """
    return _write_key(path, sdk.Keys.generate(), force=False)


def import_key_file(path: Path, secret: str, password: str | None, *, force: bool) -> sdk.Keys:
    """Write the key given as hex, `nsec1…` or NIP-49 `ncryptsec1…` (decrypted with
    `password`) to `path`, as hex, mode 0600.

    Raises InvalidKey (never echoing the secret), KeyFileExists unless `force`."""
    text = secret.strip().removeprefix("nostr:")
    if text.startswith("ncryptsec1"):
        if password is None:
            raise InvalidKey("an ncryptsec1… key needs its password")
        if _scrypt_log_n(text) > MAX_LOG_N:
            raise InvalidKey(
                f"the ncryptsec1… key asks for scrypt log_n above {MAX_LOG_N}: refused (it "
                "would take gigabytes of memory)"
            )
        try:
            hexed = sdk.EncryptedSecretKey.from_bech32(text).decrypt(password).to_hex()
        except sdk.NostrSdkError:
            raise InvalidKey("cannot decrypt the ncryptsec1… key: wrong password?") from None
    else:
        hexed = secret_hex(text.lower())
    return _write_key(path, keys_from_secret(hexed), force=force)


def _write_key(path: Path, keys: sdk.Keys, *, force: bool) -> sdk.Keys:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigInvalid(f"{path.parent} exists but is not a directory") from None
    target = path.with_name(path.name + ".new") if force else path
    if force:
        target.unlink(missing_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileExists(
            f"{path} already exists; refusing to overwrite a key (--force replaces it)"
        ) from None
    with os.fdopen(fd, "w") as fh:
        fh.write(keys.secret_key().to_hex() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    if force:
        _keep_old(path, keys)
        os.replace(target, path)  # the old key stays whole until the new one is
    return keys


def _keep_old(path: Path, new: sdk.Keys) -> None:
    """A key being replaced is kept beside it (`nostr.key.old-<time>`, 0600): escrow tickets
    locked to it and the wallet's seed derived from it are lost without it."""
    try:
        old = path.read_text().strip()
    except FileNotFoundError:
        return
    if old == new.secret_key().to_hex():
        return
    kept = path.with_name(f"{path.name}.old-{int(time.time())}")
    fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(old + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def check_permissions(path: Path) -> None:
    """Raise KeyFileMissing or KeyFileInsecure unless only the owner can read `path`."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileMissing(
            f"{path} does not exist; create it with `hive-agent keys new`"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileInsecure(
            f"{path} has mode {stat.S_IMODE(mode):04o}, so other users can read the secret key; "
            f"run `chmod 600 {path}`"
        )


def load_key_file(path: Path) -> sdk.Keys:
    """Load the key at `path` after checking its permissions.

    Raises KeyFileMissing, KeyFileInsecure or KeyFileInvalid.
    """
    check_permissions(path)
    if not path.is_file():
        raise KeyFileInvalid(f"{path} is not a regular file")
    try:
        with path.open("rb") as fh:
            raw = fh.read(4097)
    except OSError as exc:
        raise KeyFileInvalid(f"{path} cannot be read: {exc.strerror or exc}") from None
    lines = raw.decode("utf-8", errors="replace").split()
    if len(lines) != 1:
        raise KeyFileInvalid(f"{path} must contain exactly one secret key")
    try:
        return keys_from_secret(secret_hex(lines[0].lower()))
    except InvalidKey:
        raise KeyFileInvalid(
            f"{path} does not contain a valid secret key (64 hex digits or nsec1…)"
        ) from None


MAX_LOG_N = 22  # NIP-49 scrypt cost: 2^22 × 128 B = 512 MiB at most (16 is the usual)
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _scrypt_log_n(ncryptsec: str) -> int:
    """The log_n byte of a NIP-49 key (its second payload byte), read from the bech32 before
    anything runs scrypt; 99 (refused) for what is not bech32."""
    data = ncryptsec.lower().rpartition("1")[2]
    try:
        values = [_BECH32.index(c) for c in data[:4]]
    except ValueError:
        return 99
    if len(values) < 4:
        return 99
    bits = 0
    for v in values:
        bits = (bits << 5) | v
    return (bits >> 4) & 0xFF  # 20 bits: version (8), log_n (8), 4 more
