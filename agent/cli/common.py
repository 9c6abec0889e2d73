"""What the command modules share: how a command prints its answer, and the shapes of the
functions `set_defaults(func=…)` binds to each subcommand."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from agent.cli.apps import AppFactory
from agent.cli.bech32 import enrich
from agent.settings import Settings
from agent.textsafe import for_terminal

Emit = Callable[[dict[str, Any], str], None]
"""Print a command's answer: the dict under --json, else the text."""

Handler = Callable[[argparse.Namespace, Settings, Emit], int]
"""What `main` calls for a subcommand; returns the exit status."""

AppCommand = Callable[[argparse.Namespace, Settings, Emit, AppFactory], int]
"""A subcommand that builds an agent with the factory it is given."""

Bind = Callable[[AppCommand], Handler]
"""Turns an AppCommand into a Handler (the CLI binds the standalone agent's factory)."""


def emitter(as_json: bool) -> Emit:
    def emit(data: dict[str, Any], text: str) -> None:
        # text views show strangers' words (notes, titles, relay messages): never raw escapes;
        # JSON keeps hex and gains npub / nevent / naddr beside it
        print(
            json.dumps(enrich(data), sort_keys=True) if as_json else for_terminal(text), flush=True
        )

    return emit
