"""Advisor commands end to end: credential, command, policy, approval, execution, receipts."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from agent.advisory.node import vote
from agent.advisory.policy import Mode, PolicyConfig, Preset
from agent.store import advisory as repo
from events import receipt
from events.credential import Tier
from events.receipt import Status
from tests.advisory_world import world

pytestmark = pytest.mark.anyio


async def test_fee_change_runs_and_the_chain_verifies(tmp_path: Path, relay_url: str) -> None:
    async with world(tmp_path, relay_url) as w:
        cred = w.grant()
        await w.wait_credential(cred)
        scid = (await w.channels())[0].short_channel_id
        cmd, got = await w.advisor.advise(
            w.node.me, "hive:fee-policy/v1", "set_single", {"channel": scid, "fee_ppm": 120}
        )
        assert got is not None, "no receipt"
        assert got.status == Status.OK, got.error
        assert got.command_id == cmd.command_id and got.danger == 2
        assert (await w.channels())[0].policy.ppm == 120
        assert got.state_hash_before != got.state_hash_after
        stored = repo.command_row(w.node.agent.store, cmd.command_id)  # decided and claimed
        assert stored is not None and (stored["state"], stored["route"]) == ("done", "AUTO")
        assert stored["danger"] == 2 and stored["reasons"] == got.decision
        budget = (await w.advisor.advise(w.node.me, "hive:monitor/v1", "budget", {}))[1]
        assert budget is not None and budget.result["used_today"]["actions"] == 1
        assert w.advisor.verify_chain() == {cred.credential_id: 2}
        receipt.verify_chain(repo.chain(w.node.agent.store, cred.credential_id))


async def test_a_receipt_reaches_its_waiters_without_another_read(
    tmp_path: Path, relay_url: str
) -> None:
    """A receipt this process commits is handed to whoever waits for its command: the store is
    read once, when the wait starts, not again after the batch that brought it; two waiters
    on one command both get it; a waiter that finds nothing new reads the store as before."""
    async with world(tmp_path, relay_url) as w:
        await w.wait_credential(w.grant())
        scid = (await w.channels())[0].short_channel_id
        reads: list[str] = []
        w.advisor.agent.store.conn.set_trace_callback(
            lambda sql: reads.append(sql) if "FROM receipts_held" in sql else None
        )
        cmd, _ = await w.advisor.advise(
            w.node.me, "hive:fee-policy/v1", "set_single", {"channel": scid, "fee_ppm": 130},
            wait=False,
        )  # fmt: skip
        got: list[object] = []

        async def wait() -> None:
            got.append(await w.advisor.wait_for(cmd.command_id, 10, final=True))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            tg.start_soon(wait)
        w.advisor.agent.store.conn.set_trace_callback(None)
        assert len(got) == 2 and all(r is not None and r.status == Status.OK for r in got)
        assert len(reads) == 2  # one per waiter, when it started
        assert w.advisor._waiting == {}  # nothing left behind
        again = await w.advisor.wait_for(cmd.command_id, 1, final=True)  # from the store
        assert again is not None and again.receipt_id == got[0].receipt_id  # type: ignore[attr-defined]


async def test_dry_run_predicts_the_real_diff(tmp_path: Path, relay_url: str) -> None:
    async with world(tmp_path, relay_url) as w:
        await w.wait_credential(w.grant())
        scid = (await w.channels())[1].short_channel_id
        params = {"channel": scid, "fee_ppm": 110, "base_msat": 500}
        _, dry = await w.advisor.advise(
            w.node.me, "hive:fee-policy/v1", "set_single", params, dry_run=True
        )
        assert dry is not None and dry.status == Status.DRY_RUN
        assert (await w.channels())[1].policy.ppm == 100  # nothing ran
        predicted = dry.result["predicted_diff"]
        assert predicted == {f"{scid}.base_msat": [1000, 500], f"{scid}.ppm": [100, 110]}
        before = dry.result["state_before"]
        _, real = await w.advisor.advise(w.node.me, "hive:fee-policy/v1", "set_single", params)
        assert real is not None and real.status == Status.OK
        from agent.advisory import effects

        after = {scid: (await w.channels())[1].policy.model_dump()}
        assert effects.diff(before, after) == predicted
        assert real.state_hash_before == dry.state_hash_before


async def test_queued_command_is_approved_by_dm(tmp_path: Path, relay_url: str) -> None:
    async with world(tmp_path, relay_url, PolicyConfig(mode=Mode.OPERATOR)) as w:
        await w.wait_credential(w.grant())
        scid = (await w.channels())[0].short_channel_id
        cmd, queued = await w.advisor.advise(
            w.node.me,
            "hive:fee-policy/v1",
            "set_single",
            {"channel": scid, "fee_ppm": 105},
            wait=False,
        )
        queued = await w.advisor.wait_for(cmd.command_id, 10, final=False)
        assert queued is not None and queued.status == Status.QUEUED
        with anyio.fail_after(10):
            while not w.dms:
                await anyio.sleep(0.05)
        assert f"approve {cmd.command_id[:12]}" in w.dms[0]
        assert (await w.channels())[0].policy.ppm == 100
        from events.base import make_rumor
        from events.kinds import Kind

        reply = make_rumor(
            w.operator.pubkey,
            Kind.DIRECT_MESSAGE,
            f"approve {cmd.command_id[:12]}",
            [["p", w.node.me]],
            w.node.now,
        )
        await w.operator.send_private(w.node.me, reply)
        done = await w.advisor.wait_for(cmd.command_id, 10, final=True)
        assert done is not None and done.status == Status.OK
        assert (await w.channels())[0].policy.ppm == 105


async def test_confirmation_needs_approve_then_confirm(tmp_path: Path, relay_url: str) -> None:
    policy = PolicyConfig(preset=Preset.CONSERVATIVE)  # danger ≥ 5 → CONFIRM
    async with world(tmp_path, relay_url, policy) as w:
        await w.wait_credential(w.grant(tier=Tier.ADVANCED))
        cmd, _ = await w.advisor.advise(
            w.node.me,
            "hive:fee-policy/v1",
            "set_bulk",
            {"fee_ppm": 110, "base_msat": 1000},
            wait=False,
        )
        assert (await w.advisor.wait_for(cmd.command_id, 10, final=False)).status == Status.QUEUED
        # a confirmation before the approval is refused: the approval would run it at once
        from events.errors import InvalidParams

        with pytest.raises(InvalidParams, match="confirm it once approved"):
            vote(w.node.agent.store, cmd.command_id, "confirm", int(time.time()))
        assert repo.approvals(w.node.agent.store, cmd.command_id)["confirm"] == set()
        vote(w.node.agent.store, cmd.command_id, "approve", int(time.time()))
        w.node.wake()
        await anyio.sleep(0.5)
        assert repo.command_row(w.node.agent.store, cmd.command_id)["state"] == "confirmed"
        vote(w.node.agent.store, cmd.command_id, "confirm", int(time.time()))
        w.node.wake()
        done = await w.advisor.wait_for(cmd.command_id, 10, final=True)
        assert done is not None and done.status == Status.OK
        assert {c.policy.ppm for c in await w.channels()} == {110}


async def test_policy_refusals_reach_the_advisor(tmp_path: Path, relay_url: str) -> None:
    async with world(tmp_path, relay_url) as w:
        scids = [c.short_channel_id for c in await w.channels()]
        w.node.policy = w.node.policy.model_copy(update={"protected_channels": [scids[0]]})
        await w.wait_credential(w.grant())
        cases = [
            ({"channel": scids[0], "fee_ppm": 110}, "RESTRICTED"),  # protected channel
            ({"channel": scids[1], "fee_ppm": 200}, "RESTRICTED"),  # +100 % > moderate's 30 %
            ({"channel": scids[1], "fee_ppm": 110, "colour": "red"}, "INVALID_PARAMS"),
        ]
        for params, code in cases:
            _, got = await w.advisor.advise(w.node.me, "hive:fee-policy/v1", "set_single", params)
            assert got is not None and got.error is not None and got.error.code == code, got
        _, got = await w.advisor.advise(w.node.me, "hive:rebalance/v1", "circular", {})
        assert got is not None and got.error.code == "RESTRICTED"  # schema not in the credential
        assert {c.policy.ppm for c in await w.channels()} == {100}
        assert w.advisor.verify_chain()  # refusals are in the chain too


async def test_duplicates_and_reused_ids(tmp_path: Path, relay_url: str) -> None:
    from events import command

    async with world(tmp_path, relay_url) as w:
        await w.wait_credential(w.grant())
        scid = (await w.channels())[0].short_channel_id
        cmd, first = await w.advisor.advise(
            w.node.me, "hive:fee-policy/v1", "set_single", {"channel": scid, "fee_ppm": 110}
        )
        assert first.status == Status.OK
        # the same command delivered again (a new gift wrap): the stored receipt comes back
        await w.advisor.agent.send_private(
            w.node.me, command.FAMILY.rumor(w.advisor.me, cmd, created_at=w.node.now)
        )
        await anyio.sleep(0.5)
        held = repo.held_for_command(w.advisor.agent.store, cmd.command_id)
        assert {r.receipt_id for r in held} == {first.receipt_id}
        assert repo.usage(w.node.agent.store, "node", w.node.now, 1)["actions"] == 1  # ran once
        # the same idempotency id with other parameters
        other = cmd.model_copy(
            update={"params": {"channel": scid, "fee_ppm": 120}, "nonce": "ab" * 16}
        )
        await w.advisor.agent.send_private(
            w.node.me, command.FAMILY.rumor(w.advisor.me, other, created_at=w.node.now)
        )
        with anyio.fail_after(10):
            while len(repo.held_for_command(w.advisor.agent.store, cmd.command_id)) < 2:
                await anyio.sleep(0.05)
        replay = repo.held_for_command(w.advisor.agent.store, cmd.command_id)[-1]
        assert replay.error.code == "REPLAYED"
        assert (await w.channels())[0].policy.ppm == 110


async def test_rebalance_and_budgets(tmp_path: Path, relay_url: str) -> None:
    from agent.advisory.policy import Budgets

    policy = PolicyConfig(budgets=Budgets(sats_moved_per_advisor_day=150_000))
    async with world(tmp_path, relay_url, policy) as w:
        await w.wait_credential(w.grant(tier=Tier.ADVANCED, schemas=("hive:rebalance/*",)))
        chans = await w.channels()
        params = {
            "from_channel": chans[0].short_channel_id,
            "to_channel": chans[1].short_channel_id,
            "amount_sats": 90_000,
            "max_fee_ppm": 500,
        }
        _, first = await w.advisor.advise(w.node.me, "hive:rebalance/v1", "circular", params)
        assert first.status == Status.OK and first.danger == 3
        assert first.result["fee_msat"] > 0
        _, second = await w.advisor.advise(w.node.me, "hive:rebalance/v1", "circular", params)
        assert second.error.code == "QUOTA_EXCEEDED"  # 180,000 > 150,000 sat per advisor per day
        used = repo.usage(w.node.agent.store, "node", w.node.now, 1)
        assert used["sats_moved"] == 90_000 and used["actions"] == 1
        assert used["fees_sat"] == -(-first.result["fee_msat"] // 1000)
        # its fee is a rebalance cost in the fleet's contribution ledger, counted once
        from agent.store import contribution as ledger

        store, day = w.node.agent.store, w.node.now // 86_400
        own = ledger.totals(store, day, day)[ledger.OWN]
        assert own["rebalance_msat"] == first.result["fee_msat"]
        assert ledger.verify(store)["ok"] and ledger.chain_size(store) == 1


async def test_a_confirmation_by_dm_before_the_approval_is_refused(
    tmp_path: Path, relay_url: str
) -> None:
    """The operator's `confirm <id>` DM for a command not yet approved is answered with the
    reason and counts for nothing (it would have let the approval run the command at once)."""
    from events.base import make_rumor
    from events.kinds import Kind

    async with world(tmp_path, relay_url, PolicyConfig(preset=Preset.CONSERVATIVE)) as w:
        await w.wait_credential(w.grant(tier=Tier.ADVANCED))
        cmd, _ = await w.advisor.advise(
            w.node.me, "hive:fee-policy/v1", "set_bulk", {"fee_ppm": 111, "base_msat": 1000},
            wait=False,
        )  # fmt: skip
        assert (await w.advisor.wait_for(cmd.command_id, 10, final=False)).status == Status.QUEUED
        with anyio.fail_after(10):
            while not w.dms:  # the node asks the operator
                await anyio.sleep(0.05)
        asked = len(w.dms)
        text = f"confirm {cmd.command_id[:12]}"
        dm = make_rumor(
            w.operator.pubkey, Kind.DIRECT_MESSAGE, text, [["p", w.node.me]], w.node.now
        )
        await w.operator.send_private(w.node.me, dm)
        with anyio.fail_after(10):
            while len(w.dms) == asked:
                await anyio.sleep(0.05)
        assert "confirm it once approved" in w.dms[-1]
        assert repo.approvals(w.node.agent.store, cmd.command_id)["confirm"] == set()
        assert repo.command_row(w.node.agent.store, cmd.command_id)["state"] == "confirm"


async def test_plain_dm_commands(tmp_path: Path, relay_url: str) -> None:
    from events.base import make_rumor
    from events.kinds import Kind

    async with world(tmp_path, relay_url) as w:
        await w.wait_credential(w.grant())
        replies = w.advisor_dms
        scid = (await w.channels())[1].short_channel_id
        for text in (
            f"fee-policy set_single channel={scid} fee_ppm=115",
            "budget",
            "fee-policy fly",
        ):
            dm = make_rumor(w.advisor.me, Kind.DIRECT_MESSAGE, text, [["p", w.node.me]], w.node.now)
            await w.advisor.agent.send_private(w.node.me, dm)
        with anyio.fail_after(10):
            while len(replies) < 3:
                await anyio.sleep(0.05)
        assert any(r.startswith("done: fee-policy set_single") for r in replies)
        assert any(r.startswith("done: monitor budget") for r in replies)
        assert any("INVALID_PARAMS" in r for r in replies)
        assert (await w.channels())[1].policy.ppm == 115


async def test_multisig_needs_m_of_n_approver_events(tmp_path: Path, relay_url: str) -> None:
    import nostr_sdk as sdk

    from agent import app
    from agent.settings import RelaysConfig, Settings
    from events import approval

    approvers = [sdk.Keys.generate() for _ in range(3)]
    policy = PolicyConfig(
        approvers=[k.public_key().to_hex() for k in approvers],
        approvals_needed=2,
        preset=Preset.AGGRESSIVE,
    )
    async with world(tmp_path, relay_url, policy) as w:
        await w.wait_credential(w.grant(tier=Tier.ADMIN, schemas=("hive:wallet/*",)))
        w.node.policy = w.node.policy.model_copy(
            update={
                "budgets": w.node.policy.budgets.model_copy(
                    update={"sats_moved_per_advisor_day": 10**9, "sats_moved_per_day": 10**9}
                )
            }
        )
        # danger 8 at aggressive: level 8 → CONFIRM; use the sweep (danger 9) for m-of-n
        cmd, _ = await w.advisor.advise(w.node.me, "hive:wallet/v1", "sweep", {}, wait=False)
        assert (await w.advisor.wait_for(cmd.command_id, 10, final=False)).status == Status.QUEUED
        assert repo.command_row(w.node.agent.store, cmd.command_id)["state"] == "multisig"
        config = RelaysConfig.single(relay_url)
        stranger = sdk.Keys.generate()
        for i, keys in enumerate([stranger, approvers[0], approvers[1]]):
            approver = app.standalone(Settings(home=tmp_path / f"approver{i}"), keys, config)
            async with approver.agent as a:
                vote_ = approval.Approval(
                    command_id=cmd.command_id,
                    node=w.node.me,
                    params_hash=cmd.params_hash,
                    verdict=approval.Verdict.APPROVE,
                    expires_at=w.node.now + 3600,
                )
                await a.publish(approval.FAMILY.build(keys, vote_, created_at=w.node.now))
            if i < 2:
                await anyio.sleep(0.5)
                assert repo.command_row(w.node.agent.store, cmd.command_id)["state"] == "multisig"
        done = await w.advisor.wait_for(cmd.command_id, 10, final=True)
        assert (
            done is not None and done.error.code == "NOT_IMPLEMENTED"
        )  # approved, then: sweeping is not built
        assert w.node.agent.store.error_counts().get("UNAUTHORIZED", 0) == 1  # the stranger's vote


async def test_oracle_mode(tmp_path: Path, relay_url: str) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    answers = iter(["approve", "deny"])

    class Oracle(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"decision": next(answers)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Oracle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/"
    try:
        async with world(tmp_path, relay_url, PolicyConfig(mode=Mode.ORACLE, oracle_url=url)) as w:
            await w.wait_credential(w.grant())
            scid = (await w.channels())[0].short_channel_id
            _, yes = await w.advisor.advise(
                w.node.me, "hive:fee-policy/v1", "set_single", {"channel": scid, "fee_ppm": 105}
            )
            assert yes.status == Status.OK
            _, no = await w.advisor.advise(
                w.node.me, "hive:fee-policy/v1", "set_single", {"channel": scid, "fee_ppm": 110}
            )
            assert no.error.code == "REJECTED"
            w.node.policy = w.node.policy.model_copy(update={"oracle_url": "http://127.0.0.1:1/"})
            cmd, _ = await w.advisor.advise(
                w.node.me,
                "hive:fee-policy/v1",
                "set_single",
                {"channel": scid, "fee_ppm": 112},
                wait=False,
            )
            silent = await w.advisor.wait_for(cmd.command_id, 15, final=False)
            assert silent.status == Status.QUEUED  # no answer twice: the operator decides
            assert (await w.channels())[0].policy.ppm == 105
    finally:
        server.shutdown()
        server.server_close()


async def test_quiet_hours_and_revocation(tmp_path: Path, relay_url: str) -> None:
    hour = (int(time.time()) % 86400) // 3600
    policy = PolicyConfig(quiet_hours_utc=(hour, (hour + 1) % 24))
    async with world(tmp_path, relay_url, policy) as w:
        cred = w.grant(tier=Tier.ADVANCED, schemas=("hive:fee-policy/*",))
        await w.wait_credential(cred)
        scid = (await w.channels())[0].short_channel_id
        _, low = await w.advisor.advise(
            w.node.me, "hive:fee-policy/v1", "set_single", {"channel": scid, "fee_ppm": 105}
        )
        assert low.status == Status.OK  # danger 2 runs in quiet hours
        _, high = await w.advisor.advise(
            w.node.me, "hive:fee-policy/v1", "set_bulk", {"fee_ppm": 105, "base_msat": 900}
        )
        assert high.error.code == "RESTRICTED" and "quiet hours" in high.error.message
        await w.node.credentials.revoke(cred.credential_id)
        cmd, gone = await w.advisor.advise(
            w.node.me,
            "hive:fee-policy/v1",
            "set_single",
            {"channel": scid, "fee_ppm": 106},
            timeout_s=2,
        )
        assert gone is None  # a revoked credential gets no answer at all...
        await anyio.sleep(0.3)
        assert w.node.agent.store.error_counts()["UNAUTHORIZED"] == 1  # ...only a counted refusal
        assert (await w.channels())[0].policy.ppm == 105
