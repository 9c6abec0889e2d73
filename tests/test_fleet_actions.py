"""Fleet actions under the node's own governance (agent/advisory/local.py): a planner action is
a command like an advisor's — danger from the catalogue, the same limits and approval decision,
a signed receipt in a chain — decided by the node's governance mode, with its outcome kept in
the store for the fleet's intent (real store, simulated node, no relay needed)."""

from __future__ import annotations

from pathlib import Path

import nostr_sdk as sdk
import pytest

from agent.advisory import execution
from agent.advisory.local import ActionOutcome, LocalActions, Status, command_id_for
from agent.advisory.node import NodeService, vote
from agent.advisory.policy import Governance, Mode, PolicyConfig, Preset
from agent.cln_plugin import governance_options
from agent.clock import ManualClock
from agent.fleet.actions import ActionPort, FleetAction, action_for, intent_result, outcome_state
from agent.node.sim import Network
from agent.node.simnode import SimBackend
from agent.settings import RelaysConfig, Settings
from agent.store import Store
from agent.store import advisory as repo
from agent.transport import Transport
from events import receipt
from events.errors import InvalidParams
from tests.node_scenario import ring

pytestmark = pytest.mark.anyio
RELAY = RelaysConfig.single("ws://127.0.0.1:9")  # never connected: receipts to self stay local
AUTONOMOUS, OPERATOR, FAILSAFE = (Governance(m) for m in Mode if m != Mode.ORACLE)


class Node:
    """A node agent's command path over a store file: built again = restarted."""

    def __init__(
        self,
        tmp: Path,
        net: Network,
        me: str,
        keys: sdk.Keys,
        clock: ManualClock,
        governance: Governance = OPERATOR,
        policy: PolicyConfig | None = None,
    ) -> None:
        store = Store(tmp / "agent.sqlite")
        host = Transport(Settings(home=tmp), keys, RELAY, store=store, clock=clock)
        self.net, self.id, self.clock = net, me, clock
        self.service = NodeService(host, SimBackend(net, me), policy or PolicyConfig())
        self.reports: list[ActionOutcome] = []
        self.actions = LocalActions(self.service, governance, on_outcome=self.reports.append)
        self.port: ActionPort = self.actions  # what the fleet holds

    @property
    def store(self) -> Store:
        return self.service.agent.store

    def submit(self, kind: str, intent: str, **params: object) -> ActionOutcome:
        found = self.actions.submit(FleetAction(kind, params, intent, "planner"))
        assert isinstance(found, ActionOutcome)
        return found

    async def settle(self, intent: str) -> ActionOutcome:
        await self.service.step()
        found = self.actions.outcome(intent)
        assert found is not None
        return found

    def channels_to(self, peer: str) -> list:
        return [c for c in self.net.channels.values() if {c.a, c.b} == {self.id, peer}]

    def chain(self) -> list[receipt.Receipt]:
        cred = self.actions.principal().credential.credential_id
        return repo.chain(self.store, cred)


@pytest.fixture
def world(tmp_path: Path):
    net, ids = ring()
    keys, clock = sdk.Keys.generate(), ManualClock()

    def make(governance: Governance = OPERATOR, **policy: object) -> Node:
        return Node(tmp_path, net, ids[0], keys, clock, governance, PolicyConfig(**policy))

    return make, ids


async def test_autonomous_small_open_runs_with_a_receipt_in_the_chain(world) -> None:
    make, ids = world
    node = make(AUTONOMOUS)
    ticket = node.submit("channel_open", "i-open", peer=ids[2], amount_sats=500_000)
    assert ticket.status == Status.PENDING and not ticket.final
    done = await node.settle("i-open")
    assert done.status == Status.OK and done.danger == 5 and intent_result(done) is True
    assert [c.capacity_sat for c in node.channels_to(ids[2])] == [500_000]
    assert done.result["capacity_sat"] == 500_000
    chain = node.chain()
    receipt.verify_chain(chain)
    assert chain[-1].command_id == command_id_for("i-open") and chain[-1].status == "ok"
    assert chain[-1].node == node.service.me  # signed by the node, for its own fleet role
    assert chain[-1].advisor == node.service.ctx.principal != node.service.me
    assert node.reports == [done] and node.actions.open_actions() == {}
    assert repo.usage(node.store, "node", node.clock.now(), 1)["channels"] == 1  # budgets count


