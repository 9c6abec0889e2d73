"""`hive-agent demo`: the story so far, end to end (story.py runs the acts in order)."""

from agent.demo.story import run_demo

__all__ = ["run_demo"]
