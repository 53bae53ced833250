"""mmtp-tui: the Textual mail client of MMTP.

The logic modules (config, mailstore, contacts, sync, local_server, keymap, session) never
import Textual; screens and widgets only show and ask.
"""

__version__ = "0.1.0"
