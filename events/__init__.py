"""The wire vocabulary of the Lightning Hive agent: pure, no I/O, no hidden clock.

One module per event family (`agent_info`, `note`, ...) each exposing a pydantic payload model
with `build()`/`rumor()` and `parse()`; `base` for NIP-01 envelopes, `nip44` and `nip59` for
private messages, `errors` for the typed errors everything raises, `kinds` for the registry.
"""

from events import sdk_buffers  # noqa: F401 - installs the fast byte copy before any use
from events.base import (
    MAX_EVENT_BYTES,
    MAX_RUMOR_BYTES,
    NostrEvent,
    Rumor,
    parse_event,
    parse_rumor,
    sign_event,
)
from events.errors import HiveError
from events.kinds import Kind

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_RUMOR_BYTES",
    "HiveError",
    "Kind",
    "NostrEvent",
    "Rumor",
    "parse_event",
    "parse_rumor",
    "sign_event",
]
