"""Canonical JSON and hashes of payloads (terms hashes, sealed-bid commitments)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel


def canonical(value: BaseModel | dict[str, Any] | list[Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same bytes for the same content everywhere."""
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(value: BaseModel | dict[str, Any] | list[Any]) -> str:
    """SHA-256 of the canonical JSON, hex."""
    return hashlib.sha256(canonical(value)).hexdigest()
