"""Settings and relays.json: the example mirrors the model; bad files get clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.advisory.policy import PolicyConfig
from agent.errors import ConfigInvalid
from agent.settings import RelayEntry, RelaysConfig, Settings

EXAMPLE = Path(__file__).resolve().parent.parent / "relays.example.json"


def test_example_mirrors_the_model_field_for_field() -> None:
    data = json.loads(EXAMPLE.read_text())
    config = RelaysConfig.load(EXAMPLE)
    assert set(data) == set(RelaysConfig.model_fields)
    assert all(set(r) == set(RelayEntry.model_fields) for r in data["relays"])
    assert config.min_acks <= len(config.write_urls)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{", "not valid JSON"),
        ('{"relays": []}', "relays"),
        ('{"relays": [{"url": "https://x"}]}', "relays.0.url"),
        ('{"relays": [{"url": "wss://a"}, {"url": "wss://a"}]}', "only once"),
        ('{"relays": [{"url": "wss://a"}], "min_acks": 2}', "min_acks"),
        ('{"relays": [{"url": "wss://a", "read": false}]}', "read"),
        ('{"relays": [{"url": "wss://a"}], "retries": 3}', "retries"),
        ('{"relays": [{"url": "wss://a.example", "read": "yes"}]}', "relays.0.read"),
        ('{"relays": [{"url": "wss://a.example"}, {"url": "wss://a.example/"}]}', "only once"),
        ('{"relays": [{"url": "wss://A.example"}, {"url": "wss://a.example:443"}]}', "only once"),
        ("[" * 5000 + "]" * 5000, "nested"),
        ('{"relays": ' + "[" * 40 + "]" * 40 + "}", "nested"),
    ],
)
def test_bad_relays_files(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "relays.json"
    path.write_text(content)
    with pytest.raises(ConfigInvalid, match=fragment):
        RelaysConfig.load(path)


@pytest.mark.parametrize("raw", [b"\xff\xfe{}", b'{"relays": "\xc3\x28"}'])
def test_relays_file_that_is_not_utf8(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "relays.json"
    path.write_bytes(raw)
    with pytest.raises(ConfigInvalid, match="UTF-8"):
        RelaysConfig.load(path)


def test_config_file_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "relays.json").mkdir()
    with pytest.raises(ConfigInvalid, match="directory"):
        RelaysConfig.load(tmp_path / "relays.json")
    (tmp_path / "policy.json").mkdir()
    with pytest.raises(ConfigInvalid, match="directory"):
        PolicyConfig.load(tmp_path / "policy.json")


def test_a_huge_config_file_is_refused_without_being_read_whole(tmp_path: Path) -> None:
    """A careless --hive-policy-file naming a 200 MB file (a log, a dump): it was read whole
    into memory, then refused for its size; now at most a byte over the limit is read."""
    import tracemalloc

    path = tmp_path / "policy.json"
    with path.open("wb") as fh:
        fh.truncate(200_000_000)  # sparse: costs the disk nothing
    tracemalloc.start()
    try:
        with pytest.raises(ConfigInvalid, match="larger than"):
            PolicyConfig.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, peak


KEY = "ab" * 32


@pytest.mark.parametrize(
    ("policy", "fragment"),
    [
        ({"quiet_hours_utc": [25, -3]}, "quiet_hours_utc.0"),
        ({"quiet_hours_utc": [1, 2, 3]}, "quiet_hours_utc"),
        ({"approvers": ["not a key"]}, "approvers.0"),
        ({"approvers": [KEY], "approvals_needed": 2}, "only 1 distinct approvers"),
        ({"approvers": [KEY, KEY], "approvals_needed": 2}, "only 1 distinct approvers"),
        ({"mode": "oracle"}, "oracle_url"),
        ({"mode": "oracle", "oracle_url": "ftp://x"}, "oracle_url"),
        ({"protected_channels": ["x"]}, "protected_channels.0"),
        ({"forbidden_peers": ["02zz"]}, "forbidden_peers.0"),
        ({"preset": "yolo"}, "preset"),
    ],
)
def test_bad_policy_files_are_refused_in_one_line(
    tmp_path: Path, policy: dict, fragment: str
) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    with pytest.raises(ConfigInvalid, match=fragment) as caught:
        PolicyConfig.load(path)
    assert "\n" not in str(caught.value) and "pydantic" not in str(caught.value)


def test_good_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({
        "quiet_hours_utc": [22, 6], "approvers": [KEY, "cd" * 32], "approvals_needed": 2,
        "mode": "oracle", "oracle_url": "https://oracle.example/decide",
        "protected_channels": ["800001x1x0"], "forbidden_peers": ["02" + "ab" * 32],
    }))  # fmt: skip
    policy = PolicyConfig.load(path)
    assert policy.quiet_hours_utc == (22, 6) and policy.approvals_needed == 2


def test_empty_home_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_HOME", "")
    with pytest.raises(ValidationError, match="HIVE_HOME is empty"):
        Settings()


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigInvalid, match=r"relays\.example\.json"):
        RelaysConfig.load(tmp_path / "relays.json")


def test_urls_are_normalised_like_nostr_sdk_reports_them() -> None:
    assert RelaysConfig.single("wss://Nos.LOL").read_urls == ["wss://nos.lol"]


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HIVE_HOME", str(tmp_path))
    monkeypatch.setenv("HIVE_FLOOD_PER_MINUTE", "30")
    settings = Settings()
    assert settings.root == tmp_path
    assert settings.flood_per_minute == 30
    assert settings.store_file == tmp_path / "agent.sqlite"
    assert settings.giftwrap_lookback_s >= 2 * 86400
