"""Marketplace event families: round trips, refusals, and what generic clients read."""

from __future__ import annotations

import json
import math

import nostr_sdk as sdk
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from events import bid, contract, heartbeat, listing, reputation, rfp
from events.base import parse_event, sign_event
from events.errors import (
    BadSignature,
    Expired,
    HiveError,
    InvalidPayload,
    InvalidTag,
    MissingTag,
    Unauthorized,
)
from events.listing import Frequency, Listing, ListingStatus, PricingModel, ServiceType, Trial
from tests.interop.nostr_tools import NostrTools

NOW = 1_800_000_000
DAY = 86400
KEYS, OTHER = sdk.Keys.generate(), sdk.Keys.generate()
ME, THEM = KEYS.public_key().to_hex(), OTHER.public_key().to_hex()
caps = st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True)


def sample(**kw) -> Listing:
    base = dict(
        listing_id="fees-pro",
        service=ServiceType.ADVISOR,
        title="Fee desk",
        summary="Fees, daily",
        description="# Fee desk\n\nWe **tune fees**.",
        price_sat=20_000,
        frequency=Frequency.MONTH,
        pricing_model=PricingModel.SUBSCRIPTION,
        primary="fee-policy",
        secondary=["rebalance"],
        schemas=["hive:fee-policy/v1", "hive:rebalance/*"],
        sla_response_s=1800,
        mints=["https://mint.example"],
        trial=Trial(days=14, price_sat=1000),
        published_at=NOW,
        expires_at=NOW + 30 * DAY,
    )
    return Listing(**{**base, **kw})


listings = st.builds(
    lambda primary, secondary, price, service, capacity, trial, text: sample(
        primary=primary,
        secondary=[s for s in secondary if s != primary],
        price_sat=price,
        service=service,
        description=text,
        capacity_sat=capacity,
        trial=trial,
        pricing_model=PricingModel.SUBSCRIPTION
        if service == ServiceType.ADVISOR
        else PricingModel.SAT_HOURS,
    ),
    caps,
    st.lists(caps, max_size=5, unique=True),
    st.integers(0, 10**12),
    st.sampled_from(ServiceType),
    st.none() | st.integers(0, 10**10),
    st.none() | st.builds(Trial, days=st.integers(7, 30), price_sat=st.integers(500, 5000)),
    st.text(max_size=2000),
)


@given(item=listings)
def test_listing_round_trip(item: Listing) -> None:
    event = listing.build(KEYS, item, created_at=NOW)
    assert listing.parse(parse_event(event.to_json()), now=NOW).payload == item


def test_listing_refusals() -> None:
    good = listing.build(KEYS, sample(), created_at=NOW)
    with pytest.raises(Expired):
        listing.parse(good, now=NOW + 31 * DAY)
    withdrawn = listing.build(KEYS, sample(status=ListingStatus.WITHDRAWN), created_at=NOW)
    with pytest.raises(InvalidPayload, match="withdrawn"):
        listing.parse(withdrawn, now=NOW)
    assert (
        listing.parse(withdrawn, now=NOW, include_withdrawn=True).payload.status
        == ListingStatus.WITHDRAWN
    )

    def tampered(tags: list[list[str]]) -> None:
        listing.parse(sign_event(KEYS, 30402, good.content, tags, NOW), now=NOW)

    with pytest.raises(MissingTag):
        tampered([t for t in good.tags if t[0] != "price"])
    with pytest.raises(InvalidTag):
        tampered([["price", "lots", "SAT"] if t[0] == "price" else t for t in good.tags])
    with pytest.raises(InvalidPayload):  # liquidity pricing on an advisor listing
        tampered(
            [["pricing-model", "sat-hours"] if t[0] == "pricing-model" else t for t in good.tags]
        )
    with pytest.raises(InvalidPayload):  # two primary capabilities
        tampered([*good.tags, ["capability", "monitor", "primary"]])
    with pytest.raises(ValidationError):  # building one: trials are 7–30 days, 500–5,000 sat
        Listing(**{**sample().model_dump(), "trial": {"days": 3, "price_sat": 100}})


