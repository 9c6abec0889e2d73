"""An advisor written with nostr-tools (node), against our node agent on a real relay.

The JS side never touches the project's code: it unwraps the credential it was granted, builds
a command rumor and gift-wraps it with nostr-tools' NIP-59, and unwraps the receipt.  Then the
same with a plain kind-14 DM, as any NIP-17 DM client would send it.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import anyio
import pytest

from agent.advisory.usage import usage_text
from agent.nostr.client import RelayClient
from events import nip59, receipt
from events.base import event_id, parse_event
from events.kinds import Kind
from events.receipt import Status
from tests.advisory_world import World, world
from tests.interop.nostr_tools import NostrTools

pytestmark = [pytest.mark.interop, pytest.mark.anyio]

JS_SK = secrets.token_hex(32)


class JsAdvisor:
    """The JS advisor's view of the relay: its gift wraps, unwrapped by nostr-tools."""

    def __init__(self, tools: NostrTools, client: RelayClient, sk: str = JS_SK) -> None:
        self.tools, self.client, self.sk = tools, client, sk
        self.pub: str = tools.call("pubkey", sk=sk)

    async def next_rumor(self, kind: int, timeout: float = 10) -> dict:
        with anyio.fail_after(timeout):
            while True:
                wrap = json.loads((await self.client.inbox.receive()).raw)
                rumor = self.tools.call("unwrap", sk=self.sk, wrap=wrap)
                if rumor["kind"] == kind:
                    return rumor

    async def send(self, node: str, kind: int, content: str, tags: list[list[str]]) -> str:
        """Gift-wrap a rumor to `node` with nostr-tools; the rumor's id."""
        now = int(time.time())
        template = {"kind": kind, "created_at": now, "tags": tags, "content": content}
        wrap = self.tools.call("wrap", sk=self.sk, recipient=node, template=template)
        published = await self.client.publish(parse_event(json.dumps(wrap)))
        assert published.accepted, published.failed
        return event_id(self.pub, now, kind, tags, content)


async def js_advisor(
    w: World, tools: NostrTools, client: RelayClient, sk: str = JS_SK
) -> tuple[JsAdvisor, str]:
    js = JsAdvisor(tools, client, sk)
    await client.subscribe([{"kinds": [Kind.GIFT_WRAP], "#p": [js.pub]}])
    w.node.credentials.issue(js.pub, "standard", ["hive:fee-policy/*", "hive:monitor/*"])
    grant = json.loads((await js.next_rumor(Kind.CREDENTIAL_GRANT))["content"])
    assert grant["credential"]["advisor"] == js.pub
    return js, grant["credential"]["credential_id"]


async def test_nostr_tools_command_and_receipt(
    tmp_path: Path, relay_url: str, nostr_tools: NostrTools
) -> None:
    async with world(tmp_path, relay_url) as w, RelayClient([relay_url]) as client:
        js, credential_id = await js_advisor(w, nostr_tools, client)
        scid = (await w.channels())[0].short_channel_id
        now = int(time.time())
        command = {
            "command_id": secrets.token_hex(16),
            "node": w.node.me,
            "credential_id": credential_id,
            "schema": "hive:fee-policy/v1",
            "action": "set_single",
            "params": {"channel": scid, "fee_ppm": 115},
            "nonce": secrets.token_hex(16),
            "issued_at": now,
            "expires_at": now + 300,
        }
        tags = [["alt", "Lightning Hive advisor command"]]
        await js.send(w.node.me, Kind.COMMAND, json.dumps(command), tags)
        got = await js.next_rumor(Kind.RECEIPT)
        assert got["pubkey"] == w.node.me  # nostr-tools checked seal signer == rumor author
        sealed = receipt.Receipt.model_validate_json(got["content"])
        receipt.verify(sealed)  # the node's signature over the receipt
        assert sealed.command_id == command["command_id"]
        assert sealed.status == Status.OK and sealed.advisor == js.pub
        assert (await w.channels())[0].policy.ppm == 115

        # the same gift wrap again (a relay redelivering it): the stored receipt, no new action
        await js.send(w.node.me, Kind.COMMAND, json.dumps(command), tags)
        again = receipt.Receipt.model_validate_json((await js.next_rumor(Kind.RECEIPT))["content"])
        assert again.receipt_id == sealed.receipt_id


