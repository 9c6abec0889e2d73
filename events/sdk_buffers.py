"""A faster byte copy into nostr-sdk's Rust buffers.

nostr-sdk 0.45's generated (uniffi) Python bindings copy every string and byte string handed
to Rust into the Rust buffer one byte at a time, in a Python loop: ~0.2 ms for a 2 KB gift
wrap.  When encryption and signing still went through nostr-sdk that happened several times per
private message and was the largest single cost of an advisor command round trip (cProfile on
bench/command_rtt.py); now it is paid once per event published (`Event.from_json`) and for the
subscription filters.  `install()` replaces that
one loop with a single `memmove`; everything else in the bindings is untouched.  The result
is byte-for-byte the same buffer (tests/test_sdk_buffers.py checks it against the original on
arbitrary input).  If a future nostr-sdk changes the helper, nothing is replaced.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from nostr_sdk import nostr_sdk as _bindings

_Builder: Any = getattr(_bindings, "_UniffiRustBufferBuilder", None)
ORIGINAL: Callable[[Any, Any], None] | None = getattr(_Builder, "write", None)


def _write(self: Any, value: Any) -> None:
    data = bytes(value)
    n = len(data)
    with self._reserve(n):  # grows the Rust buffer if needed; adds n to len on exit
        if n:
            start = ctypes.cast(self.rbuf.data, ctypes.c_void_p).value
            assert start is not None
            ctypes.memmove(start + self.rbuf.len, data, n)


def install() -> bool:
    """Use the memmove copy; False (and no change) if the bindings are not the expected ones."""
    if _Builder is None or ORIGINAL is None or not hasattr(_Builder, "_reserve"):
        return False
    _Builder.write = _write
    return True


INSTALLED = install()
