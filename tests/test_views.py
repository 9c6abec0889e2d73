"""Text views: local ISO times, ages, tables."""

from __future__ import annotations

from datetime import datetime

from agent.cli.views import ago, pairs, since, table, when


def test_when_is_local_iso_with_offset() -> None:
    text = when(1_700_000_000)
    assert datetime.fromisoformat(text).timestamp() == 1_700_000_000
    assert when(None) == "-" and when(0) == "-"


def test_ago_and_since() -> None:
    assert [ago(5), ago(600), ago(3 * 3600), ago(3 * 86400)] == ["5 s", "10 min", "3 h", "3 d"]
    assert since(1_000, now=1_180).endswith("(3 min ago)")
    assert since(1_180, now=1_000).endswith("(in 3 min)")


def test_table_aligns_and_says_none() -> None:
    assert table(["a", "n"], []) == "(none)"
    text = table(["name", "n"], [["x", 5], ["longer", 12], ["y", None]])
    assert text.splitlines() == ["name     n", "x        5", "longer  12", "y        -"]
    assert pairs([("a", 1), ("bbb", None)]) == "a    1\nbbb  -"
