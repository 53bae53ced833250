"""The numbers of the protocol, each defined once (SPEC §1, §4, §5).

Server, client, TUI and tests import them from here, so a limit the server enforces and the
value a client falls back to cannot drift apart. Frame limits live with the frame decoder in
`framing.py`; limits of a packet's fields with the packet rules in `packet.py`.
"""

from __future__ import annotations

# HashCash bits a server asks for by default (SPEC §4), and what a client assumes when a
# greeting does not say: the figure the stamp must meet unless the server names another.
DEFAULT_DIFFICULTY = 20
# The most bits a client mints for one stamp: 256 times the default's work, a minute or two
# on one core. A server (or a remote's POLICY answer) asking for more is refused with a
# message instead of keeping the user's machine busy for hours (each bit doubles the work).
MAX_MINT_BITS = 28
# How long a stamp stays valid by default (SPEC §4: 2 days).
DEFAULT_STAMP_VALIDITY_SECONDS = 2 * 24 * 3600
# SPEC §3, §5: a packet's timestamp may be this much past its stamp's life (clock skew); a
# deleted message's tombstone lasts until timestamp + stampValiditySeconds + this.
TIMESTAMP_SLACK_SECONDS = 3600

# RECEIVE (SPEC §5): `limit` defaults to 100 and may be at most 1000.
DEFAULT_RECEIVE_LIMIT = 100
MAX_RECEIVE_LIMIT = 1000
# One RECEIVE answer stops near this size (`more` says the rest waits): a mailbox filled
# with large messages must not make one answer gigabytes long.
RECEIVE_BYTE_BUDGET = 8 * 1024 * 1024

# DELETE takes at most this many ids in one request.
MAX_DELETE_IDS = 1000

# REGISTER_KEY: an armored public key longer than this is refused before OpenPGP parses it.
MAX_ARMOR_CHARS = 64 * 1024
# REGISTER_KEY's own, lower cap (SPEC §5 resource limits): real keys are 1-8 KiB of armor
# (RSA-4096 with an encryption subkey: about 3.5 KiB), and every registration is stored.
MAX_KEY_ARMOR_CHARS = 16 * 1024

# What a client accepts as one answer frame: a RECEIVE answer can hold MAX_RECEIVE_LIMIT
# stored messages, so far more than a request may carry.
MAX_ANSWER_BYTES = 256 * 1024 * 1024
