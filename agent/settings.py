"""Runtime settings and the relay configuration.

`Settings` is one pydantic-settings class, built once and passed in, never a global; every
field can be set from the environment with the `HIVE_` prefix (e.g. `HIVE_HOME`).
`RelaysConfig` is loaded from `relays.json` in the agent's home; `relays.example.json` at the
top of the repository mirrors it field for field (a test checks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import nostr_sdk as sdk
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.config_files import load_model
from agent.errors import ConfigInvalid
from events.base import FUTURE_TOLERANCE_S
from events.types import first_error


def normalize_relay_url(url: str) -> str:
    """The URL as nostr-sdk spells it, so configured and reported URLs compare equal; a bare
    trailing `/` is dropped (`wss://r.example/` and `wss://r.example` are one relay)."""
    try:
        normal = str(sdk.RelayUrl.parse(url))
    except sdk.NostrSdkError as exc:
        raise ValueError(f"not a relay URL: {exc}") from None
    scheme, _, rest = normal.partition("://")
    if rest.endswith("/") and "/" not in rest[:-1]:
        normal = f"{scheme}://{rest[:-1]}"
    return normal


RelayUrl = Annotated[
    str,
    StringConstraints(pattern=r"^wss?://[^\s/]+(/[^\s]*)?$", max_length=256),
    AfterValidator(normalize_relay_url),
]


class RelayEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: RelayUrl = Field(description="websocket URL of the relay")
    read: StrictBool = Field(True, description="subscribe here (NIP-65 read marker)")
    write: StrictBool = Field(True, description="publish here (NIP-65 write marker)")


class RelaysConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    relays: list[RelayEntry] = Field(min_length=1, max_length=32)
    dm_relays: list[RelayUrl] = Field(
        default_factory=list,
        max_length=3,
        description="where this agent receives gift wraps (published as NIP-17 kind 10050); "
        "empty means its read relays",
    )
    min_acks: int = Field(1, ge=1, description="relays that must acknowledge a publish")
    publish_timeout_s: float = Field(10.0, gt=0, le=120, description="wait for OK per attempt")
    connect_timeout_s: float = Field(5.0, gt=0, le=120, description="per connection attempt")
    reconnect_base_s: float = Field(1.0, gt=0, le=60, description="first reconnect delay")
    reconnect_max_s: float = Field(300.0, gt=0, le=3600, description="longest reconnect delay")
    jitter: float = Field(0.25, ge=0, le=1, description="random extra delay, as a fraction")

    @model_validator(mode="after")
    def _consistent(self) -> RelaysConfig:
        urls = [r.url for r in self.relays]
        if len(set(urls)) != len(urls):
            twice = sorted({u for u in urls if urls.count(u) > 1})
            raise ValueError(f"each relay URL may appear only once: {', '.join(twice)}")
        if len(set(self.dm_relays)) != len(self.dm_relays):
            raise ValueError("each dm_relays URL may appear only once")
        writers = sum(r.write for r in self.relays)
        if self.min_acks > writers:
            raise ValueError(f"min_acks is {self.min_acks} but only {writers} relays accept writes")
        if not any(r.read for r in self.relays):
            raise ValueError("at least one relay must be marked read")
        return self

    @property
    def read_urls(self) -> list[str]:
        return [r.url for r in self.relays if r.read]

    @property
    def write_urls(self) -> list[str]:
        return [r.url for r in self.relays if r.write]

    @property
    def inbox_urls(self) -> list[str]:
        return list(self.dm_relays) or self.read_urls

    @classmethod
    def single(cls, url: str, **kwargs: object) -> RelaysConfig:
        """One relay for reading and writing (demo, tests)."""
        return cls.from_urls([url], **kwargs)

    @classmethod
    def from_urls(cls, urls: list[str], **kwargs: object) -> RelaysConfig:
        """Read-and-write relays from a list of URLs; ConfigInvalid if one is not a relay URL."""
        try:
            return cls(relays=[RelayEntry(url=u) for u in urls], **kwargs)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise ConfigInvalid(f"relay URLs: {first_error(exc)}") from None

    @classmethod
    def load(cls, path: Path) -> RelaysConfig:
        """Read `relays.json`; ConfigInvalid with the offending field if it is wrong."""
        try:
            return load_model(cls, path)
        except FileNotFoundError:
            raise ConfigInvalid(
                f"{path} does not exist; copy relays.example.json there and edit it"
            ) from None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HIVE_", extra="ignore", frozen=True)

    home: Path = Field(
        default=Path("~/.hive-agent"),
        description="directory for the agent's key file, store and relay configuration",
    )
    flood_per_minute: int = Field(
        120, ge=1, description="events accepted per sender per minute before decryption"
    )
    flood_burst: int = Field(60, ge=1, description="events a sender may send at once")
    flood_senders: int = Field(
        10_000, ge=100, description="senders tracked by the flood limiter (least recent dropped)"
    )
    inbound_queue: int = Field(4096, ge=16, description="raw events buffered before processing")
    inbound_backlog: int = Field(
        16_384,
        ge=256,
        description="events waiting to be processed before the oldest are shed (a flood)",
    )
    batch_size: int = Field(256, ge=1, description="inbound events committed per transaction")
    seen_retention_s: int = Field(
        7 * 86400, ge=3 * 86400, description="how long processed event ids are remembered"
    )
    giftwrap_lookback_s: int = Field(
        2 * 86400 + 3600,
        ge=2 * 86400,
        description="catch-up window for gift wraps, whose dates are randomised 2 days back",
    )
    catchup_margin_s: int = Field(
        600, ge=0, description="overlap when re-subscribing after a reconnect"
    )
    wrap_failures_per_minute: int = Field(
        600, ge=1, description="gift wraps that fail to open, from all senders, before refusing"
    )
    strangers_per_minute: int = Field(
        300, ge=1, description="gift wraps from all unknown senders together, per minute"
    )
    per_stranger_per_minute: int = Field(
        60, ge=1, description="gift wraps per minute from one unknown sender (seal signer)"
    )
    per_known_per_minute: int = Field(
        600,
        ge=1,
        description="gift wraps per minute from one key we only heard from (a node that "
        "granted us a credential, an offer's party); keys we chose to work with are unlimited",
    )
    known_per_minute: int = Field(
        6_000, ge=1, description="gift wraps per minute from all keys we only heard from"
    )
    giftwrap_min_pow: int = Field(
        0,
        ge=0,
        le=24,
        description="NIP-13 bits of work required on gift wraps to us (advertised in our 10050)",
    )
    future_tolerance_s: int = Field(
        FUTURE_TOLERANCE_S,
        ge=60,
        le=86400,
        description="events dated further ahead than this are refused (FROM_FUTURE), and no "
        "subscription cursor ever moves past the local clock",
    )
    allow_private_relays: bool = Field(
        False,
        description="dial loopback, private and link-local relays named in other people's "
        "relay lists, and such mints named by tokens taken with `escrow receive --trust-mint` "
        "(test networks only; relays.json and policy.json's mints are never filtered)",
    )
    outbox_ttl_s: int = Field(7 * 86400, ge=60, description="give up delivering after this long")
    outbox_retry_base_s: float = Field(2.0, gt=0, description="first outbox retry delay")
    outbox_retry_max_s: float = Field(600.0, gt=0, description="longest outbox retry delay")

    @field_validator("home")
    @classmethod
    def _home_named(cls, value: Path) -> Path:
        if str(value).strip() in ("", "."):
            raise ValueError("HIVE_HOME is empty; name the agent's directory (or unset it)")
        return value

    @property
    def root(self) -> Path:
        return self.home.expanduser()

    def check_home(self) -> None:
        """ConfigInvalid unless the home is a directory (or does not exist yet)."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise ConfigInvalid(f"the agent's home {root} exists but is not a directory")
        for parent in root.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ConfigInvalid(f"{parent} (above the agent's home) is not a directory")
                break

    @property
    def key_file(self) -> Path:
        """The standalone agent's Nostr secret key (mode 0600)."""
        return self.root / "nostr.key"

    @property
    def relays_file(self) -> Path:
        return self.root / "relays.json"

    @property
    def store_file(self) -> Path:
        return self.root / "agent.sqlite"
