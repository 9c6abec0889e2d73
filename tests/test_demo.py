"""`hive-agent demo` end to end, as a newcomer runs it."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import HIVE_AGENT


def test_demo_story_as_json() -> None:
    result = subprocess.run(
        [HIVE_AGENT, "--json", "demo", "--fast"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["public_event"]["verified"] is True
    texts = [m["text"] for m in report["private_messages"]]
    assert texts == [
        "Hi Adam, could you look at my fees next week?",
        "Sure - send me a credential.",
    ]
    assert report["forgery"]["code"] == "SEAL_MISMATCH"
    market = report["market"]
    assert market["before"][0] == "adam-fees" and market["after"][0] == "bea-flow"
    assert market["trial_with"] == "adam"
    advisory = report["advisory"]
    assert advisory["fee_ppm"] == 120 and advisory["rebalance"] == "ok"
    assert advisory["queued_then"] == "ok" and advisory["refused"] == "RESTRICTED"
    assert advisory["receipts"] == 7  # dry, ok, dry, ok, queued, ok, refused
    assert report["escrow"]["paid_sat"] == 25 and report["escrow"]["operator_sat"] == 175
    assert report["escrow"]["ecash_checked"] == "ok"  # DLEQ, unit and states, at the mint
    assert report["plugin"]["binding_verified"] is True
    assert report["plugin"]["events"] == {"Forward": 1, "CustomMsg": 1}
    fleet = report["fleet"]
    assert fleet["tiers"] == {"gina": "member", "hank": "member", "ivy": "neophyte"}
    assert fleet["banned"] == ["mallory"] and fleet["agreed"] is True
    catch_up = report["catch_up"]
    assert catch_up["views_equal"] is True and catch_up["banned"] == ["sybil"]
    assert catch_up["expired_frames"] >= 1 and catch_up["rita_fee_ppm"] == 450
    assert catch_up["tiers"]["otto"] == "member"
    assert catch_up["reconciliation"]["round_trips"] >= 1
    assert catch_up["reconciliation"]["facts_to_her"] >= 1
    race, expansion, bridge = (report["intents"][k] for k in ("race", "expansion", "bridge"))
    assert race["channels_to_target"] == 1 and {race["winner"], race["loser"]} == {"ada", "ben"}
    assert race["loser_reason"] in ("tie_breaker_loss", "conflict_committed")
    assert expansion["member"] == "cyd" and expansion["governance"] == "operator"
    assert expansion["lock_before_approval"] == "committed" and expansion["waited_for_operator"]
    assert expansion["channels_before_approval"] == 0 and expansion["approved"] is True
    assert expansion["status"] == "done" and expansion["channels_after"] == 1
    assert "well connected" in expansion["reason"]
    assert bridge["mode"] == "own_fees" and bridge["member_channels"] == 3
    assert bridge["member_fees_zero"] is True and bridge["outsider_fees_kept"] is True
    assert all(f["ppm"] > 0 for f in bridge["outsider_fees"].values())
    settled = report["settlement"]
    assert settled["state"] == "executed" and settled["conserved"] is True
    assert sum(settled["moved_sat"].values()) == 0 and any(settled["moved_sat"].values())
    delivered = report["relay_restart"]["delivered"]
    assert delivered == [f"fee review, part {i}" for i in (1, 2, 3)]


def test_demo_narrates_for_humans() -> None:
    result = subprocess.run(
        [HIVE_AGENT, "demo", "--fast"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    for n in range(1, 12):
        assert f"Act {n} " in result.stdout
    assert "all five views equal: yes" in result.stdout
    assert "stands down: aborted, reason" in result.stdout and "hive-approve" in result.stdout
    assert "SEAL_MISMATCH" in result.stdout and "Traceback" not in result.stderr
