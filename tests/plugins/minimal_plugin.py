#!/usr/bin/env python3
"""The smallest pyln-client plugin: proves the plugin import and dispatch path work here."""

from pyln.client import Plugin

plugin = Plugin()


@plugin.method("env-check")
def env_check(plugin: Plugin, name: str = "world") -> dict:
    """Answer with a greeting and the node id from getinfo over the RPC socket."""
    return {"hello": name, "id": plugin.rpc.getinfo()["id"]}


@plugin.init()
def init(options: dict, configuration: dict, plugin: Plugin, **kwargs: object) -> None:
    plugin.log("minimal plugin ready")


plugin.run()
