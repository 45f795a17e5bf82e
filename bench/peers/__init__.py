"""The tools under test. Each `Tool` makes `Link`s: one provider database replicated into one
subscriber database, driven the way that tool's users drive it."""

from __future__ import annotations

from peers.base import Link, Tool
from peers.londiste3 import Londiste3
from peers.native import NativeLR
from peers.ours import LondisteRs


def all_tools() -> list[Tool]:
    """In the order runs alternate: ours, stock londiste3, native logical replication."""
    return [LondisteRs(), Londiste3(), NativeLR()]


__all__ = ["Link", "Londiste3", "LondisteRs", "NativeLR", "Tool", "all_tools"]
