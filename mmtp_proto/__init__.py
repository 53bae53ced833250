"""MMTP/1: the protocol rules, the selectors server, storage and a blocking client.

Nothing in this package imports Textual; the TUI builds on it, not the other way round.
"""

__version__ = "0.1.0"
PROTOCOL = "MMTP/1"
