"""Fleet governance arithmetic: the quorums (UPSTREAM.md §2, plan 09).

Quorums count *active* full members: seen within 24 h and not banned (UPSTREAM: "Active = seen
within 24 h and not banned"), this node always counting itself.  A member unheard of for
weeks no longer holds every decision back.  The subject (the candidate, the ban's target) is
never a voter.

    full members   active (voters)   promotion quorum   ban quorum
    1              1                 1                  1
    3              3                 2                  3
    3              2                 2                  2
    5              5                 3                  4
    5              2                 2                  2
    10             10                6                  7
    10             4                 3                  3
    50             50                26                 34
    50             12                7                  9

A decision (PROMOTION, BAN) names the electorate its sender counted; receivers judge it by that
electorate (so the result does not depend on the order messages arrive in), but only if it is
plausible here: at least half of the voters the receiver itself counts as active
(`plausible_electorate`).  Presence is each member's own observation, so the electorates of two
honest members differ a little, never by half; a member naming only itself and an accomplice
to ban someone in a fleet of ten active members is refused, and the receiver still decides on
the votes it holds itself.
"""

from __future__ import annotations

from collections.abc import Iterable


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


def electorate(full: Iterable[str], active: Iterable[str], me: str, subject: str = "") -> set[str]:
    """Who votes: the full members seen within 24 h (`active`), and this node if it is one;
    never the subject."""
    seen = {*active, me}
    return {m for m in full if m in seen and m != subject}


def plausible_electorate(named: int, voters_here: int) -> bool:
    """A decision's named electorate is at least half of the voters this node counts."""
    return 2 * named >= voters_here
