"""The weekly settlement's arithmetic, pure (no store, clock or node): periods (ISO weeks, UTC),
each member's net, its fair share of the fleet's net, the balances, and the payments that settle
them — with a hash every member computes alike from the same inputs.

    net_i      = max(0, fees_i − rebalance_costs_i)                      (upstream issue #42)
    total      = Σ net_i
    weight_i   = 3·cap_i/Σcap + 6·fwd_i/Σfwd + 1·up_i/Σup                (30 / 60 / 10 %; a term
                                                                           whose sum is 0 drops)
    share_i    = ⌊total · weight_i / Σweight⌋, the sats left over handed out one each by the
                 largest remainder (ties: the lower node id first)
    balance_i  = share_i − net_i                     (> 0 receives, < 0 pays; Σ balance_i = 0)
    min_pay    = max(100, total // (10 · members))
    payments   : payers by (balance, node), receivers by (−balance, node), matched greedily;
                 a transfer below min_pay is forgiven (both sides move on), never sent

Every amount is a whole number of sats; fractions are exact (`Fraction`), so every member gets
the same plan to the sat.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from events.canonical import canonical
from events.errors import InvalidParams

PLAN_VERSION = 2
WEIGHTS = (("capacity", 3), ("forwards", 6), ("uptime", 1))  # tenths of the fleet's net
MIN_PAYMENT_FLOOR = 100
_PERIOD = re.compile(r"^([0-9]{4})-W?([0-9]{2})$")  # (ASCII: one spelling per week)


# --- periods ------------------------------------------------------------------------------


def period_of(ts: int) -> str:
    """The ISO week (UTC) holding unix time `ts`, as `YYYY-WW` (the ISO year: 2027-01-01 is in
    2026-53)."""
    year, week, _ = dt.datetime.fromtimestamp(ts, dt.UTC).isocalendar()
    return f"{year:04d}-{week:02d}"


def parse_period(text: str) -> tuple[int, int]:
    """(ISO year, week) of `YYYY-WW` (or `YYYY-Www`); InvalidParams if no such week exists."""
    m = _PERIOD.match(text.strip())
    if m is None:
        raise InvalidParams(f"a settlement period is an ISO week like 2026-49, not {text!r}")
    year, week = int(m.group(1)), int(m.group(2))
    try:
        dt.date.fromisocalendar(year, week, 1)
    except ValueError:
        raise InvalidParams(f"{year} has no ISO week {week}") from None
    return year, week


def period_bounds(period: str) -> tuple[int, int]:
    """[start, end) of the period in unix seconds: Monday 00:00 UTC to the next Monday."""
    year, week = parse_period(period)
    monday = dt.datetime.combine(dt.date.fromisocalendar(year, week, 1), dt.time(), dt.UTC)
    start = int(monday.timestamp())
    return start, start + 7 * 86_400


def previous_period(period: str) -> str:
    """The ISO week before `period` (2027-01 → 2026-53)."""
    return period_of(period_bounds(period)[0] - 1)


def next_period(period: str) -> str:
    return period_of(period_bounds(period)[1])


# --- inputs and the plan --------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class MemberInput:
    """One member's figures for one period, as it reported them (signed, a fact)."""

    node: str
    fees_sat: int  # routing fees earned in the period
    rebalance_costs_sat: int  # what its rebalances cost in the period
    capacity_sat: int  # its channels' capacity at the period's end
    forwards_msat: int  # volume it forwarded (settled) in the period
    uptime_pct: int  # 0–100

    def __post_init__(self) -> None:
        for name in ("fees_sat", "rebalance_costs_sat", "capacity_sat", "forwards_msat"):
            if getattr(self, name) < 0:
                raise InvalidParams(f"{name} of {self.node[:12]}… is negative")
        if not 0 <= self.uptime_pct <= 100:
            raise InvalidParams(f"uptime of {self.node[:12]}… is not 0–100 %")

    @property
    def net_sat(self) -> int:
        return max(0, self.fees_sat - self.rebalance_costs_sat)

    def metric(self, name: str) -> int:
        return {
            "capacity": self.capacity_sat, "forwards": self.forwards_msat,
            "uptime": self.uptime_pct,
        }[name]  # fmt: skip


@dataclass(frozen=True)
class Transfer:
    payer: str
    receiver: str
    amount_sat: int


