"""Attacks on the command path.  Each is a real gift wrap published by a separate client; the
node's effects (node state, budgets, approvals, commands that ran, credentials) are compared
before and after, and the exact error code is asserted — from the receipt when the sender is
an authenticated credential holder, from the node's error counters otherwise."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import anyio
import nostr_sdk as sdk
import pytest

from agent.advisory.policy import PolicyConfig
from agent.nostr.client import Incoming, RelayClient
from agent.store import advisory as repo
from events import command, nip44, nip59
from events.base import NostrEvent, make_rumor, parse_event, sign_event
from events.command import Command
from events.credential import Tier
from events.kinds import Kind
from tests.advisory_world import World, world

pytestmark = pytest.mark.anyio
BOOKKEEPING = {
    "seen",
    "error_counts",
    "outbox",
    "outbox_acks",
    "relay_status",
    "kv",
    "cursors",
    "receipts",
    "nonces",
    "rate_buckets",
    "msg_ids",
    "relay_lists",
    "profiles",
}


async def effects(w: World) -> dict[str, Any]:
    snap = w.node.agent.store.snapshot()
    out: dict[str, Any] = {
        t: rows for t, rows in snap.items() if t not in BOOKKEEPING | {"commands"}
    }
    out["commands_run"] = [r for r in snap["commands"] if r[5] not in ("refused",)]
    out["node"] = [c.model_dump() for c in await w.channels()]
    return out


def cmd_for(w: World, cred_id: str, **kw: Any) -> Command:
    now = int(time.time())
    base = dict(
        command_id=secrets.token_hex(16),
        node=w.node.me,
        credential_id=cred_id,
        schema="hive:fee-policy/v1",
        action="set_single",
        params={},
        nonce=secrets.token_hex(16),
        issued_at=now,
        expires_at=now + 300,
    )
    return Command(**{**base, **kw})


async def send(relay: str, wrap: NostrEvent) -> None:
    async with RelayClient([relay]) as client:
        await client.publish(wrap)


def wrap_cmd(w: World, cmd: Command, keys: sdk.Keys | None = None) -> NostrEvent:
    keys = keys or w.advisor.agent.keys
    rumor = command.FAMILY.rumor(keys.public_key().to_hex(), cmd, created_at=int(time.time()))
    return nip59.wrap(keys, w.node.me, rumor, now=int(time.time()))


async def receipt_code(w: World, command_id: str) -> str | None:
    with anyio.fail_after(10):
        while not (held := repo.held_for_command(w.advisor.agent.store, command_id)):
            await anyio.sleep(0.05)
    return held[-1].error.code if held[-1].error else None


async def counted(w: World, code: str, before: int) -> None:
    with anyio.fail_after(10):
        while w.node.agent.store.error_counts().get(code, 0) <= before:
            await anyio.sleep(0.05)


@pytest.fixture
async def setup(tmp_path: Path, relay_url: str):
    policy = PolicyConfig(rate_per_minute=50)
    async with world(tmp_path, relay_url, policy) as w:
        cred = w.grant(tier=Tier.STANDARD, schemas=("hive:fee-policy/*", "hive:htlc-policy/*"))
        await w.wait_credential(cred)
        scid = (await w.channels())[0].short_channel_id
        yield w, cred.credential_id, scid, relay_url


async def test_unauthenticated_attacks(setup) -> None:
    w, cred_id, scid, relay = setup
    good = cmd_for(w, cred_id, params={"channel": scid, "fee_ppm": 110})
    mallory = sdk.Keys.generate()
    before = await effects(w)

    # forged signature on the gift wrap: honest relays refuse it, a hostile one would pass it on
    forged = wrap_cmd(w, good).model_dump() | {"sig": "00" * 64}
    errors0 = dict(w.node.agent.store.error_counts())
    w.node.agent.inbound.process([Incoming("hostile", json.dumps(forged), "inbox")])
    assert w.node.agent.store.error_counts()["BAD_SIGNATURE"] == errors0.get("BAD_SIGNATURE", 0) + 1

    # seal signed by Mallory around a rumor claiming the advisor wrote it
    rumor = command.FAMILY.rumor(w.advisor.me, good, created_at=int(time.time()))
    seal = sign_event(
        mallory, Kind.SEAL, nip44.encrypt(mallory, w.node.me, rumor.to_json()), [], int(time.time())
    )
    one_time = sdk.Keys.generate()
    wrap = sign_event(
        one_time,
        Kind.GIFT_WRAP,
        nip44.encrypt(one_time, w.node.me, seal.to_json()),
        [["p", w.node.me]],
        int(time.time()),
    )
    n = w.node.agent.store.error_counts().get("SEAL_MISMATCH", 0)
    await send(relay, wrap)
    await counted(w, "SEAL_MISMATCH", n)

    # a command for another node
    n = w.node.agent.store.error_counts().get("WRONG_RECIPIENT", 0)
    await send(relay, wrap_cmd(w, good.model_copy(update={"node": mallory.public_key().to_hex()})))
    await counted(w, "WRONG_RECIPIENT", n)

    # Mallory using the advisor's credential id
    n = w.node.agent.store.error_counts().get("UNAUTHORIZED", 0)
    await send(relay, wrap_cmd(w, good, keys=mallory))
    await counted(w, "UNAUTHORIZED", n)

    # a rumor over MAX_RUMOR_BYTES cannot even fit an event a relay accepts
    big = make_rumor(w.advisor.me, Kind.COMMAND, "x" * 28_000, [], int(time.time()))
    huge = big.model_copy(update={"content": "x" * 40_000})
    sealed = sign_event(
        w.advisor.agent.keys,
        Kind.SEAL,
        nip44.encrypt(w.advisor.agent.keys, w.node.me, huge.to_json()),
        [],
        int(time.time()),
    )
    # our own signer refuses to make an event this big, so the attacker uses nostr-sdk directly
    content = nip44.encrypt(one_time, w.node.me, sealed.to_json())
    raw = sdk.EventBuilder(sdk.Kind(Kind.GIFT_WRAP), content).tags(
        [sdk.Tag.parse(["p", w.node.me])]
    )
    oversize_json = raw.finalize(one_time).as_json()
    assert len(oversize_json) > 65_536
    async with RelayClient([relay]) as client:
        out = await client._client.send_event(sdk.Event.from_json(oversize_json))
        assert not out.success  # the relay refuses it
    n = w.node.agent.store.error_counts().get("TOO_LARGE", 0)
    w.node.agent.inbound.process([Incoming("hostile", oversize_json, "inbox")])
    assert w.node.agent.store.error_counts()["TOO_LARGE"] == n + 1

    await anyio.sleep(0.3)
    assert await effects(w) == before
    assert repo.held_receipts(w.advisor.agent.store) == []  # strangers get no answers


@pytest.mark.parametrize(
    ("name", "change", "code"),
    [
        ("expired", {"issued_at": -200, "expires_at": -10}, "EXPIRED"),
        ("outside the clock window", {"issued_at": 400, "expires_at": 600}, "EXPIRED"),
        (
            "unknown schema",
            {"schema": "hive:teleport/v1", "action": "go", "params": {}},
            "INVALID_PARAMS",
        ),
        ("schema not allowed", {"schema": "hive:channel/v1", "action": "close"}, "RESTRICTED"),
        ("extra params", {"params": {"fee_ppm": 105, "evil": True}}, "INVALID_PARAMS"),
        (
            "danger above tier",
            {
                "schema": "hive:fee-policy/v1",
                "action": "set_bulk",
                "params": {"fee_ppm": 105, "base_msat": 1000},
            },
            None,
        ),
    ],
)
async def test_holder_attacks(setup, name: str, change: dict, code: str | None) -> None:
    w, cred_id, scid, relay = setup
    now = int(time.time())
    changes = dict(change)
    for key in ("issued_at", "expires_at"):
        if key in changes:
            changes[key] = now + changes[key]
    if (
        "params" in changes
        and "channel" not in changes["params"]
        and changes.get("action") != "set_bulk"
    ):
        changes["params"] = {"channel": scid, **changes["params"]}
    changes.setdefault("params", {"channel": scid, "fee_ppm": 105})
    if (
        name == "danger above tier"
    ):  # standard tier: cap 5 — set_bulk is 5, so use a monitor credential
        cred = w.grant(tier=Tier.MONITOR, schemas=("hive:fee-policy/*",))
        await w.wait_credential(cred)
        cred_id, code = cred.credential_id, "RESTRICTED"
    if name == "schema not allowed":
        changes["params"] = {"channel": scid}
    before = await effects(w)
    cmd = cmd_for(w, cred_id, **changes)
    await send(relay, wrap_cmd(w, cmd))
    assert await receipt_code(w, cmd.command_id) == code
    assert await effects(w) == before


async def test_replays_and_nonces(setup) -> None:
    w, cred_id, scid, relay = setup
    cmd = cmd_for(w, cred_id, params={"channel": scid, "fee_ppm": 105})
    wrap = wrap_cmd(w, cmd)
    await send(relay, wrap)
    assert await receipt_code(w, cmd.command_id) is None  # ran
    after_first = await effects(w)
    first_receipt = repo.held_for_command(w.advisor.agent.store, cmd.command_id)[0]

    await send(relay, wrap)  # the very same event again: dropped as a duplicate
    await send(relay, wrap_cmd(w, cmd))  # the same command re-wrapped: the stored receipt again
    await anyio.sleep(1)
    assert {r.receipt_id for r in repo.held_for_command(w.advisor.agent.store, cmd.command_id)} == {
        first_receipt.receipt_id
    }
    assert await effects(w) == after_first

    other = cmd.model_copy(
        update={"params": {"channel": scid, "fee_ppm": 111}, "nonce": secrets.token_hex(16)}
    )
    await send(relay, wrap_cmd(w, other))
    with anyio.fail_after(10):
        while len(repo.held_for_command(w.advisor.agent.store, cmd.command_id)) < 2:
            await anyio.sleep(0.05)
    assert repo.held_for_command(w.advisor.agent.store, cmd.command_id)[-1].error.code == "REPLAYED"

    reused = cmd_for(w, cred_id, params={"channel": scid, "fee_ppm": 106}, nonce=cmd.nonce)
    await send(relay, wrap_cmd(w, reused))
    assert await receipt_code(w, reused.command_id) == "REPLAYED"
    assert await effects(w) == after_first


async def test_budget_rate_and_quiet_hours(setup) -> None:
    w, cred_id, scid, relay = setup
    w.node.policy = w.node.policy.model_copy(update={"rate_per_minute": 2})
    for fee in (101, 102):
        cmd = cmd_for(w, cred_id, params={"channel": scid, "fee_ppm": fee})
        await send(relay, wrap_cmd(w, cmd))
        assert await receipt_code(w, cmd.command_id) is None
    before = await effects(w)
    fast = cmd_for(w, cred_id, params={"channel": scid, "fee_ppm": 103})
    await send(relay, wrap_cmd(w, fast))
    assert await receipt_code(w, fast.command_id) == "RATE_LIMITED"
    assert await effects(w) == before

    hour = (int(time.time()) % 86400) // 3600
    w.node.policy = w.node.policy.model_copy(
        update={"rate_per_minute": 60, "quiet_hours_utc": (hour, (hour + 1) % 24)}
    )
    quiet = cmd_for(
        w,
        cred_id,
        schema="hive:htlc-policy/v1",
        action="set_min",
        params={"channel": scid, "htlc_min_msat": 2000},
    )
    await send(relay, wrap_cmd(w, quiet))
    assert await receipt_code(w, quiet.command_id) == "RESTRICTED"

    w.node.policy = w.node.policy.model_copy(update={"quiet_hours_utc": None})
    cred = w.grant(tier=Tier.ADVANCED, schemas=("hive:rebalance/*",), max_daily_actions=100)
    await w.wait_credential(cred)
    before = await effects(w)
    w.node.policy = w.node.policy.model_copy(
        update={"budgets": w.node.policy.budgets.model_copy(update={"sats_moved_per_day": 50_000})}
    )
    chans = await w.channels()
    big = cmd_for(
        w,
        cred.credential_id,
        schema="hive:rebalance/v1",
        action="circular",
        params={
            "from_channel": chans[0].short_channel_id,
            "to_channel": chans[1].short_channel_id,
            "amount_sats": 60_000,
            "max_fee_ppm": 500,
        },
    )
    await send(relay, wrap_cmd(w, big))
    assert await receipt_code(w, big.command_id) == "QUOTA_EXCEEDED"
    assert await effects(w) == before


async def test_revoked_credential(setup) -> None:
    w, cred_id, scid, relay = setup
    await w.node.credentials.revoke(cred_id)
    before = await effects(w)
    n = w.node.agent.store.error_counts().get("UNAUTHORIZED", 0)
    await send(relay, wrap_cmd(w, cmd_for(w, cred_id, params={"channel": scid, "fee_ppm": 105})))
    await counted(w, "UNAUTHORIZED", n)
    assert await effects(w) == before


async def test_another_advisor_reusing_a_command_id_gets_nothing(setup) -> None:
    """Bob holds a valid credential of his own and re-sends Alice's command id with the same
    parameters: the stored receipt is Alice's, so Bob is refused (counted) and answered
    nothing — not the receipt, not REPLAYED."""
    from events import credential as cred_events
    from events.credential import Constraints, ManagementCredential

    w, cred_id, scid, relay = setup
    alice_cmd = cmd_for(w, cred_id, params={"channel": scid, "fee_ppm": 107})
    await send(relay, wrap_cmd(w, alice_cmd))
    assert await receipt_code(w, alice_cmd.command_id) is None  # Alice's command ran

    bob = sdk.Keys.generate()
    now = int(time.time())
    bob_cred = ManagementCredential(
        credential_id=secrets.token_hex(16),
        node=w.node.me,
        advisor=bob.public_key().to_hex(),
        tier=Tier.STANDARD,
        allowed_schemas=["hive:fee-policy/*"],
        constraints=Constraints(),
        valid_from=now - 60,
        valid_until=now + 86400,
    )
    with w.node.agent.store.transaction(now) as tx:
        w.node.credentials.grant(tx, cred_events.sign(w.node.agent.keys, bob_cred))
    before = await effects(w)
    receipts_before = len(repo.chain(w.node.agent.store, cred_id))
    n = w.node.agent.store.error_counts().get("UNAUTHORIZED", 0)
    for params in ({"channel": scid, "fee_ppm": 107}, {"channel": scid, "fee_ppm": 999}):
        stolen = alice_cmd.model_copy(
            update={
                "credential_id": bob_cred.credential_id,
                "nonce": secrets.token_hex(16),
                "params": params,
            }
        )
        await send(relay, wrap_cmd(w, stolen, keys=bob))
        await counted(w, "UNAUTHORIZED", n)
        n += 1
    # nothing was answered to Bob: what the relay holds for him is only his own credential
    await anyio.sleep(1)
    async with RelayClient([relay]) as reader:
        await reader.subscribe([{"kinds": [Kind.GIFT_WRAP], "#p": [bob.public_key().to_hex()]}])
        kinds = []
        with anyio.move_on_after(1.5):
            while True:
                raw = (await reader.inbox.receive()).raw
                kinds.append(nip59.unwrap(bob, parse_event(raw), now=int(time.time())).rumor.kind)
    assert kinds == [Kind.CREDENTIAL_GRANT], "the node answered the other advisor"
    assert await effects(w) == before
    assert len(repo.chain(w.node.agent.store, cred_id)) == receipts_before


async def test_a_strangers_receipts_never_enter_the_advisors_chains(setup) -> None:
    """Any node may send an advisor receipts.  One naming a credential the advisor holds from
    another node (a forged link in that chain, answering our real command id) is refused
    UNAUTHORIZED and counted; one naming a credential nobody granted us is kept aside (its
    grant could still be on the way) but never read into a chain: `wait_for` still returns the
    real receipt, and every chain the advisor holds still verifies."""
    from events import receipt as receipt_events

    w, cred_id, scid, relay = setup
    real_cmd = cmd_for(w, cred_id, params={"channel": scid, "fee_ppm": 108})
    await send(relay, wrap_cmd(w, real_cmd))
    assert await receipt_code(w, real_cmd.command_id) is None
    real = repo.held_for_command(w.advisor.agent.store, real_cmd.command_id)[-1]

    mallory = sdk.Keys.generate()
    advisor_store = w.advisor.agent.store
    refused = advisor_store.error_counts().get("UNAUTHORIZED", 0)
    forged_link = real.body() | {
        "receipt_id": secrets.token_hex(16), "seq": 2, "node": mallory.public_key().to_hex(),
        "result": {"forged": True}, "prev_hash": real.receipt_hash,
    }  # fmt: skip
    unknown = forged_link | {
        "receipt_id": secrets.token_hex(16), "credential_id": secrets.token_hex(16), "seq": 5,
    }  # fmt: skip
    for body in (forged_link, unknown):
        sealed = receipt_events.seal(mallory, body)
        rumor = receipt_events.FAMILY.rumor(body["node"], sealed, created_at=int(time.time()))
        await send(relay, nip59.wrap(mallory, w.advisor.me, rumor, now=int(time.time())))
    with anyio.fail_after(10):
        while advisor_store.error_counts().get("UNAUTHORIZED", 0) <= refused:
            await anyio.sleep(0.05)
        while not advisor_store.conn.execute(  # the second one is kept aside
            "SELECT 1 FROM receipts_held WHERE credential_id = ?", (unknown["credential_id"],)
        ).fetchone():
            await anyio.sleep(0.05)
    assert advisor_store.error_counts()["UNAUTHORIZED"] == refused + 1
    held = repo.held_for_command(advisor_store, real_cmd.command_id)
    assert [r.receipt_id for r in held] == [real.receipt_id]
    assert w.advisor.verify_chain() == {cred_id: 1}  # every node's chains, none mixed
    assert [r.receipt_id for r in repo.held_receipts(advisor_store)] == [real.receipt_id]


async def test_an_advisor_cannot_flood_the_operators_queue(tmp_path: Path, relay_url: str) -> None:
    """In operator mode every command waits for a person, up to a day, and each waiting one is
    read at every step of the node's loop: one advisor may have `max_waiting_per_advisor`
    waiting at once; the next are refused RATE_LIMITED (counted), and the queue stays as it
    was.  Once the operator decides, the advisor may queue again."""
    from agent.advisory.node import vote
    from agent.advisory.policy import Mode

    policy = PolicyConfig(mode=Mode.OPERATOR, max_waiting_per_advisor=3, rate_per_minute=100)
    async with world(tmp_path, relay_url, policy) as w:
        cred = w.grant(tier=Tier.STANDARD, schemas=("hive:fee-policy/*",))
        await w.wait_credential(cred)
        scid = (await w.channels())[0].short_channel_id
        store = w.node.agent.store

        async def send(ppm: int) -> tuple[str, str]:
            cmd, _ = await w.advisor.advise(
                w.node.me, "hive:fee-policy/v1", "set_single",
                {"channel": scid, "fee_ppm": ppm}, wait=False,
            )  # fmt: skip
            with anyio.fail_after(10):
                while not (held := repo.held_for_command(w.advisor.agent.store, cmd.command_id)):
                    await anyio.sleep(0.05)
            return cmd.command_id, held[-1].error.code if held[-1].error else held[-1].status.value

        sent = [await send(ppm) for ppm in range(101, 106)]
        assert [code for _, code in sent] == ["queued"] * 3 + ["RATE_LIMITED"] * 2
        assert len(w.node.pending()) == 3
        assert store.error_counts().get("RATE_LIMITED", 0) == 2
        assert 104 not in {c.policy.ppm for c in await w.channels()}  # nothing ran
        vote(store, sent[0][0], "reject", int(time.time()))  # the operator decides one
        w.node.wake()
        with anyio.fail_after(10):
            while len(w.node.pending()) != 2:
                await anyio.sleep(0.05)
        assert (await send(107))[1] == "queued"  # room again


async def test_only_the_nodes_own_credentials_about_an_advisor_speed_its_commands(
    tmp_path: Path, relay_url: str
) -> None:
    """The approval engine weighs a reputation factor r from credentials about the advisor.
    A stranger's top credential about it, held in a store of before agents refused them at
    intake, made r 2: a danger-5 command that waits for the operator (moderate, L 5) ran at
    once. Only the node's own credentials count: the stranger's changes nothing, the node's
    own (`rep issue`) does."""
    from agent.store import market as market_repo
    from tests.test_market_attacks import credential, unchecked

    now, day = int(time.time()), 86400

    def hold(store: Any, issuer: sdk.Keys, subject: str, d: str) -> None:
        cred = credential(issuer.public_key().to_hex(), subject, now - 31 * day, now - day)
        event = unchecked(issuer, cred, now)
        address = f"{Kind.REPUTATION}:{event.pubkey}:{d}"
        with store.transaction(now) as tx:
            market_repo.save_credential(tx, address, cred, event.to_json())

    async with world(tmp_path, relay_url, PolicyConfig()) as w:
        cred = w.grant(tier=Tier.ADVANCED, schemas=("hive:fee-policy/*",))
        await w.wait_credential(cred)
        store = w.node.agent.store

        async def bulk(ppm: int) -> str:
            cmd, _ = await w.advisor.advise(
                w.node.me, "hive:fee-policy/v1", "set_bulk", {"fee_ppm": ppm, "base_msat": 1000},
                wait=False,
            )  # fmt: skip
            with anyio.fail_after(10):
                while not (held := repo.held_for_command(w.advisor.agent.store, cmd.command_id)):
                    await anyio.sleep(0.05)
            return held[-1].status.value

        hold(store, sdk.Keys.generate(), w.advisor.me, "sybil")
        assert await bulk(121) == "queued"  # the stranger's opinion: r stays 1
        hold(store, w.node.agent.keys, w.advisor.me, "ours")
        assert await bulk(122) == "ok"  # the node's own: r 2, L 2.5, run at once
