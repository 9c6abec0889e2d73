"""Text from strangers, made safe for a terminal.

A note, a listing title or a relay's error message is chosen by someone else; printed raw, its
control characters drive the operator's terminal (CSI sequences move the cursor and rewrite
lines, OSC sequences set the window title or, in some terminals, write the clipboard), and
bidirectional overrides make text read differently from what it is.  Every human-readable view
passes through `for_terminal`; JSON output is unaffected (json.dumps escapes control
characters itself).
"""

from __future__ import annotations

import re

# C0 controls but newline and tab, DEL, C1 controls, and Unicode's invisible direction and
# format controls (bidi overrides/isolates, zero-width joiners, line/paragraph separators)
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]"
)
_UNSAFE_INLINE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: str) -> str:
    """`text` with every control character that could drive a terminal shown escaped
    (``\\x1b``); newlines and tabs are kept (a view's own line structure)."""
    return _UNSAFE.sub(_escape, text)


def inline(text: str) -> str:
    """One untrusted field on one line: newlines and tabs escaped too, so a value cannot
    forge further lines of a view."""
    return _UNSAFE_INLINE.sub(_escape, text)
