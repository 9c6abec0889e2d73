"""The `hive-agent` parser: global options, then each face's subcommands, each leaf bound to
its own function with `set_defaults(func=…)` (a `Handler`, see agent/cli/common.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from agent import __version__
from agent.cli import (
    advisory,
    agent_cmds,
    completion,
    deals,
    escrow,
    market,
    reputation,
    setup_cmds,
)
from agent.cli.apps import standalone_app
from agent.cli.common import AppCommand, Handler
from agent.dashboard import command as dashboard
from agent.errors import UsageError
from agent.logs import LEVELS


class _Parser(argparse.ArgumentParser):
    """argparse that raises a typed usage error (printed as JSON under --json) instead of
    printing its own message and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def bind(command: AppCommand) -> Handler:
    """A command that builds its agent, given the standalone agent's factory."""
    return lambda args, settings, emit: command(args, settings, emit, standalone_app)


def relay_option() -> argparse.ArgumentParser:
    """`--relay URL` (repeatable), the parent of every subcommand that talks to relays."""
    relay_opt = argparse.ArgumentParser(add_help=False)
    relay_opt.add_argument(
        "--relay",
        action="append",
        metavar="URL",
        help="use this relay (repeatable) instead of relays.json",
    )
    return relay_opt


def global_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    """--json, --home and --log-level: on the top parser, and again on every subcommand (with
    `default=SUPPRESS`, so a value given before the subcommand is kept) — they go anywhere."""
    parser.add_argument(
        "--json", action="store_true", default=default or False, help="machine-readable output"
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=default,
        help="agent directory (default ~/.hive-agent, env HIVE_HOME)",
    )
    parser.add_argument(
        "--log-level",
        choices=LEVELS,
        default=default,
        help="log to stderr from this level (env HIVE_LOG; daemons default to info)",
    )


def everywhere(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser` with the global options added to every subcommand, at every depth."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                global_options(child, argparse.SUPPRESS)
                everywhere(child)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hive-agent",
        description="Lightning Hive agent: Lightning nodes, advisors and fleets over Nostr.",
    )
    parser.add_argument("--version", action="version", version=f"hive-agent {__version__}")
    global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    relay_opt = relay_option()
    setup_cmds.register(sub)
    agent_cmds.register(sub, relay_opt)
    market.register(sub, relay_opt, bind)
    deals.register(sub, relay_opt, bind)
    reputation.register(sub, relay_opt, bind)
    advisory.register(sub, relay_opt, bind)
    escrow.register(sub, relay_opt, bind)
    dashboard.register(sub, relay_opt)
    completion.register(sub)
    agent_cmds.register_demo(sub)
    return everywhere(parser)  # last: every subcommand registered above takes --json etc.
