"""events.sdk_buffers: the memmove copy fills nostr-sdk's Rust buffer exactly as the
bindings' own byte loop does, and is the one installed."""

from __future__ import annotations

import ctypes

from hypothesis import given
from hypothesis import strategies as st
from nostr_sdk import nostr_sdk as bindings

from events import sdk_buffers


def fill(write, chunks: list[bytes]) -> bytes:
    builder = bindings._UniffiRustBufferBuilder()
    for chunk in chunks:
        write(builder, chunk)
    rbuf = builder.finalize()
    try:
        return ctypes.string_at(rbuf.data, rbuf.len) if rbuf.len else b""
    finally:
        rbuf.free()


def test_installed_for_the_locked_bindings() -> None:
    assert sdk_buffers.INSTALLED
    assert bindings._UniffiRustBufferBuilder.write is sdk_buffers._write


@given(st.lists(st.binary(max_size=3000), max_size=6))
def test_same_bytes_as_the_original(chunks: list[bytes]) -> None:
    assert sdk_buffers.ORIGINAL is not None
    assert (
        fill(sdk_buffers._write, chunks) == fill(sdk_buffers.ORIGINAL, chunks) == b"".join(chunks)
    )


def test_round_trip_through_rust() -> None:
    import nostr_sdk as sdk

    from events.base import parse_event, sign_event

    text = "héllo 🐝 " * 5000  # > 50 KB of UTF-8 through one string argument, and back
    signed = sign_event(sdk.Keys.generate(), 1, text, [], 1_700_000_000)
    assert parse_event(signed.model_dump_json()).content == text
