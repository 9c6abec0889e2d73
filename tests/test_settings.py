"""Settings and relays.json: the example mirrors the model; bad files get clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    ],
)
def test_bad_relays_files(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "relays.json"
    path.write_text(content)
    with pytest.raises(ConfigInvalid, match=fragment):
        RelaysConfig.load(path)


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
