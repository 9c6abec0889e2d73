"""Log lines: logfmt (`ts=… level=info logger=hive.store event=refused code=RATE_LIMITED
count=3`) for daemons and whenever a level is asked for (`--log-level`, env HIVE_LOG), so a
daemon's stderr can be grepped and parsed; the short human form (`warning: …`) for one-off
commands.  Lines carry strangers' words (a relay's refusal, a URL from someone's list): every
value is one line with control characters escaped.  Keys are never logged.

    log_event(log, logging.INFO, "refused", code="RATE_LIMITED", count=3)
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, TextIO

from agent.textsafe import for_terminal, inline

LEVELS = ("debug", "info", "warning", "error")
_BARE = re.compile(r"^[A-Za-z0-9_.:/@+,=-]{1,200}$")


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """One structured line: `event=<event>` and each field as `key=value`."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"hive_fields": fields})


def value(raw: Any) -> str:
    """A logfmt value: bare when plain, else JSON-quoted (escapes, one line)."""
    text = str(raw)
    return text if _BARE.match(text) and "=" not in text else json.dumps(inline(text)[:1000])


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        head = f"ts={ts}.{int(record.msecs):03d}Z level={record.levelname.lower()}"
        parts = [head, f"logger={value(record.name)}"]
        fields = getattr(record, "hive_fields", None)
        if fields is not None:
            parts.append(f"event={value(record.getMessage())}")
            parts.extend(f"{key}={value(v)}" for key, v in fields.items())
        else:
            parts.append(f"msg={value(record.getMessage())}")
        if record.exc_info:
            parts.append(f"exc={value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class HumanFormatter(logging.Formatter):
    """`level: message` on one line (what one-off commands print)."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {inline(record.getMessage())}"
        fields = getattr(record, "hive_fields", None)
        if fields:
            text += " " + " ".join(f"{key}={value(v)}" for key, v in fields.items())
        if record.exc_info:
            text += "\n" + for_terminal(self.formatException(record.exc_info))
        return text


class _Stderr(logging.StreamHandler[TextIO]):
    """The handler `configure` installs (and replaces when called again)."""


def configure(level: str | None, *, structured: bool) -> None:
    """Log to stderr at `level` (default warning) in logfmt (`structured`) or the human form."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(old)
    handler = _Stderr(sys.stderr)
    handler.setFormatter(LogfmtFormatter() if structured else HumanFormatter())
    root.addHandler(handler)
    # the agent's own loggers (`hive.*`) from `level`; libraries' chatter only from warning
    root.setLevel(logging.WARNING)
    logging.getLogger("hive").setLevel((level or "warning").upper())


def to_plugin_log(level: str | None) -> None:
    """Inside lightningd: pyln already sends Python logging to the node's log (its root
    handler); make those lines logfmt and let them through from `level` (env HIVE_LOG,
    default info; an unknown value counts as info)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if type(handler).__name__ == "PluginLogHandler":
            handler.setFormatter(LogfmtFormatter())
    chosen = (level or "").strip().lower()
    logging.getLogger("hive").setLevel((chosen if chosen in LEVELS else "info").upper())
