"""CLN signmessage format: CLN's own documented examples, round trips, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events import lnsig
from events.errors import BadSignature, InvalidKey

VECTORS = json.loads((Path(__file__).parent / "vectors/cln-signmessage.json").read_text())


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["message"])
def test_cln_examples(case: dict) -> None:
    raw = lnsig.zbase32_decode(case["zbase"])
    assert raw[0] == 31 + int(case["recid"], 16)
    assert raw[1:].hex() == case["signature"]
    assert lnsig.zbase32_encode(raw) == case["zbase"]
    assert lnsig.recover(case["message"], case["zbase"]) == VECTORS["node_id"]
    assert lnsig.check(case["message"], case["zbase"], VECTORS["node_id"])
    assert not lnsig.check(case["message"] + "!", case["zbase"], VECTORS["node_id"])


@given(secret=st.binary(min_size=32, max_size=32), message=st.text(max_size=300))
def test_sign_then_check(secret: bytes, message: str) -> None:
    if not 0 < int.from_bytes(secret, "big") < 2**256 - 432420386565659656852420866394968145599:
        return
    signed = lnsig.sign(secret, message)
    node = lnsig.node_id(secret)
    assert lnsig.recover(message, signed.zbase) == node
    assert lnsig.check(message, signed.zbase, node)


@given(st.binary(max_size=80))
def test_zbase32_round_trip(data: bytes) -> None:
    assert lnsig.zbase32_decode(lnsig.zbase32_encode(data)) == data


@pytest.mark.parametrize("bad", ["", "0OIl", "y" * 104, VECTORS["cases"][0]["zbase"][:-8]])
def test_malformed_signatures(bad: str) -> None:
    with pytest.raises(BadSignature):
        lnsig.recover("x", bad)
    assert lnsig.check("x", bad, VECTORS["node_id"]) is False


def test_node_id_shape_is_checked() -> None:
    with pytest.raises(InvalidKey):
        lnsig.check("x", VECTORS["cases"][0]["zbase"], "04" + "00" * 32)