@dataclass(frozen=True)
class Plan:
    period: str
    members: tuple[MemberInput, ...]  # sorted by node id
    total_sat: int
    shares: dict[str, int]
    balances: dict[str, int]  # share − net: > 0 receives, < 0 pays
    min_payment_sat: int
    payments: tuple[Transfer, ...]
    forgiven_sat: int  # owed but below the minimum payment
    data_hash: str
    plan_hash: str

    @property
    def empty(self) -> bool:
        """A period with no net fees: nothing to settle, skipped."""
        return self.total_sat == 0

    def owed_by(self, node: str) -> list[Transfer]:
        return [p for p in self.payments if p.payer == node]

    def owed_to(self, node: str) -> list[Transfer]:
        return [p for p in self.payments if p.receiver == node]

    def explain(self) -> dict[str, Any]:
        """Every input and every step of the arithmetic (what `hive-settlement` prints)."""
        sums = {name: sum(m.metric(name) for m in self.members) for name, _ in WEIGHTS}
        rows = []
        for m in self.members:
            rows.append({
                "node": m.node, "fees_sat": m.fees_sat,
                "rebalance_costs_sat": m.rebalance_costs_sat, "net_sat": m.net_sat,
                "capacity_sat": m.capacity_sat, "forwards_msat": m.forwards_msat,
                "uptime_pct": m.uptime_pct,
                "weight": str(_weight(m, sums)), "share_sat": self.shares[m.node],
                "balance_sat": self.balances[m.node],
            })  # fmt: skip
        return {
            "period": self.period,
            "formula": (
                "net = max(0, fees − rebalance costs); weight = 3·capacity/Σ + 6·forwards/Σ + "
                "1·uptime/Σ; share = ⌊total·weight/Σweight⌋ + largest remainder; "
                "balance = share − net"
            ),
            "totals": {"net_sat": self.total_sat, **{f"{k}_sum": v for k, v in sums.items()}},
            "members": rows,
            "min_payment_sat": self.min_payment_sat,
            "payments": [
                {"payer": p.payer, "receiver": p.receiver, "amount_sat": p.amount_sat}
                for p in self.payments
            ],
            "forgiven_sat": self.forgiven_sat,
            "data_hash": self.data_hash,
            "plan_hash": self.plan_hash,
        }


def _weight(m: MemberInput, sums: dict[str, int]) -> Fraction:
    return sum(
        (Fraction(tenths * m.metric(name), sums[name]) for name, tenths in WEIGHTS if sums[name]),
        Fraction(0),
    )


def split(total: int, weights: dict[str, Fraction]) -> dict[str, int]:
    """`total` sats in proportion to `weights`, exactly (largest remainder; ties by node id).
    With every weight 0 it is split evenly by the same rule."""
    nodes = sorted(weights)
    if not nodes:
        return {}
    whole = sum(weights.values(), Fraction(0))
    if whole == 0:
        weights, whole = {n: Fraction(1) for n in nodes}, Fraction(len(nodes))
    exact = {n: total * weights[n] / whole for n in nodes}
    shares = {n: int(exact[n]) for n in nodes}  # floor: every figure is ≥ 0
    left = total - sum(shares.values())
    for n in sorted(nodes, key=lambda n: (-(exact[n] - shares[n]), n))[:left]:
        shares[n] += 1
    return shares


def match(balances: dict[str, int], min_payment: int) -> tuple[list[Transfer], int]:
    """Payers (balance < 0) by (balance, node) and receivers by (−balance, node), greedily; a
    transfer under `min_payment` is forgiven.  Returns the transfers and the sats forgiven."""
    payers = [(n, -b) for n, b in sorted(balances.items(), key=lambda kv: (kv[1], kv[0])) if b < 0]
    receivers = [
        (n, b) for n, b in sorted(balances.items(), key=lambda kv: (-kv[1], kv[0])) if b > 0
    ]
    owe = [b for _, b in payers]
    due = [b for _, b in receivers]
    out: list[Transfer] = []
    forgiven = 0
    i = j = 0
    while i < len(payers) and j < len(receivers):
        amount = min(owe[i], due[j])
        if amount >= min_payment:
            out.append(Transfer(payers[i][0], receivers[j][0], amount))
        else:
            forgiven += amount
        owe[i] -= amount
        due[j] -= amount
        if owe[i] == 0:
            i += 1
        if due[j] == 0:
            j += 1
    return out, forgiven


def data_hash(period: str, members: Sequence[MemberInput]) -> str:
    """sha256 over `period|node:fees:costs:capacity:forwards:uptime|…`, members by node id."""
    parts = [period] + [
        f"{m.node}:{m.fees_sat}:{m.rebalance_costs_sat}:{m.capacity_sat}:{m.forwards_msat}:"
        f"{m.uptime_pct}"
        for m in sorted(members)
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def compute_plan(period: str, inputs: Sequence[MemberInput]) -> Plan:
    """The settlement plan of `period` from every member's inputs (any order; one per node)."""
    parse_period(period)
    members = tuple(sorted(inputs))
    nodes = [m.node for m in members]
    if len(set(nodes)) != len(nodes):
        raise InvalidParams("a member appears twice in the settlement inputs")
    total = sum(m.net_sat for m in members)
    sums = {name: sum(m.metric(name) for m in members) for name, _ in WEIGHTS}
    shares = split(total, {m.node: _weight(m, sums) for m in members})
    balances = {m.node: shares[m.node] - m.net_sat for m in members}
    min_payment = max(MIN_PAYMENT_FLOOR, total // (10 * len(members))) if members else 0
    payments, forgiven = match(balances, min_payment)
    dhash = data_hash(period, members)
    body = {
        "v": PLAN_VERSION, "period": period, "data_hash": dhash, "min_payment_sats": min_payment,
        "payments": [[p.payer, p.receiver, p.amount_sat] for p in payments],
    }  # fmt: skip
    return Plan(
        period=period, members=members, total_sat=total, shares=shares, balances=balances,
        min_payment_sat=min_payment, payments=tuple(payments), forgiven_sat=forgiven,
        data_hash=dhash, plan_hash=hashlib.sha256(canonical(body)).hexdigest(),
    )  # fmt: skip
