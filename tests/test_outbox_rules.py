"""The outbox's rules, without a relay: which OK answers end the retries, and which waiting
rows a newer replaceable event supersedes."""

from __future__ import annotations

import nostr_sdk as sdk
import pytest

from agent.outbox import address_of, classify
from agent.store import Store
from events import relay_lists
from events.base import sign_event


@pytest.mark.parametrize(
    ("reason", "replaceable", "verdict"),
    [
        ("duplicate: already have this event", False, "ack"),
        ("invalid: bad signature", False, "refused"),
        ("blocked: kind 1 is not a Lightning Hive kind", False, "refused"),
        ("blocked: rate-limited: slow down", False, "retry"),
        ("rate-limited: slow down", True, "retry"),
        ("error: unknown", False, "retry"),
        ("error: unknown", True, "refused"),  # nostr-sdk's relay holding a newer version
        ("replaced: have newer event", True, "refused"),
        ("offline", True, "retry"),
        ("timeout", True, "retry"),
        ("auth-required: authenticate first", True, "retry"),
    ],
)
def test_classify(reason: str, replaceable: bool, verdict: str) -> None:
    assert classify(reason, replaceable=replaceable) == verdict


def test_addresses() -> None:
    keys = sdk.Keys.generate()
    me = keys.public_key().to_hex()
    assert address_of(relay_lists.build_dm_relays(keys, [], created_at=1)) == f"10050:{me}:"
    assert address_of(sign_event(keys, 30402, "", [["d", "fees"]], 1)) == f"30402:{me}:fees"
    assert address_of(sign_event(keys, 1059, "", [], 1)) is None


def test_a_newer_version_supersedes_the_waiting_one(tmp_path) -> None:
    store = Store(tmp_path / "s.sqlite")
    keys = sdk.Keys.generate()
    old = relay_lists.build_relay_list(keys, ["wss://a.example"], [], created_at=100)
    new = relay_lists.build_relay_list(keys, ["wss://b.example"], [], created_at=200)
    other = relay_lists.build_dm_relays(keys, ["wss://a.example"], created_at=150)
    with store.transaction(300) as tx:
        for ev in (old, other, new):
            tx.enqueue(ev.id, ev.to_json(), ev.kind, ["wss://r.example"], 1, 9999,
                       address=address_of(ev), created_at=ev.created_at)  # fmt: skip
    assert store.outbox_item(old.id).state == "superseded"
    assert store.outbox_item(new.id).state == "pending"
    assert store.outbox_item(other.id).state == "pending"  # another address
    # an older version arriving later does not supersede the newer one
    older = relay_lists.build_relay_list(keys, ["wss://c.example"], [], created_at=50)
    with store.transaction(301) as tx:
        tx.enqueue(older.id, older.to_json(), older.kind, ["wss://r.example"], 1, 9999,
                   address=address_of(older), created_at=older.created_at)  # fmt: skip
    assert store.outbox_item(new.id).state == "pending"
