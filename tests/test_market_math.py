"""Ranking and reputation aggregation, as worked examples with the arithmetic written out."""

from __future__ import annotations

import math

import pytest

from agent.market.ranking import Need, components, matches, schema_matches
from agent.market.reputation import aggregate, evidence_factor
from events.listing import Frequency, Listing, PricingModel, ServiceType
from events.reputation import Domain, Outcome, Period, ReputationCredential, Subject, iso, score

DAY = 86400
NOW = 1_800_000_000
ALICE, BOB, CAROL = "a" * 64, "b" * 64, "c" * 64


def listing(**kw) -> Listing:
    base = dict(
        listing_id="x",
        service=ServiceType.ADVISOR,
        title="t",
        summary="s",
        price_sat=10_000,
        frequency=Frequency.MONTH,
        pricing_model=PricingModel.SUBSCRIPTION,
        primary="fee-policy",
        secondary=["rebalance"],
        schemas=["hive:fee-policy/v1"],
        published_at=NOW - 10 * DAY,
        expires_at=NOW + 30 * DAY,
    )
    return Listing(**{**base, **kw})


def test_ranking_worked_example() -> None:
    item = listing()
    need = Need(
        primary="rebalance", capabilities=("fee-policy", "rebalance", "monitor"), budget_sat=5_000
    )
    b = components(item, need, reputation=80.0, availability=None, now=NOW)
    # reputation      80 ÷ 100                                  = 0.80
    # capability      {fee-policy, rebalance} of 3 required    = 2/3
    # specialisation  need "rebalance" is a secondary capability = 0.5
    # price           min(1, 5,000 ÷ 10,000)                    = 0.5
    # availability    no heartbeat history                      = 0.5
    # freshness       1 − 10 days ÷ 40 days lifetime            = 0.75
    assert (b.reputation, b.specialisation, b.price, b.availability) == (0.8, 0.5, 0.5, 0.5)
    assert b.capability == pytest.approx(2 / 3)
    assert b.freshness == pytest.approx(0.75)
    # total = .35·0.8 + .25·(2/3) + .15·0.5 + .10·0.5 + .10·0.5 + .05·0.75
    #       = 0.28 + 0.16667 + 0.075 + 0.05 + 0.05 + 0.0375 = 0.65917
    assert b.total == pytest.approx(0.28 + 0.25 * 2 / 3 + 0.075 + 0.05 + 0.05 + 0.0375)
    assert "= 0.659" in b.explain()


def test_primary_match_and_cheap_price_beat_reputation() -> None:
    need = Need(primary="fee-policy", capabilities=("fee-policy",), budget_sat=20_000)
    specialist = components(
        listing(price_sat=10_000), need, reputation=60, availability=1.0, now=NOW
    )
    # .35·0.6 + .25·1 + .15·1 + .10·min(1, 2) + .10·1 + .05·0.75 = 0.21+0.25+0.15+0.1+0.1+0.0375
    assert specialist.total == pytest.approx(0.8475)
    generalist = components(
        listing(primary="monitor", secondary=["fee-policy"], price_sat=40_000),
        need,
        reputation=90,
        availability=1.0,
        now=NOW,
    )
    # .35·0.9 + .25·1 + .15·0.5 + .10·0.5 + .10·1 + .05·0.75 = 0.315+0.25+0.075+0.05+0.1+0.0375
    assert generalist.total == pytest.approx(0.8275)
    assert specialist.total > generalist.total


def test_filters() -> None:
    item = listing(mints=["https://mint.example"])
    assert matches(
        item, Need(service=ServiceType.ADVISOR, schema="hive:fee-policy/*", max_price_sat=10_000)
    )
    assert not matches(item, Need(service=ServiceType.LIQUIDITY))
    assert not matches(item, Need(max_price_sat=9_999))
    assert not matches(item, Need(capabilities=("splice",)))
    assert not matches(item, Need(mint="https://other.example"))
    assert matches(item, Need(mint="https://mint.example"))
    assert schema_matches("hive:rebalance/*", "hive:rebalance/v1")
    assert not schema_matches("hive:rebalance/*", "hive:fee-policy/v1")


def credential(
    issuer: str, subject: str, metrics: dict, outcome=Outcome.NEUTRAL, end_days_ago=0, evidence=()
) -> ReputationCredential:
    end = NOW - end_days_ago * DAY
    return ReputationCredential(
        issuer=f"did:nostr:{issuer}",
        validFrom=iso(end),
        credentialSubject=Subject(
            id=f"did:nostr:{subject}",
            domain=Domain.ADVISOR,
            period=Period(start=iso(end - 30 * DAY), end=iso(end)),
            metrics=metrics,
            outcome=outcome,
            evidence=list(evidence),
        ),
    )


GOOD = {"revenue_delta_pct": 10, "actions_taken": 80, "uptime_pct": 99, "channels_managed": 25}


def test_credential_score_worked_example() -> None:
    cred = credential(ALICE, BOB, GOOD, outcome=Outcome.RENEW)
    # revenue (10+50)/100 = 0.6; actions 80/100 = 0.8; uptime 0.99; channels 25/50 = 0.5
    # mean = (0.6+0.8+0.99+0.5)/4 = 0.7225 → 72.25, renew ×1.1 = 79.475
    assert score(cred.credentialSubject) == pytest.approx(79.475)


def test_aggregation_worked_example() -> None:
    fresh = credential(ALICE, BOB, GOOD)  # ended today, issuer is a fleet member
    old = credential(CAROL, BOB, {**GOOD, "uptime_pct": 50}, end_days_ago=100)
    agg = aggregate(BOB, [fresh, old], NOW, members={ALICE})
    # fresh: score 72.25; weight = 1.5 (issuer only is a member) × e^0 × 0.3 (no evidence) = 0.45
    # old:   score (0.6+0.8+0.5+0.5)/4×100 = 60; weight = 1.0 × e^(−0.01·100) × 0.3 = 0.110364
    w_old = math.exp(-1) * 0.3
    expected = (0.45 * 72.25 + w_old * 60) / (0.45 + w_old)
    assert [round(p.weight, 6) for p in agg.parts] == [0.45, round(w_old, 6)]
    assert agg.score == pytest.approx(expected)  # ≈ 69.84
    assert agg.tier == "recognized"  # 60–74


def test_issuer_weights_and_evidence_bands() -> None:
    both = aggregate(BOB, [credential(ALICE, BOB, GOOD)], NOW, members={ALICE, BOB})
    assert both.parts[0].issuer_weight == 2.0
    assert aggregate(BOB, [], NOW).score == 0.0
    assert [evidence_factor(n) for n in (0, 1, 5, 6)] == [0.3, 0.7, 0.7, 1.0]
