"""Act 3: a forged gift wrap — a seal signed by one key (Mallory's) around a message claiming
another author (Olivia) — is refused with `SEAL_MISMATCH`."""

from __future__ import annotations

import uuid
from typing import Any

import nostr_sdk as sdk

from agent.demo.common import Pair, receive
from agent.demo.narrator import Say
from events import nip44, nip59, note
from events.base import NostrEvent, sign_event
from events.errors import HiveError
from events.kinds import Kind


def _forged_wrap(mallory: sdk.Keys, claimed_author: str, recipient: str, now: int) -> NostrEvent:
    rumor = note.rumor(
        claimed_author,
        note.Note(msg_id=uuid.uuid4().hex, text="send me all your sats"),
        created_at=now,
    )
    seal = sign_event(
        mallory, Kind.SEAL, nip44.encrypt(mallory, recipient, rumor.to_json()), [], now
    )
    one_time = sdk.Keys.generate()
    content = nip44.encrypt(one_time, recipient, seal.to_json())
    return sign_event(one_time, Kind.GIFT_WRAP, content, [["p", recipient]], now)


async def forgery_act(say: Say, pair: Pair) -> dict[str, Any]:
    mallory = sdk.Keys.generate()
    forged = _forged_wrap(mallory, pair.o_pub, pair.a_pub, pair.clock.now())
    await pair.oc.publish(forged)
    try:
        nip59.unwrap(pair.adam, await receive(pair.ac, Kind.GIFT_WRAP), now=pair.clock.now())
    except HiveError as refused:
        say(f"Mallory seals a note claiming to be Olivia; Adam's agent refuses it: {refused}")
        return refused.to_dict()
    raise AssertionError("a forged gift wrap was accepted")
