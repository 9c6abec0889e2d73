"""Receipt chains checked whole (`verify_chain`) and a piece at a time (`extend_chain`, what
the dashboard does so a long chain is verified once, then only what was added): the same
verdict for every way a chain is split, and every kind of damage found either way — on a
real store for the dashboard's checks, own chains and held ones."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import nostr_sdk as sdk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.dashboard import data
from agent.store import Store
from agent.store import advisory as repo
from events import credential, receipt
from events.errors import BadEventId, HiveError, InvalidPayload
from events.receipt import GENESIS, ChainCheck, Receipt, extend_chain, verify_chain

NODE = sdk.Keys.generate()
ADVISOR = sdk.Keys.generate().public_key().to_hex()
CRED = "ab" * 16


def sealed(keys: sdk.Keys, seq: int, prev: str, cred: str = CRED, **change: object) -> Receipt:
    body = {
        "receipt_id": secrets.token_hex(16), "seq": seq,
        "node": keys.public_key().to_hex(), "credential_id": cred, "advisor": ADVISOR,
        "command_id": secrets.token_hex(16), "schema_ref": "hive:fee-policy/v1",
        "action": "set_single", "params_hash": "0" * 64, "status": "ok", "error": None,
        "result": {"n": seq}, "danger": 1, "decision": "", "state_hash_before": "0" * 64,
        "state_hash_after": "0" * 64, "created_at": 1_700_000_000 + seq, "prev_hash": prev,
        "preimage": None,
    } | change  # fmt: skip
    return receipt.seal(keys, body)


def chain_of(n: int, keys: sdk.Keys = NODE, cred: str = CRED) -> list[Receipt]:
    out: list[Receipt] = []
    for seq in range(1, n + 1):
        out.append(sealed(keys, seq, out[-1].receipt_hash if out else GENESIS, cred))
    return out


CHAIN = chain_of(12)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.data())
def test_a_chain_checked_in_pieces_is_checked_as_a_whole(n: int, pieces: st.DataObject) -> None:
    chain = CHAIN[:n]
    verify_chain(list(reversed(chain)))  # (any order: sorted by seq)
    cuts = sorted(pieces.draw(st.lists(st.integers(0, n), max_size=4)))
    done = ChainCheck()
    for start, end in zip([0, *cuts], [*cuts, n], strict=True):
        done, problem = extend_chain(done, chain[start:end])
        assert problem is None
    last = chain[-1]
    assert done == ChainCheck(n, last.receipt_hash, last.node, last.credential_id)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["gap", "fork", "edit", "mixed", "relinked"]), st.integers(1, 10))
def test_damage_is_found_whole_and_in_pieces_at_the_same_receipt(how: str, at: int) -> None:
    chain = list(CHAIN[:11])
    if how == "gap":
        del chain[at - 1]  # receipt `at` missing
    elif how == "fork":
        chain.insert(at, sealed(NODE, at, chain[at - 1].prev_hash))  # a second receipt `at`
    elif how == "edit":  # a field changed after sealing
        chain[at - 1] = chain[at - 1].model_copy(update={"result": {"n": -1}})
    elif how == "mixed":  # another node's receipt, linked in
        chain[at] = sealed(sdk.Keys.generate(), at + 1, chain[at - 1].receipt_hash)
    else:  # re-sealed with another prev_hash: signed, but not the chain
        chain[at] = sealed(NODE, at + 1, "11" * 32)
    with pytest.raises(HiveError) as whole:
        verify_chain(chain)
    done, first = extend_chain(ChainCheck(), chain[:at])
    done, problem = extend_chain(done, chain[at:]) if first is None else (done, first)
    assert problem is not None and str(problem) == str(whole.value)
    assert isinstance(problem, BadEventId if how == "edit" else InvalidPayload)
    assert done.seq <= at  # never past the damage


def put(store: Store, receipts: list[Receipt], *, held: bool = False) -> None:
    with store.transaction(int(time.time())) as tx:
        for r in receipts:
            if held:
                repo.save_held_receipt(tx, r)
            else:
                repo.save_receipt(tx, r, None)


def test_the_dashboard_checks_a_long_chain_once_then_what_was_added(tmp_path: Path) -> None:
    """Own chain on a real store: the second view reads the same verdict, a receipt sealed
    meanwhile joins it, and pages show the newest first without reading the rest."""
    store = Store(tmp_path / "agent.sqlite")
    chain = chain_of(250)
    put(store, chain)
    checks = data.ChainChecks()
    first = data.receipts(store, CRED, 0, checks)
    assert first["verdict"] == {"ok": True, "text": "250 receipts, chain intact"}
    assert [r["seq"] for r in first["rows"]][:3] == [250, 249, 248] and len(first["rows"]) == 100
    assert first["pages"] == 3 and first["total"] == 250
    last = data.receipts(store, CRED, 2, checks)
    assert [r["seq"] for r in last["rows"]] == list(range(50, 0, -1))
    put(store, [sealed(NODE, 251, chain[-1].receipt_hash)])
    again = data.receipts(store, CRED, 0, checks)
    assert again["verdict"]["text"] == "251 receipts, chain intact"
    assert again["rows"][0]["seq"] == 251
    put(store, [sealed(NODE, 253, "22" * 32)])  # a gap: 252 never came
    broken = data.receipts(store, CRED, 0, checks)["verdict"]
    assert broken == {"ok": False, "text": "INVALID_PAYLOAD: receipt 252 is missing from the chain"}
    beyond = data.receipts(store, CRED, 10**30, checks)  # a page number past any end
    assert beyond["rows"] == [] and beyond["total"] == 252


def test_a_fork_inside_a_checked_held_chain_is_found_at_the_next_view(tmp_path: Path) -> None:
    """A held chain: the granting node sends a second receipt with a seq already verified (a
    fork). The count of the verified part changed, so the chain is checked again — and red."""
    store = Store(tmp_path / "agent.sqlite")
    me = sdk.Keys.generate()
    now = int(time.time())
    cred = credential.ManagementCredential(
        credential_id=CRED, node=NODE.public_key().to_hex(), advisor=me.public_key().to_hex(),
        tier=credential.Tier.STANDARD, allowed_schemas=["hive:fee-policy/*"],
        valid_from=now - 60, valid_until=now + 86400,
    )  # fmt: skip
    with store.transaction(now) as tx:
        repo.save_credential(tx, credential.sign(NODE, cred), "held")
    chain = chain_of(30)
    put(store, chain, held=True)
    checks = data.ChainChecks()
    assert data.receipts(store, CRED, 0, checks)["verdict"]["text"] == "30 receipts, chain intact"
    put(store, [sealed(NODE, 7, chain[5].receipt_hash)], held=True)  # a second receipt 7
    verdict = data.receipts(store, CRED, 0, checks)["verdict"]
    assert verdict["ok"] is False and "receipt 8 is missing" in verdict["text"]
