"""Writes that may wait for the next transaction ("rides").

Some bookkeeping need not be committed on its own: the outbox's record that relays now hold
an event (if that record is lost, the event is published again and relays answer
`duplicate:`).  A transaction of its own costs a BEGIN, a COMMIT and the WAL frames of every
page it touches; riding on the next transaction the process opens anyway (the next inbound
batch, the next receipt) costs only the statements.  The owner of a ride flushes it itself if
nothing else writes soon (`Store.flush_rides`).

A ride runs first in the transaction that carries it, inside a savepoint: one that fails is
dropped (logged) and never spoils its host.  If the host rolls back, its rides wait for the
next transaction.  `done()` is called once the ride is committed or dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.store.db import Tx

log = logging.getLogger("hive.store")


@dataclass(frozen=True)
class Ride:
    write: Callable[[Tx], None]
    done: Callable[[], None]
    key: str = ""  # what it records (the outbox: the event id), for `Rides.keys`


class Rides:
    def __init__(self) -> None:
        self._waiting: list[Ride] = []

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def __contains__(self, key: str) -> bool:
        return any(ride.key == key for ride in self._waiting)

    def keys(self) -> set[str]:
        """The keys of the rides still waiting."""
        return {ride.key for ride in self._waiting if ride.key}

    def add(self, ride: Ride) -> None:
        self._waiting.append(ride)

    def take(self) -> list[Ride]:
        taken, self._waiting = self._waiting, []
        return taken

    def put_back(self, rides: list[Ride]) -> None:
        """Their host rolled back: they ride on the next transaction."""
        self._waiting[:0] = rides

    @staticmethod
    def carry(tx: Tx, rides: list[Ride]) -> None:
        """Write `rides` in `tx`; one that fails is dropped (and logged).  Each one's `done()`
        is called once `tx` commits (registered outside its savepoint: a dropped ride is
        done too)."""
        for ride in rides:
            try:
                with tx.savepoint():
                    ride.write(tx)
            except Exception:
                log.exception("a deferred write failed and was dropped")
            tx.on_commit(ride.done)
