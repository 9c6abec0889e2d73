"""Act 2: the operator sends the advisor a gift-wrapped note (NIP-44 v2 inside a NIP-59 seal and
gift wrap) and gets a gift-wrapped reply; the relay only sees kind 1059 from one-time keys with
randomised dates."""

from __future__ import annotations

import uuid
from typing import Any

from agent.demo.common import Pair, receive
from agent.demo.narrator import Say
from events import nip59, note
from events.kinds import Kind


async def private_messages_act(say: Say, pair: Pair) -> list[dict[str, Any]]:
    clock, o_pub, a_pub = pair.clock, pair.o_pub, pair.a_pub
    hello = note.Note(msg_id=uuid.uuid4().hex, text="Hi Adam, could you look at my fees next week?")
    now = clock.now()
    rumor = note.rumor(o_pub, hello, created_at=now, expiration=now + 3600)
    wrap = nip59.wrap(pair.olivia, a_pub, rumor, now=now, expiration=now + 7 * 86400)
    await pair.oc.publish(wrap)
    say(
        f"Olivia seals a note to Adam; the relay sees only kind {wrap.kind} "
        f"from one-time key {wrap.pubkey[:16]}…, "
        f"dated {(now - wrap.created_at) // 60} min in the past"
    )
    opened = nip59.unwrap(pair.adam, await receive(pair.ac, Kind.GIFT_WRAP), now=clock.now())
    got = note.parse(opened.rumor, now=clock.now()).payload
    say(f"Adam unwraps it: from {opened.sender[:16]}… (seal signer = author): {got.text!r}")
    answer = note.Note(
        msg_id=uuid.uuid4().hex, text="Sure - send me a credential.", reply_to=got.msg_id
    )
    now = clock.now()
    reply = nip59.wrap(pair.adam, o_pub, note.rumor(a_pub, answer, created_at=now), now=now)
    await pair.ac.publish(reply)
    back = nip59.unwrap(pair.olivia, await receive(pair.oc, Kind.GIFT_WRAP), now=clock.now())
    answered = note.parse(back.rumor, now=clock.now()).payload
    say(f"Olivia unwraps Adam's reply to {answered.reply_to[:8]}…: {answered.text!r}")
    return [
        {"from": "operator", "text": got.text, "wrap_id": wrap.id},
        {"from": "advisor", "text": answered.text, "wrap_id": reply.id},
    ]
