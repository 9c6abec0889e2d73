"""`hive-agent`: runs one command and maps what went wrong to an exit status.

Errors are one line on stderr (`error: CODE: sentence`), or a JSON object with `--json`; the
exit status says what kind of failure it was (sysexits.h, see agent/errors.py).  Tracebacks
only with HIVE_DEBUG=1.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import sqlite3
import sys

from pydantic import ValidationError

from agent.cli.common import emitter
from agent.cli.parser import build_parser
from agent.errors import (
    ConfigInvalid,
    DiskError,
    StoreBusy,
    StoreCorrupt,
    UsageError,
    exit_code_of,
)
from agent.logs import LEVELS, configure
from agent.settings import Settings
from agent.textsafe import for_terminal, inline
from events.errors import HiveError, Internal, InvalidParams
from events.types import first_error

DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT, errno.EFBIG}


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


DAEMONS = {"run", "node"}  # log in logfmt, from info, unless told otherwise


def _log_level(args: argparse.Namespace) -> str | None:
    """--log-level, else HIVE_LOG (checked like the option), else None (the default)."""
    if args.log_level:
        return str(args.log_level)
    env = os.environ.get("HIVE_LOG", "").strip().lower()
    if env and env not in LEVELS:
        raise UsageError(f"HIVE_LOG={inline(env)[:40]!r} is not one of {', '.join(LEVELS)}")
    return env or None


def _configure_logs(args: argparse.Namespace) -> None:
    level = _log_level(args)
    daemon = args.command in DAEMONS
    configure(level or ("info" if daemon else None), structured=daemon or level is not None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    configure(None, structured=False)
    as_json = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
        _configure_logs(args)
    except HiveError as error:  # usage errors, and values an argument type refused
        return _fail(error, as_json)
    try:
        settings = _settings(args)
        return int(args.func(args, settings, emitter(args.json)))
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
