"""MMTP/1: the protocol rules, the selectors server, storage and a blocking client.

Nothing in this package imports Textual; the TUI builds on it, not the other way round.
"""

import warnings

# PGPy 0.6.0 warns on import and on many calls: cryptography moving old ciphers, and its own
# unfinished checks (revocation, self-signatures), which `pgp.py` does itself. People running
# mmtp-server or a script should not see them; the filter touches pgpy's modules only.
warnings.filterwarnings("ignore", module="pgpy")

__version__ = "0.1.0"
PROTOCOL = "MMTP/1"
