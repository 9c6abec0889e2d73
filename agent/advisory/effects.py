"""What an action would do, for a dry run: the predicted state after it, and the difference
between two states (split from the catalogue, agent/advisory/schemas.py)."""

from __future__ import annotations

from typing import Any

from agent.advisory.schemas import ActionSpec, Circular, Params


def predict(spec: ActionSpec, before: dict[str, Any], params: Params) -> dict[str, Any] | None:
    """The state after the action, as far as it can be known without running it."""
    after = {k: dict(v) if isinstance(v, dict) else v for k, v in before.items()}
    if spec.touches == "channel_policy":
        changes = {
            "ppm": getattr(params, "fee_ppm", getattr(params, "target_fee_ppm", None)),
            "base_msat": getattr(params, "base_msat", None),
            "htlc_min_msat": getattr(params, "htlc_min_msat", None),
            "htlc_max_msat": getattr(params, "htlc_max_msat", None),
        }
        for scid in after:
            after[scid].update({k: v for k, v in changes.items() if v is not None})
        return after
    if spec.name == "circular":
        p: Circular = params  # type: ignore[assignment]
        after[p.from_channel]["local_msat"] -= p.amount_sats * 1000  # plus the routing fee
        after[p.to_channel]["local_msat"] += p.amount_sats * 1000
        return after
    return None if spec.touches != "none" else after


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """`{"channel.field": [old, new]}` for every value that differs."""
    out: dict[str, list[Any]] = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            for field in sorted(set(old) | set(new)):
                if old.get(field) != new.get(field):
                    out[f"{key}.{field}"] = [old.get(field), new.get(field)]
        elif old != new:
            out[key] = [old, new]
    return out
