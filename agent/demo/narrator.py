"""The demo's voice: act titles, one line per step, pauses unless --fast, silence with --json."""

from __future__ import annotations

from collections.abc import Callable

import anyio

Say = Callable[[str], None]
"""What an act is given to print one line of the story."""


class Narrator:
    def __init__(self, quiet: bool, fast: bool) -> None:
        self.quiet, self.fast = quiet, fast

    async def act(self, title: str) -> None:
        if not self.quiet:
            print(f"\n== {title}", flush=True)
        if not self.fast:
            await anyio.sleep(0.5)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"   {text}", flush=True)

    def finish(self) -> None:
        self.say("done.")
        if not self.quiet:
            print(flush=True)