async def test_plain_kind14_dm_command(
    tmp_path: Path, relay_url: str, nostr_tools: NostrTools
) -> None:
    async with world(tmp_path, relay_url) as w, RelayClient([relay_url]) as client:
        js, _ = await js_advisor(w, nostr_tools, client)
        scid = (await w.channels())[0].short_channel_id
        p = [["p", w.node.me]]
        asked = await js.send(
            w.node.me, Kind.DIRECT_MESSAGE, f"fee-policy set_single channel={scid} fee_ppm=112", p
        )
        reply = await js.next_rumor(Kind.DIRECT_MESSAGE)
        assert reply["pubkey"] == w.node.me
        assert reply["content"].startswith("done: fee-policy set_single"), reply["content"]
        assert reply["tags"] == [["p", js.pub], ["e", asked]]  # NIP-17: a reply names its DM
        # NIP-17: the sender wraps a copy to itself; the node reads it and does not answer it
        copies = await own_copies(w, 1)
        assert [c.rumor.id for c in copies] == [reply["id"]]
        assert (await w.channels())[0].policy.ppm == 112

        # same checks as any command: a fee jump over the credential's limit is refused
        await js.send(
            w.node.me, Kind.DIRECT_MESSAGE, f"fee-policy set_single channel={scid} fee_ppm=900", p
        )
        refused = await js.next_rumor(Kind.DIRECT_MESSAGE)
        assert "refused" in refused["content"] and "RESTRICTED" in refused["content"]
        assert (await w.channels())[0].policy.ppm == 112

        await js.send(w.node.me, Kind.DIRECT_MESSAGE, "status", p)
        status = await js.next_rumor(Kind.DIRECT_MESSAGE)
        assert status["content"].startswith("done: monitor get_info"), status["content"]


async def own_copies(w: World, expected: int) -> list[nip59.Unwrapped]:
    """The DMs the node wrapped to itself (its copies of what it sent), once `expected` are on
    the relay (and a moment more, to see that no more come)."""
    opened: list[nip59.Unwrapped] = []
    with anyio.fail_after(10):
        while len(opened) < expected:
            await anyio.sleep(0.1)
            raws = await w.node.agent.fetch([{"kinds": [Kind.GIFT_WRAP], "#p": [w.node.me]}])
            opened = []
            for raw in raws:
                got = nip59.unwrap(w.node.agent.keys, parse_event(raw), now=int(time.time()))
                if got.sender == w.node.me and got.rumor.kind == Kind.DIRECT_MESSAGE:
                    opened.append(got)
    return opened


async def test_help_and_unreadable_dms_get_the_usage_text_rate_limited(
    tmp_path: Path, relay_url: str, nostr_tools: NostrTools
) -> None:
    async with world(tmp_path, relay_url) as w, RelayClient([relay_url]) as client:
        js, _ = await js_advisor(w, nostr_tools, client, secrets.token_hex(32))
        p = [["p", w.node.me]]
        asked = await js.send(w.node.me, Kind.DIRECT_MESSAGE, "help", p)
        usage = await js.next_rumor(Kind.DIRECT_MESSAGE)
        assert usage["content"] == usage_text() and usage["tags"] == [["p", js.pub], ["e", asked]]
        assert usage_text().startswith("Lightning Hive node agent. DM commands")
        assert "fee-policy" in usage_text() and "approve <id>" in usage_text()
        asked = await js.send(w.node.me, Kind.DIRECT_MESSAGE, "fee-policy", p)  # no action
        unread = await js.next_rumor(Kind.DIRECT_MESSAGE)
        assert unread["content"] == (
            "write: <schema> <action> key=value …  (e.g. fee-policy set_single channel=… "
            "fee_ppm=…)\n\n" + usage_text()
        )
        assert unread["tags"] == [["p", js.pub], ["e", asked]]

        # a stranger (no credential) gets the usage text too, three times an hour, then nothing
        stranger = JsAdvisor(nostr_tools, client, secrets.token_hex(32))
        await client.subscribe([{"kinds": [Kind.GIFT_WRAP], "#p": [stranger.pub]}])
        for text in ("hello?", "help", "fee-policy set_single channel=1x1x1 fee_ppm=1", "x", "y"):
            await stranger.send(w.node.me, Kind.DIRECT_MESSAGE, text, p)
        answers = [await stranger.next_rumor(Kind.DIRECT_MESSAGE) for _ in range(3)]
        assert [a["content"] for a in answers] == [usage_text()] * 3
        with pytest.raises(TimeoutError):
            await stranger.next_rumor(Kind.DIRECT_MESSAGE, timeout=2)
        errors = w.node.agent.store.error_counts()
        # counted: the stranger's four texts that are not `help`, the two it got no answer to,
        # and the holder's text that is no command
        assert (errors["UNAUTHORIZED"], errors["RATE_LIMITED"], errors["INVALID_PARAMS"]) == (
            4,
            2,
            1,
        )
        # another agent's answer (a reply: `e` tag) gets no usage text, so two agents never
        # answer each other in a loop
        other = JsAdvisor(nostr_tools, client, secrets.token_hex(32))
        await client.subscribe([{"kinds": [Kind.GIFT_WRAP], "#p": [other.pub]}])
        await other.send(w.node.me, Kind.DIRECT_MESSAGE, "ok", [*p, ["e", "ab" * 32]])
        with pytest.raises(TimeoutError):
            await other.next_rumor(Kind.DIRECT_MESSAGE, timeout=2)
        assert w.node.agent.store.error_counts()["UNAUTHORIZED"] == 5  # counted all the same
        await anyio.sleep(1)
        assert len(await own_copies(w, 5)) == 5  # a copy of every DM it sent, no more
