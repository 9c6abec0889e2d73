"""How the command line builds its agents (through `agent.app`), from its options."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

from agent import app
from agent.advisory.policy import PolicyConfig
from agent.keys import load_key_file
from agent.node.backend import NodeBackend
from agent.settings import RelaysConfig, Settings

AppFactory = Callable[..., app.Standalone]


def relays_of(args: argparse.Namespace, settings: Settings) -> RelaysConfig:
    if getattr(args, "relay", None):
        return RelaysConfig.from_urls(args.relay)
    return RelaysConfig.load(settings.relays_file)


async def announce(built: app.Standalone, args: argparse.Namespace) -> None:
    """A daemon's relay lists and profile, only if they changed — and never when `--relay`
    overrides relays.json for this run: a one-off list must not replace the user's."""
    if getattr(args, "relay", None):
        logging.getLogger("hive.agent").info(
            "not announcing relay lists: --relay overrides relays.json for this run only"
        )
        return
    await built.announce()


def policy_of(settings: Settings, args: argparse.Namespace) -> PolicyConfig:
    path = Path(args.policy) if getattr(args, "policy", None) else settings.root / "policy.json"
    return PolicyConfig.load(path)


def standalone_app(
    args: argparse.Namespace, settings: Settings, *, funder: bool = False
) -> app.Standalone:
    """A standalone agent; it always takes credentials, receipts and escrow tickets addressed
    to it (tickets only from the mints in its policy.json).  `funder`: it also funds tickets
    (the operator's `escrow fund`; the running node agent on the same home reveals them)."""
    policy = policy_of(settings, args)
    return app.standalone(
        settings,
        load_key_file(settings.key_file),
        relays_of(args, settings),
        policy.mints,
        funder=funder,
    )


def node_app(args: argparse.Namespace, settings: Settings, backend: NodeBackend) -> app.NodeAgent:
    return app.node_agent(
        settings,
        load_key_file(settings.key_file),
        relays_of(args, settings),
        backend,
        policy_of(settings, args),
    )
