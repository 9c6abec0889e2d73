"""Advisor commands (rumor 4382, gift-wrapped to the node's agent).

A command names its schema and action, carries parameters, the credential it relies on, a
random 128-bit nonce, its own issue and expiry times (the gift wrap's date is randomised, so
the rumor's times are what count) and an idempotency id: delivered at least once over several
relays, executed exactly once.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator, model_validator

from events.canonical import content_hash
from events.family import JsonFamily, Payload
from events.kinds import Kind
from events.types import Hex32, Hex64

SchemaRef = Annotated[str, StringConstraints(pattern=r"^hive:[a-z-]{2,30}/v[0-9]+$")]
Action = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,39}$")]
MAX_LIFETIME_S = 3600


class Command(Payload):
    command_id: Hex32
    node: Hex64
    credential_id: Hex32
    schema_: SchemaRef = Field(alias="schema")
    action: Action
    params: dict[str, Any] = Field(default_factory=dict, max_length=32)
    nonce: Hex32
    issued_at: int = Field(ge=0)
    expires_at: int = Field(ge=0)
    dry_run: bool = False
    ticket: Hex32 | None = None  # the escrow ticket the advisor expects to be paid from

    model_config = Payload.model_config | {"serialize_by_alias": True, "validate_by_name": True}

    @field_validator("params")
    @classmethod
    def _plain(cls, params: dict[str, Any]) -> dict[str, Any]:
        for key, value in params.items():
            if not isinstance(key, str) or len(key) > 40:
                raise ValueError("parameter names are short strings")
            if not isinstance(value, str | int | bool) or (
                isinstance(value, str) and len(value) > 500
            ):
                raise ValueError(f"parameter {key!r} must be a string, integer or boolean")
        return params

    @model_validator(mode="after")
    def _lifetime(self) -> Command:
        if not 0 < self.expires_at - self.issued_at <= MAX_LIFETIME_S:
            raise ValueError("a command expires after it is issued, within an hour")
        return self

    @property  # shadows pydantic v1's deprecated classmethod `schema` on purpose
    def schema(self) -> str:  # type: ignore[override]
        return self.schema_

    @property
    def params_hash(self) -> str:
        return content_hash(self.params)


FAMILY = JsonFamily(Kind.COMMAND, Command, alt="Lightning Hive advisor command")
