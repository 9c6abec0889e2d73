"""The simulated network survives a restart: snapshot round trip, the journal's last complete
line wins over a torn one, and compaction keeps the file small."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.node import sim_state
from agent.node.simnode import SimBackend
from tests.node_scenario import ring, scenario


@pytest.mark.anyio
async def test_round_trip_after_a_scenario(tmp_path: Path) -> None:
    net, ids = ring(clock=time.monotonic)
    await scenario(SimBackend(net, ids[0]), net.invoice(ids[2], 25_000_000, "x").bolt11)
    sim_state.save(net, tmp_path / "s.json")
    again = sim_state.load(tmp_path / "s.json", time.monotonic)
    assert sim_state.dump(again) == sim_state.dump(net)
    assert again.node(ids[2]).expiry == net.node(ids[2]).expiry != {}  # invoices still expire
    net.wall = again.wall = lambda: 1_800_000_000.0  # (both issue their next invoice alike)
    # the restored network carries on exactly as the original would (same rng state)
    for n in (net, again):
        n.pay(ids[1], n.invoice(ids[3], 1_000_000, "after").bolt11)
    assert sim_state.dump(again) == sim_state.dump(net)


@pytest.mark.anyio
async def test_journal_torn_line_and_compaction(tmp_path: Path) -> None:
    net, ids = ring(clock=time.monotonic)
    path = tmp_path / "j.json"
    journal = sim_state.Journal(net, path)
    node = SimBackend(net, ids[0], on_change=journal.save)
    scid = (await node.channels())[0].short_channel_id
    for ppm in range(101, 111):
        await node.set_fees(scid, ppm=ppm)
    assert path.read_text().count("\n") == 11  # the first snapshot and one per change
    assert sim_state.load(path, time.monotonic).channels[scid].policy[ids[0]].ppm == 110
    with path.open("a") as fh:  # a process killed in the middle of a write
        fh.write('{"seed": 1, "nod')
    assert sim_state.load(path, time.monotonic).channels[scid].policy[ids[0]].ppm == 110
    journal.close()

    journal = sim_state.Journal(net, path)  # reopening compacts to one line
    assert path.read_text().count("\n") == 1
    per_line = len(path.read_text())
    node = SimBackend(net, ids[0], on_change=journal.save)
    for i in range(2 * sim_state.COMPACT_BYTES // per_line):
        await node.set_fees(scid, ppm=100 + i % 7)
    assert path.stat().st_size <= sim_state.COMPACT_BYTES
    assert sim_state.dump(sim_state.load(path, time.monotonic)) == sim_state.dump(net)
    journal.close()


def test_older_files_with_the_rng_state_as_a_list_still_load() -> None:
    net, ids = ring(clock=time.monotonic)
    old = sim_state.dump(net)
    version, words, gauss = net.rng.getstate()
    old["rng"] = [version, list(words), gauss]  # how files were written before
    again = sim_state.restore(old, time.monotonic)
    assert again.rng.getstate() == net.rng.getstate()
    assert sim_state.dump(again) == sim_state.dump(net)


@pytest.mark.anyio
async def test_a_fee_change_journals_one_policy_and_reads_back_whole(tmp_path: Path) -> None:
    net, ids = ring(clock=time.monotonic)
    path = tmp_path / "j.json"
    journal = sim_state.Journal(net, path)
    node = SimBackend(net, ids[0], on_change=journal.save, on_policy=journal.policy)
    scid = (await node.channels())[0].short_channel_id
    snapshot = len(path.read_text())
    await node.set_fees(scid, ppm=321, base_msat=7)
    line = path.read_text()[snapshot:]
    assert line.startswith('{"policy"') and len(line) < snapshot // 10
    assert sim_state.dump(sim_state.load(path, time.monotonic)) == sim_state.dump(net)
    # a whole snapshot (any other change) after policy lines, then policy lines again
    await node.invoice(5_000, "after")
    await node.set_fees(scid, ppm=400)
    await node.set_fees(scid, ppm=401)
    assert sim_state.dump(sim_state.load(path, time.monotonic)) == sim_state.dump(net)
    with path.open("a") as fh:  # killed in the middle of a policy line
        fh.write('{"policy": ["' + scid)
    again = sim_state.load(path, time.monotonic)
    assert again.channels[scid].policy[ids[0]].ppm == 401
    assert sim_state.dump(again) == sim_state.dump(net)
    journal.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(st.tuples(st.booleans(), st.integers(0, 4), st.integers(0, 5_000)), max_size=30)
)
def test_any_mix_of_snapshots_and_policy_lines_reads_back_as_the_network(
    tmp_path: Path, steps: list[tuple[bool, int, int]]
) -> None:
    net, ids = ring(clock=time.monotonic)
    path = tmp_path / "p.json"  # (each journal starts the file afresh)
    journal = sim_state.Journal(net, path)
    for whole, which, ppm in steps:
        scid = sorted(net.channels)[which % len(net.channels)]
        chan = net.channels[scid]
        net.set_policy(chan.a, scid, ppm=ppm)
        if whole:
            journal.save()
        else:
            journal.policy(chan.a, scid)
    assert sim_state.dump(sim_state.load(path, time.monotonic)) == sim_state.dump(net)
    journal.close()
