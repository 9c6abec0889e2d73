"""Reading the operator's JSON configuration files (relays.json, policy.json) with one-line,
typed errors: a file that is missing, a directory, unreadable, not UTF-8, not JSON, absurdly
nested or too large, and a model that refuses it, each say so in one sentence."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agent.errors import ConfigInvalid, InputMissing
from events.errors import InvalidParams
from events.types import first_error

M = TypeVar("M", bound=BaseModel)
MAX_CONFIG_BYTES = 1_000_000
MAX_DEPTH = 32


def _depth(value: Any, limit: int) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _read_regular(path: Path, limit: int) -> bytes:
    """At most `limit` bytes of a regular file.  Opened without blocking and checked before
    anything is read: a FIFO nobody writes would block for good, /dev/zero never end."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigInvalid(f"{path} is not a regular file")
        return fh.read(limit)


def read_json(path: Path) -> Any:
    """The JSON value in `path`; ConfigInvalid naming the file and the problem.

    FileNotFoundError is passed on (callers decide whether a missing file is an error).
    """
    if path.is_dir():
        raise ConfigInvalid(f"{path} is a directory, not a configuration file")
    try:
        raw = _read_regular(path, MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigInvalid(f"{path} cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigInvalid(f"{path} is larger than {MAX_CONFIG_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigInvalid(f"{path} is not UTF-8 text (byte {exc.start})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigInvalid(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise ConfigInvalid(f"{path} is nested more deeply than {MAX_DEPTH} levels") from None
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise ConfigInvalid(f"{path} is nested more deeply than {MAX_DEPTH} levels")
    return value


def load_model(model: type[M], path: Path) -> M:
    """`path` validated as `model`; ConfigInvalid in one line if it is not."""
    value = read_json(path)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ConfigInvalid(f"{path}: {first_error(exc)}") from None


def read_user_file(name: str, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """The UTF-8 text of a file named on the command line (`-` for standard input);
    InputMissing or InvalidParams in one line if it cannot be used."""
    if name == "-":
        import sys

        raw = sys.stdin.buffer.read(max_bytes + 1)
    else:
        path = Path(name)
        if path.is_dir():
            raise InputMissing(f"{what} {name} is a directory")
        try:
            with path.open("rb") as fh:
                raw = fh.read(max_bytes + 1)
        except FileNotFoundError:
            raise InputMissing(f"{what} {name} does not exist") from None
        except OSError as exc:
            raise InputMissing(f"{what} {name} cannot be read: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise InvalidParams(f"{what} {name} is larger than {max_bytes:,} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidParams(f"{what} {name} is not UTF-8 text (byte {exc.start})") from None


def parse_user_json(text: str, what: str) -> Any:
    """JSON from a user's file; InvalidParams in one line if it is not JSON."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidParams(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise InvalidParams(f"{what} is nested too deeply") from None
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise InvalidParams(f"{what} is nested more deeply than {MAX_DEPTH} levels")
    return value
