"""The operator's policy and the approval decision (DESIGN.md §5).

`decide()` is one pure function over danger, reputation factor, preset, tier, governance mode,
quiet hours and the verdict of the limit checks; `tests/test_approval.py` covers every row.

    1. tier cap (monitor 2, standard 5, advanced 7, admin 10): above it → RESTRICTED
    2. quiet hours: danger > 2 → RESTRICTED
    3. limits: constraints, budgets, rate limits, protected channels, forbidden peers
    4. route, with L = max(d ÷ r, 0.5·d): d ≥ 9 → MULTISIG; L ≥ 7 or d ≥ the preset's
       confirm-from → CONFIRM; L ≥ 4 → QUEUE; else AUTO
    5. mode: autonomous keeps the route; operator turns AUTO into QUEUE; oracle sends AUTO and
       QUEUE to the oracle; failsafe refuses (FAILSAFE_ONLY, before step 1) every action the
       catalogue does not mark emergency and runs emergency ones (AUTO and QUEUE → AUTO) within
       the failsafe budget (a limit of step 3).  CONFIRM and MULTISIG never change.

`Governance` is how the node governs its own actions (fleet actions, agent/advisory/local.py):
the plugin options `hive-governance-mode` and `hive-failsafe-budget-per-day`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from agent.config_files import load_model
from events.credential import TIER_CAP, Tier
from events.errors import FailsafeOnly, HiveError, InvalidKey, InvalidParams, Restricted
from events.nip19 import pubkey_hex


class Preset(StrEnum):
    CONSERVATIVE = "conservative"
    MODERATE = "moderate"
    AGGRESSIVE = "aggressive"


class Mode(StrEnum):
    AUTONOMOUS = "autonomous"
    OPERATOR = "operator"  # every automatic action waits for the operator ("advisor mode")
    ORACLE = "oracle"
    FAILSAFE = "failsafe"  # emergency actions only, within the failsafe budget


class Route(StrEnum):
    AUTO = "AUTO"
    QUEUE = "QUEUE"
    CONFIRM = "CONFIRM"
    MULTISIG = "MULTISIG"
    ORACLE = "ORACLE"
    REFUSED = "REFUSED"


@dataclass(frozen=True)
class PresetLimits:
    max_fee_change_pct: int
    max_rebalance_sats: int
    confirm_from: int


PRESETS = {
    Preset.CONSERVATIVE: PresetLimits(15, 100_000, 5),
    Preset.MODERATE: PresetLimits(30, 500_000, 7),
    Preset.AGGRESSIVE: PresetLimits(50, 2_000_000, 9),
}
Hour = Annotated[int, Field(ge=0, le=23)]


def _nip19_key(value: object) -> object:
    """An `npub1…`/`nprofile1…` (or `nostr:` one) in policy.json, as hex; else as it is."""
    if isinstance(value, str) and value.removeprefix("nostr:").startswith(("npub1", "nprofile1")):
        try:
            return pubkey_hex(value)
        except InvalidKey as exc:
            raise ValueError(exc.message) from None
    return value


PubkeyHex = Annotated[
    str, BeforeValidator(_nip19_key), StringConstraints(pattern=r"^[0-9a-f]{64}$")
]
NodeIdHex = Annotated[str, StringConstraints(pattern=r"^0[23][0-9a-f]{64}$")]
Scid = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,10}x[0-9]{1,10}x[0-9]{1,5}$")]
QUEUE_TTL_S = 24 * 3600
CONFIRM_TTL_S = 4 * 3600


class Budgets(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sats_moved_per_day: int = Field(50_000_000, ge=0)
    sats_moved_per_week: int = Field(200_000_000, ge=0)
    sats_moved_per_advisor_day: int = Field(25_000_000, ge=0)
    fees_per_day_sat: int = Field(50_000, ge=0)
    fees_per_week_sat: int = Field(200_000, ge=0)
    channels_per_day: int = Field(5, ge=0)
    channels_per_week: int = Field(20, ge=0)


class PolicyConfig(BaseModel):
    """`policy.json` in the agent's home (all fields optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    preset: Preset = Preset.MODERATE
    mode: Mode = Mode.AUTONOMOUS
    oracle_url: str | None = Field(None, max_length=2048, pattern=r"^https?://\S+$")
    operator_pubkey: PubkeyHex | None = None
    approvers: list[PubkeyHex] = Field(default_factory=list, max_length=16)
    approvals_needed: int = Field(2, ge=1, le=16)
    quiet_hours_utc: tuple[Hour, Hour] | None = None  # [start, end) hours, e.g. (0, 6)
    protected_channels: list[Scid] = Field(default_factory=list, max_length=10_000)
    forbidden_peers: list[NodeIdHex] = Field(default_factory=list, max_length=10_000)
    budgets: Budgets = Field(default_factory=Budgets)
    rate_per_minute: int = Field(60, ge=1)
    dangerous_rate_per_minute: int = Field(5, ge=1)
    # commands of one advisor waiting for the operator at once (each waits up to a day)
    max_waiting_per_advisor: int = Field(50, ge=1, le=10_000)
    mints: list[str] = Field(default_factory=list, max_length=16)  # Cashu mints for escrow

    @model_validator(mode="after")
    def _consistent(self) -> PolicyConfig:
        if self.mode == Mode.ORACLE and not (self.oracle_url or "").startswith(
            ("http://", "https://")
        ):
            raise ValueError("mode 'oracle' needs an oracle_url (http:// or https://)")
        if self.approvers and len(set(self.approvers)) < self.approvals_needed:
            raise ValueError(
                f"approvals_needed is {self.approvals_needed} but only "
                f"{len(set(self.approvers))} distinct approvers are listed"
            )
        return self

    @classmethod
    def load(cls, path: Path) -> PolicyConfig:
        """`policy.json` (defaults if it does not exist); ConfigInvalid in one line if wrong."""
        try:
            return load_model(cls, path)
        except FileNotFoundError:
            return cls()

    def quiet(self, now: int) -> bool:
        if self.quiet_hours_utc is None:
            return False
        start, end = self.quiet_hours_utc
        hour = (now % 86400) // 3600
        return start <= hour < end if start <= end else hour >= start or hour < end