async def test_autonomous_large_open_waits_for_the_operator(world) -> None:
    make, ids = world
    node = make(AUTONOMOUS)
    node.submit("channel_open", "i-big", peer=ids[2], amount_sats=2_000_000)
    waiting = await node.settle("i-big")
    assert waiting.status == Status.WAITING and waiting.danger == 6  # L = 6 ÷ 1.5 = 4: queue
    assert intent_result(waiting) is None and not node.channels_to(ids[2])
    # conservative preset: danger 5 is already its confirm-from
    strict = make(AUTONOMOUS, preset=Preset.CONSERVATIVE)
    strict.submit("channel_open", "i-small", peer=ids[3], amount_sats=300_000)
    assert (await strict.settle("i-small")).status == Status.WAITING
    assert repo.command_row(strict.store, command_id_for("i-small"))["state"] == "confirm"


async def test_operator_mode_queues_and_approve_runs_it_once(world) -> None:
    make, ids = world
    node = make(OPERATOR)
    node.submit("channel_open", "i-op", peer=ids[2], amount_sats=300_000)
    assert (await node.settle("i-op")).status == Status.WAITING
    assert [p["id"] for p in node.service.pending()] == [command_id_for("i-op")]
    vote(node.store, command_id_for("i-op")[:12], "approve", node.clock.now())
    done = await node.settle("i-op")
    assert done.status == Status.OK
    await node.settle("i-op")
    node.submit("channel_open", "i-op", peer=ids[2], amount_sats=300_000)  # resubmitted
    assert (await node.settle("i-op")).status == Status.OK
    assert len(node.channels_to(ids[2])) == 1 and len(node.reports) == 1


async def test_operator_rejects_and_nobody_approves(world) -> None:
    make, ids = world
    node = make(OPERATOR)
    node.submit("channel_open", "i-no", peer=ids[2], amount_sats=300_000)
    node.submit("channel_open", "i-late", peer=ids[3], amount_sats=300_000)
    await node.service.step()
    vote(node.store, command_id_for("i-no")[:12], "reject", node.clock.now())
    rejected = await node.settle("i-no")
    assert rejected.status == Status.REJECTED and rejected.code == "REJECTED"
    node.clock.advance(24 * 3600 + 1)
    expired = await node.settle("i-late")
    assert expired.status == Status.EXPIRED and intent_result(expired) is False
    assert {r.status for r in node.reports} == {Status.REJECTED, Status.EXPIRED}
    assert not node.channels_to(ids[2]) and not node.channels_to(ids[3])


async def test_failsafe_runs_emergency_actions_only_within_its_budget(world) -> None:
    make, ids = world
    node = make(Governance(Mode.FAILSAFE, failsafe_budget_sats=5_000_000, failsafe_per_hour=9))
    refused = node.submit("channel_open", "i-fs", peer=ids[2], amount_sats=300_000)
    refused = await node.settle("i-fs")
    assert refused.status == Status.REFUSED and refused.code == "FAILSAFE_ONLY"
    assert "emergency" in refused.message and intent_result(refused) is False
    # three 2M channels to close in an emergency: ring neighbours plus one more
    node.net.open_channel(ids[0], ids[2], 2_000_000)
    scids = [c.scid for c in node.net.channels.values() if node.id in (c.a, c.b) and c.open]
    node.submit("emergency_close", "i-e1", channel=scids[0], amount_sats=2_000_000)
    assert (await node.settle("i-e1")).status == Status.OK  # danger 6 would queue; failsafe runs
    node.submit("emergency_close", "i-e2", channel=scids[1], amount_sats=2_000_000)
    assert (await node.settle("i-e2")).status == Status.OK
    node.submit("emergency_close", "i-e3", channel=scids[2], amount_sats=2_000_000)
    over = await node.settle("i-e3")
    assert over.status == Status.REFUSED and over.code == "QUOTA_EXCEEDED"  # 6M > 5M a day
    assert "failsafe budget" in over.message
    assert repo.usage(node.store, "failsafe", node.clock.now(), 1)["sats_moved"] == 4_000_000


