"""Fleet governance arithmetic: the quorums (UPSTREAM.md §2, plan 09)."""

from __future__ import annotations


def promotion_quorum(voters: int) -> int:
    """Vouches needed to promote a neophyte: max(2, ⌈0.51 × voters⌉), or 1 for a lone member."""
    if voters <= 1:
        return 1
    return min(voters, max(2, (51 * voters + 99) // 100))


def ban_quorum(voters: int) -> int:
    """Approvals needed to ban: max(2, ⌈0.67 × voters⌉), or 1 for a lone member."""
    if voters <= 1:
        return 1
    return min(voters, max(2, (67 * voters + 99) // 100))
