"""Versioned schema migrations, in slices.  Append only: a released migration is never edited.

Each part of the agent keeps its own schema history, a *slice* (the pattern Nutshell's
`dbversions` table follows): `schema_versions (slice, version)` records how far each has been
applied, each migration in its own transaction, so a component adds its tables without
renumbering anyone else's, and all of them live in the one SQLite file of the agent (a
settlement commits fleet and escrow rows in one transaction).  `base` is the history from
before slices (the transport, marketplace, advisory, escrow and fleet-membership tables,
versions 1-11); its version is also kept in `PRAGMA user_version`, which older releases read.

To add tables: append a migration to the slice of the part that owns them (a new part gets
its own entry in SLICES), never to another part's slice.
"""

from __future__ import annotations

from agent.store.migrations_advisory import ADVISORY
from agent.store.migrations_base import MIGRATIONS
from agent.store.migrations_contribution import CONTRIBUTION
from agent.store.migrations_escrow import ESCROW
from agent.store.migrations_fleet import FLEET
from agent.store.migrations_settlement import SETTLEMENT

__all__ = ["MIGRATIONS", "SLICES"]

# the slices, in the order they are applied (later slices may refer to earlier ones' tables)
SLICES: dict[str, list[str]] = {
    "base": MIGRATIONS,
    "market": [],
    "advisory": ADVISORY,
    "escrow": ESCROW,
    "fleet": FLEET,
    "contribution": CONTRIBUTION,
    "settlement": SETTLEMENT,
}