async def test_failsafe_allows_two_actions_an_hour(world) -> None:
    make, ids = world
    node = make(FAILSAFE)
    chans = []
    for peer in ids[2:5]:
        chans.append(node.net.open_channel(ids[0], peer, 100_000))
    for n, scid in enumerate(chans):
        node.submit("emergency_close", f"i-h{n}", channel=scid, amount_sats=100_000)
        node.clock.advance(60)
    outcomes = [await node.settle(f"i-h{n}") for n in range(3)]
    assert [o.status for o in outcomes] == [Status.OK, Status.OK, Status.REFUSED]
    assert outcomes[2].code == "RATE_LIMITED"
    node.clock.advance(3600)
    node.submit("emergency_close", "i-h-later", channel=chans[2], amount_sats=100_000)
    assert (await node.settle("i-h-later")).status == Status.OK


async def test_policy_applies_to_fleet_actions(world) -> None:
    make, ids = world
    scid = next(c.scid for c in make().net.channels.values() if ids[1] in (c.a, c.b))
    node = make(AUTONOMOUS, forbidden_peers=[ids[2]], protected_channels=[scid])
    node.submit("channel_open", "i-bad", peer=ids[2], amount_sats=300_000)
    node.submit("channel_close", "i-prot", channel=scid)
    bad, prot = await node.settle("i-bad"), await node.settle("i-prot")
    assert (bad.status, bad.code) == (Status.REFUSED, "RESTRICTED") and "forbidden" in bad.message
    assert (prot.status, prot.code) == (
        Status.REFUSED,
        "RESTRICTED",
    ) and "protected" in prot.message
    # a budget: one channel a day
    tight = make(AUTONOMOUS, budgets={"channels_per_day": 1})
    tight.submit("channel_open", "i-1", peer=ids[3], amount_sats=300_000)
    assert (await tight.settle("i-1")).status == Status.OK
    tight.submit("channel_open", "i-2", peer=ids[2], amount_sats=300_000)
    assert (await tight.settle("i-2")).code == "QUOTA_EXCEEDED"
    receipt.verify_chain(tight.chain())  # refusals are in the chain too


async def test_bad_requests_and_failures_are_reported(world) -> None:
    make, ids = world
    node = make(AUTONOMOUS)
    unknown = node.submit("teleport", "i-x")
    assert (unknown.status, unknown.code) == (Status.REFUSED, "INVALID_PARAMS")
    assert node.actions.outcome("i-x") is None  # nothing stored: nothing to release but the lock
    bad = node.submit("channel_open", "i-p", peer=ids[2])  # amount missing: intake's receipt
    assert (bad.status, bad.code) == (Status.REFUSED, "INVALID_PARAMS")
    assert node.actions.outcome("i-p") == bad
    # recognised, not executed: claimed, then failed (the intent is released)
    node.submit("ban_peer", "i-ban", peer=ids[2])
    failed = await node.settle("i-ban")
    assert (failed.status, failed.code) == (Status.FAILED, "NOT_IMPLEMENTED")
    gone = node.submit("fee_set", "i-gone", channel="999x1x0", fee_ppm=0)
    assert (await node.settle("i-gone")).code == "NOT_FOUND"
    assert {r.intent_id for r in node.reports} >= {"i-ban", "i-gone"}
    assert gone.command_id == command_id_for("i-gone")


def test_governance_options() -> None:
    assert governance_options({}) == Governance() and Governance().mode == Mode.OPERATOR
    chosen = governance_options(
        {"hive-governance-mode": "Failsafe", "hive-failsafe-budget-per-day": "2000000"}
    )
    assert (chosen.mode, chosen.failsafe_budget_sats) == (Mode.FAILSAFE, 2_000_000)
    for bad in ({"hive-governance-mode": "oracle"}, {"hive-failsafe-budget-per-day": "lots"}):
        with pytest.raises(InvalidParams, match=next(iter(bad))):
            governance_options(bad)


class Killed(BaseException):
    """Stands for SIGKILL at a crash point: nothing after it runs."""