@dataclass(frozen=True)
class Decision:
    route: Route
    danger: int
    level: float
    reasons: list[str] = field(default_factory=list)
    error: HiveError | None = None

    def explain(self) -> str:
        return f"{self.route.value} (danger {self.danger}, level {self.level:.1f}): " + "; ".join(
            self.reasons
        )


def level(danger: int, reputation_factor: float) -> float:
    r = min(2.0, max(0.5, reputation_factor))
    return max(danger / r, 0.5 * danger)


def decide(
    danger: int,
    reputation_factor: float,
    preset: Preset,
    tier: Tier,
    mode: Mode,
    *,
    quiet: bool = False,
    limit_error: HiveError | None = None,
    emergency: bool = False,
) -> Decision:
    """The approval decision for one command (pure); `emergency`: the catalogue marks the
    action as one failsafe mode may run."""
    lvl = level(danger, reputation_factor)
    if mode == Mode.FAILSAFE and not emergency:
        reason = "failsafe mode: only actions the catalogue marks emergency run"
        return Decision(Route.REFUSED, danger, lvl, [reason], FailsafeOnly(reason))
    cap = TIER_CAP[tier]
    if danger > cap:
        reason = f"danger {danger} is above the {tier.value} tier's cap of {cap}"
        return Decision(Route.REFUSED, danger, lvl, [reason], Restricted(reason))
    if quiet and danger > 2:
        reason = f"quiet hours: only danger 2 or less runs now (this is {danger})"
        return Decision(Route.REFUSED, danger, lvl, [reason], Restricted(reason))
    if limit_error is not None:
        return Decision(Route.REFUSED, danger, lvl, [limit_error.message], limit_error)
    confirm_from = PRESETS[preset].confirm_from
    if danger >= 9:
        route, why = Route.MULTISIG, "danger 9–10 always needs m-of-n approval"
    elif lvl >= 7 or danger >= confirm_from:
        route, why = (
            Route.CONFIRM,
            f"level ≥ 7 or danger ≥ {confirm_from} ({preset.value}): approve, then confirm",
        )
    elif lvl >= 4:
        route, why = Route.QUEUE, "level 4–6: the operator approves"
    else:
        route, why = Route.AUTO, "level below 4: runs at once"
    reasons = [why]
    if mode == Mode.OPERATOR and route == Route.AUTO:
        route = Route.QUEUE
        reasons.append("operator mode: everything waits for the operator")
    elif mode == Mode.ORACLE and route in (Route.AUTO, Route.QUEUE):
        route = Route.ORACLE
        reasons.append("oracle mode: the oracle decides")
    elif mode == Mode.FAILSAFE and route in (Route.AUTO, Route.QUEUE):
        route = Route.AUTO
        reasons.append("failsafe mode: an emergency action runs within the failsafe budget")
    return Decision(route, danger, lvl, reasons)


def reputation_factor(score: float | None) -> float:
    """r ∈ [0.5, 2] from an aggregate reputation score; 1.0 (neutral) with no credentials."""
    if score is None:
        return 1.0
    return 0.5 + 1.5 * max(0.0, min(100.0, score)) / 100


FAILSAFE_BUDGET_SATS = 10_000_000  # per UTC day (UPSTREAM: failsafe-budget-per-day)
FAILSAFE_PER_HOUR = 2
GOVERNANCE_MODES = (Mode.AUTONOMOUS, Mode.OPERATOR, Mode.FAILSAFE)


@dataclass(frozen=True)
class Governance:
    """How the node governs its own actions (the fleet's, agent/advisory/local.py).

    `operator` is the default: a fleet action opens or closes channels with the operator's
    money on the word of a planner that weighs other members' gossip; nothing runs until the
    operator has seen it (`hive-pending`, `hive-approve`), so a misconfigured or misled fleet
    costs a queue entry, never a channel.  `autonomous` is the operator's explicit choice to
    let the approval table (and budgets) decide; `failsafe` runs emergency actions only.

    `reputation_factor` is r in the approval table for the node's own actions: its planner is
    trusted like a well-reputed advisor (1.5), so under the moderate preset a danger-5 action
    (an open below 1M sat) runs in autonomous mode while danger 6 (larger opens, closes)
    waits for the operator; the preset's confirm-from still applies.
    """

    mode: Mode = Mode.OPERATOR
    failsafe_budget_sats: int = FAILSAFE_BUDGET_SATS  # sats emergency actions move per UTC day
    failsafe_per_hour: int = FAILSAFE_PER_HOUR
    reputation_factor: float = 1.5

    @classmethod
    def from_options(
        cls, mode: object = Mode.OPERATOR.value, budget: object = FAILSAFE_BUDGET_SATS
    ) -> Governance:
        """From `hive-governance-mode` and `hive-failsafe-budget-per-day`; InvalidParams naming
        the option that is wrong."""
        names = [m.value for m in GOVERNANCE_MODES]
        text = str(mode).strip().lower()
        if text not in names:
            raise InvalidParams(f"hive-governance-mode must be one of {', '.join(names)}")
        try:
            sats = int(str(budget).strip())
        except ValueError:
            sats = -1
        if not 0 <= sats <= 21_000_000 * 100_000_000:
            raise InvalidParams("hive-failsafe-budget-per-day must be a whole number of sats ≥ 0")
        return cls(Mode(text), sats)
