"""Relay connections kept a little while after a batch (`delivery`), so a steady stream of
mail to one domain does not pay TCP + TLS + DOMAIN_AUTH for every batch. Shared by the
delivery worker threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

from .relay_link import RelayLink

# Seconds a relay connection is kept open after a batch for the next one (well under a
# server's idle timeout, 300 s by default).
IDLE_REUSE = 30.0


class IdleLinks:
    def __init__(self) -> None:
        self._idle: dict[Hashable, list[tuple[RelayLink, float]]] = {}
        self._lock = threading.Lock()
        self.closing = False

    def take(self, key: Hashable) -> RelayLink | None:
        with self._lock:
            links = self._idle.get(key, [])
            while links:
                link, since = links.pop()
                if not link.closed and time.monotonic() - since < IDLE_REUSE:
                    return link
                link.close()
        return None

    def put(self, key: Hashable, link: RelayLink) -> None:
        if link.closed or self.closing:
            link.close()
            return
        with self._lock:
            self._idle.setdefault(key, []).append((link, time.monotonic()))

    def close_stale(self, everything: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            for key, links in list(self._idle.items()):
                keep = []
                for link, since in links:
                    if everything or link.closed or now - since >= IDLE_REUSE:
                        link.close()
                    else:
                        keep.append((link, since))
                if keep:
                    self._idle[key] = keep
                else:
                    del self._idle[key]
