"""The one owner of group commit: which answers were promised on which staged writes.

Writes are staged in the store's open transaction; an answer that promises one of them is
recorded here with `promise`. `commit` makes the writes durable and returns the promises a
failure took back; `lost` returns the promises a rollback (a storage error in a later
request) already took back. Whoever holds the answers replaces those with an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from .storage import Storage, StoreError

log = logging.getLogger("mmtp.store")


class Withdrawable(Protocol):
    """An answer held for a commit, which a failed commit replaces with a storage error."""

    def withdraw(self) -> None: ...


T = TypeVar("T")


class GroupCommit(Generic[T]):
    def __init__(self, store: Storage) -> None:
        self.store = store
        self._promises: list[T] = []
        self._settles: list[tuple[T, Callable[[], None]]] = []
        # The store's rollback count when the current promises were made: any rollback since
        # threw their writes away.
        self._epoch = store.rollbacks

    @property
    def pending(self) -> bool:
        """Are there staged writes, not committed yet?"""
        return self.store.pending

    def promise(self, token: T, settle: Callable[[], None] | None = None) -> None:
        """Record that `token` (an answer) may leave only once the staged writes are durable.
        `settle`, if given, is called by `commit` once the write's outcome is known (a
        pipelined write), before any answer leaves; it may change the answer."""
        if not self._promises:
            self._epoch = self.store.rollbacks
            self._settles.clear()
        self._promises.append(token)
        if settle is not None:
            self._settles.append((token, settle))

    def lost(self) -> list[T]:
        """The promises whose writes a rollback threw away since they were made."""
        if self.store.rollbacks == self._epoch:
            return []
        self._epoch = self.store.rollbacks
        lost, self._promises = self._promises, []
        self._settles.clear()
        return lost

    def commit(self) -> list[T]:
        """Commit the staged writes, then settle the pipelined ones in the order they were
        made, and commit what settling wrote (a stamp given back, a write made again after
        waiting for a mailbox); return the promises that must be withdrawn.

        Settling after the commit lets the COMMIT bring every pipelined result back in the
        same round trip; a refused write stored nothing, so committing first is safe."""
        settles, self._settles = self._settles, []
        try:
            self.store.commit()
        except StoreError as exc:
            log.error("commit failed, withdrawing this turn's acknowledgements: %s", exc)
            self.store.rollback()
            return self._done(self.lost())
        # Durable now. What settling writes (a write made again, a stamp given back) may
        # still be lost: in doubt are the answers not settled yet, and those whose settling
        # sent a statement (a write, or a read of what is staged) since the last moment
        # nothing was staged. The others rest on what is committed, whatever their order:
        # the COMMIT's own results, and reads made outside a transaction.
        in_doubt: list[T] = []
        settled = 0
        try:
            for token, settle in settles:
                if not self.store.pending:
                    in_doubt.clear()
                sent = self.store.statements
                settle()
                settled += 1
                if self.store.statements != sent:
                    in_doubt.append(token)
            self.store.commit()
        except StoreError as exc:
            log.error("settling failed, withdrawing the answers it could change: %s", exc)
            self.store.rollback()
            self._epoch = self.store.rollbacks
            return self._done(in_doubt + [token for token, _ in settles[settled:]])
        return self._done(self.lost())

    def _done(self, lost: list[T]) -> list[T]:
        # Whatever was not withdrawn is on disk now.
        self._promises.clear()
        return lost

    def abort(self) -> list[T]:
        """Throw the staged writes away (after a storage error); return the broken promises."""
        self.store.rollback()
        return self.lost()
