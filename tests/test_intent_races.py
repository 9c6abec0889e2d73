"""Ten thousand intent races among ten members on a network that loses a quarter of all
messages (and of their acknowledgements) and reorders them: the pure core the intents
component runs (tests/intent_model.py wires it the same way) never lets two members act on
one target while a lock on it lives, and leaves no intent pending.  A deliberately broken
variant — silence taken as consent — shows the harness catches duplicates."""

from __future__ import annotations

import statistics
from collections import Counter

from tests.intent_model import Model, run


def test_ten_thousand_races_with_a_quarter_lost_no_duplicate_and_nothing_stuck() -> None:
    result = run(races=10_000, members=10, loss=0.25, seed=7, targets=50_000)
    assert result.lost > result.messages // 5  # (the network did lose a quarter)
    assert result.duplicates == 0
    assert result.stuck == 0
    # (targets rarely repeat here) nearly every race ends with one member acting
    assert result.committed == result.executed > 9_000, result
    assert set(result.aborted) <= {"tie_breaker_loss", "conflict_committed", "expired"}
    assert statistics.median(result.latencies_ms) < 2_000  # a few round trips, not the hold


def test_every_member_wins_some_races() -> None:
    model = Model(10, loss=0.0, seed=3)
    model.run(2_000, 2_000)
    winners = Counter(
        m.idx for m in model.members for k in m.locks.values() if k.mine and k.status == "done"
    )
    assert len(winners) == 10 and min(winners.values()) > 50, winners


def test_the_harness_catches_duplicates_when_silence_is_taken_for_consent() -> None:
    broken = run(races=1_000, loss=0.5, seed=7, retry_ms=12_000, silence_is_consent=True)
    assert broken.duplicates > 0
    sound = run(races=1_000, loss=0.5, seed=7, retry_ms=12_000)
    assert sound.duplicates == 0 and sound.stuck == 0
