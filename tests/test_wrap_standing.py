"""Gift-wrap limits by what the seal's signer is to this agent, through the real inbound
pipeline on a real store: keys the agent chose to work with are never limited, a key it merely
heard from has a bucket of its own, a stranger draws on the strangers' budgets.

Attack (before): any key became a "known correspondent" — never limited — with one message:
granting us a credential (any node may) or sending us a contract offer.  From then on its
gift wraps were opened and handled without any limit (twice the CPU of a refused stranger's,
and ahead of a legitimate advisor's command in the pipeline)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import nostr_sdk as sdk

from agent.clock import SystemClock
from agent.handlers import core_routes
from agent.inbound import Inbound
from agent.nostr.client import Incoming
from agent.ratelimit import KNOWN, STRANGER, TRUSTED, FloodLimiter, WrapGuard
from agent.store import Store
from agent.store import advisory as repo
from events import credential, nip59
from events.base import make_rumor

FLOOD = 1_000


def grant(node: sdk.Keys, advisor: str, now: int) -> credential.Grant:
    cred = credential.ManagementCredential(
        credential_id=node.public_key().to_hex()[:32], node=node.public_key().to_hex(),
        advisor=advisor, tier=credential.Tier.STANDARD, allowed_schemas=["hive:monitor/*"],
        valid_from=now - 60, valid_until=now + 86400,
    )  # fmt: skip
    return credential.sign(node, cred)


def test_only_keys_the_agent_chose_are_unlimited(tmp_path: Path) -> None:
    me, stranger = sdk.Keys.generate(), sdk.Keys.generate()
    granter = sdk.Keys.generate()  # a node that granted us a credential (anyone can)
    advisor = sdk.Keys.generate()  # an advisor we granted one (we chose it)
    mine = me.public_key().to_hex()
    store, clock, now = Store(tmp_path / "s.sqlite"), SystemClock(), int(time.time())
    with store.transaction(now) as tx:
        repo.save_credential(tx, grant(granter, mine, now), "held")
        repo.save_credential(tx, grant(me, advisor.public_key().to_hex(), now), "granted")
    standing = store.standing
    assert standing(granter.public_key().to_hex()) == KNOWN
    assert standing(advisor.public_key().to_hex()) == TRUSTED
    assert standing(stranger.public_key().to_hex()) == STRANGER
    guard = WrapGuard(per_known_per_minute=600, standing=standing)
    inbound = Inbound(
        store, core_routes(me, clock, guard).handlers, FloodLimiter(10**6, 10**6, 99), clock
    )

    def flood(sender: sdk.Keys, n: int) -> Counter[str]:
        pub, out = sender.public_key().to_hex(), Counter[str]()
        wraps = [
            nip59.wrap(sender, mine, make_rumor(pub, 7, f"+{i}", [], now), now=now)
            for i in range(n)
        ]
        for start in range(0, n, 100):
            batch = [Incoming("r", w.to_json(), "inbox") for w in wraps[start : start + 100]]
            out.update(inbound.process(batch).outcomes)
        return out

    trusted = flood(advisor, FLOOD)
    assert trusted["RATE_LIMITED"] == 0 and sum(trusted.values()) == FLOOD
    known = flood(granter, FLOOD)
    assert 300 <= FLOOD - known["RATE_LIMITED"] <= 320  # its own bucket: the burst, a trickle
    strange = flood(stranger, 200)
    assert 30 <= 200 - strange["RATE_LIMITED"] <= 35  # the per-stranger bucket


def test_many_keys_made_known_share_one_budget(tmp_path: Path) -> None:
    """Becoming "known" costs a key one message (through the strangers' budget), so an
    attacker can make many: their wraps together draw on one budget as well as their own."""
    me = sdk.Keys.generate()
    mine = me.public_key().to_hex()
    store, clock, now = Store(tmp_path / "s.sqlite"), SystemClock(), int(time.time())
    granters = [sdk.Keys.generate() for _ in range(20)]
    with store.transaction(now) as tx:
        for g in granters:
            repo.save_credential(tx, grant(g, mine, now), "held")
    guard = WrapGuard(per_known_per_minute=600, known_per_minute=1_200, standing=store.standing)
    inbound = Inbound(
        store, core_routes(me, clock, guard).handlers, FloodLimiter(10**6, 10**6, 99), clock
    )
    outcomes: Counter[str] = Counter()
    for g in granters:  # 50 each: within every key's own burst of 300
        pub = g.public_key().to_hex()
        batch = [
            Incoming("r", nip59.wrap(g, mine, make_rumor(pub, 7, f"+{i}", [], now), now=now)
                     .to_json(), "inbox")
            for i in range(50)
        ]  # fmt: skip
        outcomes.update(inbound.process(batch).outcomes)
    admitted = 1_000 - outcomes["RATE_LIMITED"]
    assert 600 <= admitted <= 620  # the shared burst (half a minute's budget), not 1,000
