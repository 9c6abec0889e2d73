"""Reading a secret key and its password for `hive-agent keys import`: from a file, from
stdin, or prompted without echo on a terminal.  Neither is ever printed nor logged."""

from __future__ import annotations

import getpass
import os
import sys

from agent.config_files import read_user_file
from agent.errors import UsageError

PASSWORD_ENV = "HIVE_KEY_PASSWORD"  # noqa: S105 - the name of a variable


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def read_secret(path: str | None) -> str:
    """The key from `path` ('-' is stdin), else prompted on a terminal, else read from stdin."""
    if path is None and sys.stdin.isatty():
        text = getpass.getpass("secret key (hex, nsec1… or ncryptsec1…): ")
    else:
        text = read_user_file(path or "-", "--from" if path else "standard input")
    if not _first_line(text):
        raise UsageError("no secret key given (prompt, --from FILE, or stdin)")
    return _first_line(text)


def read_password(path: str | None) -> str:
    """The ncryptsec password: --password-file, else HIVE_KEY_PASSWORD, else prompted."""
    if path is not None:
        return _first_line(read_user_file(path, "--password-file"))
    if PASSWORD_ENV in os.environ:
        return os.environ[PASSWORD_ENV]
    try:
        with open("/dev/tty"):  # only to learn whether there is a terminal to prompt on
            pass
    except OSError:
        raise UsageError(
            f"an ncryptsec1… key needs its password: --password-file FILE or {PASSWORD_ENV}"
        ) from None
    return getpass.getpass("password: ")