@pytest.mark.interop
def test_nostr_tools_reads_every_nip99_field(nostr_tools: NostrTools) -> None:
    event = listing.build(KEYS, sample(), created_at=NOW).model_dump()
    assert nostr_tools.call("verify", event=event) is True
    tags = {t[0]: t[1:] for t in event["tags"]}
    assert tags["d"] == ["fees-pro"]
    assert tags["title"] == ["Fee desk"] and tags["summary"] == ["Fees, daily"]
    assert tags["price"] == ["20000", "SAT", "month"]
    assert tags["status"] == ["active"] and tags["published_at"] == [str(NOW)]
    assert tags["expiration"] == [str(NOW + 30 * DAY)]
    assert ["t", "hive-advisor"] in event["tags"] and ["t", "fee-policy"] in event["tags"]
    assert tags["alt"][0].startswith("Lightning Hive advisor service")
    assert event["kind"] == 30402 and event["content"].startswith("# Fee desk")


def every_kind_of_listing() -> list[Listing]:
    """One listing of each shape the agent publishes: each advisor pricing model, liquidity
    listings (capacity, duration, each liquidity model), no description, no trial, withdrawn."""
    advisor = [
        sample(listing_id=f"a-{m.value}", pricing_model=m)
        for m in (PricingModel.PER_ACTION, PricingModel.SUBSCRIPTION, PricingModel.PERFORMANCE)
    ]
    liquidity = [
        sample(
            listing_id=f"l-{m.value}",
            service=ServiceType.LIQUIDITY,
            pricing_model=m,
            primary="inbound-liquidity",
            secondary=[],
            schemas=[],
            capacity_sat=5_000_000,
            duration_days=90,
            trial=None,
        )
        for m in (PricingModel.SAT_HOURS, PricingModel.FLAT, PricingModel.REVENUE_SHARE,
                  PricingModel.YIELD_CURVE, PricingModel.AUCTION, PricingModel.DYNAMIC)
    ]  # fmt: skip
    bare = sample(listing_id="bare", description="", secondary=[], schemas=[], mints=[], trial=None)
    gone = sample(listing_id="gone", status=ListingStatus.WITHDRAWN)
    return [*advisor, *liquidity, bare, gone]


@pytest.mark.interop
def test_nostr_tools_nip99_accepts_every_listing_we_publish(nostr_tools: NostrTools) -> None:
    for item in every_kind_of_listing():
        event = listing.build(KEYS, item, created_at=NOW + DAY).model_dump()
        assert nostr_tools.call("nip99_validate", event=event) is True, item.listing_id
        parsed = nostr_tools.call("nip99_parse", event=event)
        assert parsed["location"] == "online"
        assert parsed["publishedAt"] == str(NOW)  # the first publication, not created_at
        assert (parsed["title"], parsed["summary"]) == (item.title, item.summary)
        assert parsed["price"] == {"amount": str(item.price_sat), "currency": "SAT",
                                   "frequency": "month"}  # fmt: skip
        assert parsed["content"] == (item.description or item.summary)
    # and the check is real: without the location tag nostr-tools refuses it
    event = listing.build(KEYS, sample(), created_at=NOW).model_dump()
    event["tags"] = [t for t in event["tags"] if t[0] != "location"]
    assert nostr_tools.call("nip99_validate", event=event) is False


def test_listing_content_defaults_to_the_summary() -> None:
    event = listing.build(KEYS, sample(description=""), created_at=NOW)
    assert event.content == "Fees, daily"
    assert ["location", "online"] in event.tags
    assert listing.parse(event, now=NOW).payload.description == ""
    assert sample(description="Fees, daily").description == ""  # a copy of the summary is none


