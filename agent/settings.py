"""Runtime settings: one pydantic-settings class, built once and passed in, never a global.

Every field can be set from the environment with the `HIVE_` prefix (e.g. `HIVE_HOME`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HIVE_", extra="ignore", frozen=True)

    home: Path = Field(
        default=Path("~/.hive-agent"),
        description="directory for the agent's key file, store and relay configuration",
    )

    @property
    def root(self) -> Path:
        return self.home.expanduser()

    @property
    def key_file(self) -> Path:
        """The standalone agent's Nostr secret key (mode 0600)."""
        return self.root / "nostr.key"
