"""`hive-agent`, the command line: `entry` is the console script, `main` runs one command."""

from agent.cli.main import entry, main

__all__ = ["entry", "main"]