def test_listing_lifetime_runs_from_this_version() -> None:
    refreshed = sample(expires_at=NOW + 400 * DAY)  # first published 400 days before expiry
    event = listing.build(KEYS, refreshed, created_at=NOW + 380 * DAY)
    assert event.tag("published_at") == str(NOW)
    with pytest.raises(InvalidPayload, match="366 days"):
        listing.build(KEYS, refreshed, created_at=NOW)


def test_rfp_windows() -> None:
    item = rfp.Rfp(
        rfp_id="r1",
        service=ServiceType.ADVISOR,
        need="fee-policy",
        max_price_sat=10_000,
        duration_days=30,
        posted_at=NOW,
        bid_deadline=NOW + 3 * DAY,
        award_by=NOW + 7 * DAY,
    )
    assert rfp.parse(rfp.build(KEYS, item, created_at=NOW), now=NOW).payload == item
    for bad in (
        {"bid_deadline": NOW - 1},
        {"award_by": NOW + 2 * DAY},
        {"award_by": NOW + 15 * DAY},
    ):
        with pytest.raises(ValidationError):
            rfp.Rfp(**{**item.model_dump(), **bad})


def test_sealed_bids() -> None:
    terms = bid.BidTerms(
        price_sat=9000,
        pricing_model=PricingModel.SUBSCRIPTION,
        duration_days=30,
        sla_response_s=600,
    )
    nonce = "11" * 32
    sealed = bid.Bid(
        rfp=f"36381:{THEM}:r1", phase=bid.Phase.COMMIT, commitment=bid.commitment(terms, nonce)
    )
    bid.check_phase(sealed, deadline=NOW + 10, now=NOW)
    with pytest.raises(Expired):
        bid.check_phase(sealed, deadline=NOW, now=NOW)
    opened = sealed.model_copy(update={"phase": bid.Phase.REVEAL, "terms": terms, "nonce": nonce})
    with pytest.raises(Expired):
        bid.check_phase(opened, deadline=NOW + 10, now=NOW)
    bid.check_phase(opened, deadline=NOW, now=NOW)
    cheaper = opened.model_copy(update={"terms": terms.model_copy(update={"price_sat": 1})})
    with pytest.raises(InvalidPayload):
        bid.check_phase(cheaper, deadline=NOW, now=NOW)
    rumor = bid.rumor(ME, sealed, created_at=NOW)
    assert bid.parse(rumor, now=NOW).payload == sealed


def terms(**kw) -> contract.ContractTerms:
    base = dict(
        service=ServiceType.ADVISOR,
        client=listing.did(ME),
        provider=listing.did(THEM),
        price_sat=20_000,
        pricing_model=PricingModel.SUBSCRIPTION,
        frequency=Frequency.MONTH,
        starts_at=NOW,
        duration_days=30,
        nonce="22" * 32,
    )
    return contract.ContractTerms(**{**base, **kw})


def test_contract_needs_both_signatures() -> None:
    t = terms()
    offer = contract.Offer(terms=t, signature=contract.sign_terms(KEYS, t))
    accept = contract.Accept(terms_hash=t.hash, signature=contract.sign_terms(OTHER, t))
    signed = contract.assemble(offer, ME, accept, THEM)
    contract.verify(signed)
    assert signed.id == t.hash
    with pytest.raises(Unauthorized):  # a stranger cannot accept
        contract.assemble(offer, ME, accept, sdk.Keys.generate().public_key().to_hex())
    with pytest.raises(Unauthorized):  # the offerer cannot accept its own offer
        contract.assemble(offer, ME, accept, ME)
    forged = contract.Accept(terms_hash=t.hash, signature=contract.sign_terms(KEYS, t))
    with pytest.raises(BadSignature):
        contract.assemble(offer, ME, forged, THEM)
    with pytest.raises(InvalidPayload):
        other_terms = terms(price_sat=1)
        contract.assemble(
            offer,
            ME,
            contract.Accept(
                terms_hash=other_terms.hash, signature=contract.sign_terms(OTHER, other_terms)
            ),
            THEM,
        )
    with pytest.raises(ValidationError):
        terms(provider=listing.did(ME))


