"""The Lightning Hive agent runtime: relays, store, node backends, policy, fleet, CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lightning-hive-agent")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