@pytest.mark.parametrize("point", ["command.before_execute", "command.after_execute"])
async def test_restart_mid_execution_runs_nothing_twice(world, monkeypatch, point) -> None:
    make, ids = world
    node = make(AUTONOMOUS)
    node.submit("channel_open", "i-crash", peer=ids[2], amount_sats=400_000)

    def kill(name: str, detail: str = "") -> None:
        if name == point:
            raise Killed(name)

    monkeypatch.setattr(execution, "crash_point", kill)
    with pytest.raises(Killed):
        await node.service.step()
    monkeypatch.undo()
    opened = len(node.channels_to(ids[2]))
    assert opened == (point == "command.after_execute")
    again = make(AUTONOMOUS)  # restarted over the same store
    assert again.actions.outcome("i-crash").status == Status.PENDING  # executing
    await again.service.execution.recover()
    await again.service.step()
    found = again.actions.outcome("i-crash")
    assert found is not None
    if opened:  # the new channel to the peer, of that size, is found: it ran (ok)
        assert found.status == Status.OK, found
    else:  # no channel, but lightningd might still be funding one: not retried, unknown
        assert found.status == Status.FAILED and found.code == "INTERNAL", found
    assert len(again.channels_to(ids[2])) == opened  # never run twice
    assert [r.intent_id for r in again.reports] == ["i-crash"]  # reported after the restart
    receipt.verify_chain(again.chain())


async def test_restart_while_queued_then_approved_runs_once(world) -> None:
    make, ids = world
    node = make(OPERATOR)
    node.submit("channel_open", "i-q", peer=ids[2], amount_sats=300_000)
    await node.service.step()
    again = make(OPERATOR)
    assert again.actions.outcome("i-q").status == Status.WAITING
    assert again.actions.open_actions()["i-q"]["origin"] == "planner"
    vote(again.store, command_id_for("i-q")[:12], "approve", again.clock.now())
    assert (await again.settle("i-q")).status == Status.OK
    third = make(OPERATOR)
    await third.service.execution.recover()
    await third.service.step()
    assert third.actions.outcome("i-q").ok and len(third.channels_to(ids[2])) == 1


async def test_revoking_the_fleet_credential_stops_fleet_actions(world) -> None:
    make, ids = world
    node = make(OPERATOR)
    node.submit("channel_open", "i-r1", peer=ids[2], amount_sats=300_000)
    await node.service.step()
    cred = node.actions.principal().credential.credential_id
    assert [c["credential_id"] for c in repo.credentials(node.store, "granted")] == [cred]
    with node.store.transaction(node.clock.now()) as tx:
        assert repo.revoke_credential(tx, cred)
    off = node.submit("channel_open", "i-r2", peer=ids[3], amount_sats=300_000)
    assert (off.status, off.code) == (Status.REFUSED, "UNAUTHORIZED")
    vote(node.store, command_id_for("i-r1")[:12], "approve", node.clock.now())
    waiting = await node.settle("i-r1")  # what waited under it is refused, not run
    assert (waiting.status, waiting.code) == (Status.REFUSED, "UNAUTHORIZED")
    assert not node.channels_to(ids[2])
    again = make(OPERATOR)  # a restart grants a new one
    assert again.submit("channel_open", "i-r3", peer=ids[3], amount_sats=300_000).code is None
    assert again.actions.principal().credential.credential_id != cred


async def test_an_intent_lock_as_a_fleet_action(world) -> None:
    make, ids = world
    node = make(AUTONOMOUS)
    action = action_for("channel_open", ids[2], 250_000, "lock-1")
    assert action is not None and action_for("ban_proposal", ids[2], 0, "lock-2") is None
    assert outcome_state(node.port.submit(action))[0] == "waiting"  # pending: not final yet
    await node.service.step()
    assert outcome_state(node.port.submit(action))[0] == "ok"  # settling = submitting again
    assert len(node.channels_to(ids[2])) == 1
    state, detail = outcome_state(node.port.submit(action_for("teleport", "x", 0, "lock-3")))
    assert state == "failed" and "INVALID_PARAMS" in detail
    assert outcome_state(node.port.outcome("lock-never"))[0] == "failed"