def test_heartbeat_round_trip() -> None:
    beat = heartbeat.Heartbeat(contract="ab" * 32, seq=3, sent_at=NOW, uptime_bp=9950)
    event = heartbeat.build(KEYS, beat, created_at=NOW, expiration=NOW + 7200)
    assert heartbeat.parse(event, now=NOW).payload == beat
    assert ["d", "ab" * 32] in event.tags


GOOD = {
    "revenue_delta_pct": 10.0,
    "actions_taken": 80.0,
    "uptime_pct": 99.0,
    "channels_managed": 25.0,
}


def credential(**subject) -> dict:
    return {
        "@context": reputation.CONTEXT,
        "type": ["VerifiableCredential", "DIDReputationCredential"],
        "issuer": listing.did(ME),
        "validFrom": reputation.iso(NOW),
        "credentialSubject": {
            "id": listing.did(THEM),
            "domain": "hive:advisor",
            "period": {"start": reputation.iso(NOW - 30 * DAY), "end": reputation.iso(NOW)},
            "metrics": GOOD,
            "outcome": "renew",
            "evidence": [],
            **subject,
        },
    }


def test_credential_round_trip_and_generic_tags() -> None:
    cred = reputation.ReputationCredential.model_validate(credential())
    event = reputation.build(KEYS, cred, created_at=NOW)
    assert json.loads(event.content)["@context"] == reputation.CONTEXT
    assert reputation.parse(parse_event(event.to_json()), now=NOW).payload == cred
    assert ["rank", "79"] in event.tags  # 79.475 rounded
    assert ["L", "hive.reputation"] in event.tags
    assert ["l", "hive:advisor:trusted", "hive.reputation"] in event.tags
    assert ["p", THEM] in event.tags


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"id": listing.did(ME)}, "its own subject"),
        ({"metrics": {**GOOD, "uptime_pct": math.nan}}, "finite"),
        ({"metrics": {**GOOD, "uptime_pct": math.inf}}, "finite"),
        ({"period": {"start": reputation.iso(NOW), "end": reputation.iso(NOW)}}, "before it ends"),
        ({"outcome": "promote"}, "outcome"),
        ({"metrics": {"uptime_pct": 99.0}}, "need"),
        ({"domain": "hive:wizard"}, "domain"),
    ],
)
def test_bad_credentials_are_refused(change: dict, why: str) -> None:
    good = reputation.build(
        KEYS, reputation.ReputationCredential.model_validate(credential()), created_at=NOW
    )
    data = credential(**change)
    event = sign_event(KEYS, good.kind, json.dumps(data, allow_nan=True), good.tags, NOW)
    with pytest.raises(InvalidPayload, match=why):
        reputation.parse(event, now=NOW)


def test_credential_published_by_someone_else_is_refused() -> None:
    cred = reputation.ReputationCredential.model_validate(credential())
    forged = reputation.FAMILY.build(OTHER, cred, created_at=NOW)  # claims ME as issuer
    with pytest.raises(InvalidPayload, match="published by its issuer"):
        reputation.parse(forged, now=NOW)
    with pytest.raises(InvalidPayload, match="published by its issuer"):
        reputation.build(OTHER, cred, created_at=NOW)  # never published


def test_evidence_counts_only_if_it_verifies() -> None:
    signed = sign_event(OTHER, 1, "receipt", [], NOW).model_dump()
    evidence = [
        {"type": "SignedReceipt", "id": signed["id"], "event": signed},
        {"type": "SignedReceipt", "id": signed["id"], "event": {**signed, "content": "forged"}},
        {"type": "AuditLog", "id": "x"},
    ]
    cred = reputation.ReputationCredential.model_validate(credential(evidence=evidence))
    assert reputation.verified_evidence(cred) == 1


def test_every_family_error_is_typed() -> None:
    for bad in ("{}", "[]", "null", json.dumps({"credentialSubject": 1})):
        with pytest.raises(HiveError):
            reputation.FAMILY.load(bad)
