"""What each MMTP action answers, given a store and a session (SPEC §5). No sockets.

A `server_connection.ServerConnection` feeds it one frame line at a time. Writes are staged
in the store; an answer marked `durable` is promised to `self.commits` (group_commit) and
leaves only after `commit()`; a failed commit or a rollback withdraws it. The handlers live in
`handlers/`; what they share is in `protocol_base`.

A handler may answer later: it returns a `deferred.Pending` (a worker job or a fetch's future,
and a continuation). `resume` runs the continuation with the result under the same rules as
`handle_line` (errors become answers, reads see committed state, durable answers go through
the same group commit); it may wait again (a fetched key is then checked by a worker).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from . import errors
from .config import ServerConfig
from .deferred import JobResult, Pending
from .errors import MMTPError
from .framing import NO_ID, parse_json, parse_request, peek_id, with_id
from .group_commit import Withdrawable
from .handlers.auth import AuthHandler
from .handlers.keys import KeyHandlers
from .handlers.mailbox import MailboxHandlers
from .handlers.send import SendHandler
from .session import Outcome, Session, storage_failure
from .storage import Storage, StoreError

log = logging.getLogger("mmtp.protocol")

ACTIONS = (
    "SEND",
    "RECEIVE",
    "CHECK",
    "DELETE",
    "REGISTER_KEY",
    "REQUEST_PUBLIC_KEY",
    "AUTH",
    "POLICY",
)
# Only a relaying server (SPEC §8.3) knows these.
RELAY_ACTIONS = ("DOMAIN_KEY", "DOMAIN_AUTH")


class Protocol(SendHandler, MailboxHandlers, KeyHandlers, AuthHandler):
    def __init__(
        self,
        config: ServerConfig,
        store: Storage,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, store, clock=clock)
        self._handlers: dict[str, Callable[[Session, dict[str, Any], int], Outcome | Pending]] = {
            "SEND": self._send,
            "RECEIVE": self._receive,
            "CHECK": self._check,
            "DELETE": self._delete,
            "REGISTER_KEY": self._register_key,
            "REQUEST_PUBLIC_KEY": self._request_public_key,
            "AUTH": self._auth,
            "POLICY": self._policy,
            "DOMAIN_KEY": self._domain_key,
            "DOMAIN_AUTH": self._domain_auth,
        }
        # Called (from any thread) when a fetch a request waits for is done: the loop looks
        # around at once instead of at its next tick.
        self.wake: Callable[[], None] = lambda: None
        # Called after a commit that queued mail for relay: delivery starts now.
        self.on_relay_committed: Callable[[], None] = lambda: None
        self.relay_queued = False
        self._in_round = False

    @property
    def actions(self) -> tuple[str, ...]:
        return ACTIONS + RELAY_ACTIONS if self.federation is not None else ACTIONS

    # ------------------------------------------------------------------ entry points

    def handle_line(self, session: Session, line: bytes) -> Outcome | Pending:
        request_id: Any = NO_ID
        action = "-"

        def run() -> Outcome | Pending:
            nonlocal request_id, action
            value = parse_json(line)
            request_id = peek_id(value)
            request = parse_request(value)
            action = request.action
            handler = self._handlers.get(request.action)
            if request.action in RELAY_ACTIONS and self.federation is None:
                handler = None
            self._read_committed(request.action)
            if handler is None:
                raise MMTPError(
                    errors.UNKNOWN_ACTION,
                    f"unknown action {request.action[:40]!r}; this server knows "
                    + ", ".join(self.actions),
                )
            self.store.refresh()
            if not self._in_round:
                # Whatever another server process committed before this request is seen
                # by it (in a round, the round's start looked already: see `round`).
                self.store.look_again()
            return handler(session, request.data, int(self.clock()))

        outcome = self._guarded(run, lambda: action)
        return self._finish(outcome, action if action in self._handlers else "-", request_id)

    @contextlib.contextmanager
    def round(self) -> Iterator[None]:
        """Answer a round of requests already read from their sockets: what other server
        processes committed is looked at once for all of them (on PostgreSQL, one round
        trip instead of one per request). Any request read after such a commit is
        answered in a later round, so it still sees that commit."""
        self.store.look_again()
        self._in_round = True
        try:
            yield
        finally:
            self._in_round = False

    def resume(self, pending: Pending, result: JobResult) -> Outcome | Pending:
        """Run `pending`'s continuation with what it waited for (a job's result, or a fetch's
        in `deferred.future_result`'s shape): the answer, or more waiting."""
        self._read_committed(pending.action)
        outcome = self._guarded(lambda: pending.then(result), lambda: pending.action)
        return self._finish(outcome, pending.action, pending.request_id)

    def _read_committed(self, action: str) -> None:
        if action != "SEND" and self.commits.pending:
            # What this request reads (a key for AUTH, messages for RECEIVE) must be
            # committed, never a write a failed commit could still take back. SENDs, the
            # hot path, still share one commit.
            self.commit()

    def _guarded(
        self, run: Callable[[], Outcome | Pending], action: Callable[[], str]
    ) -> Outcome | Pending:
        try:
            outcome = run()
        except MMTPError as exc:
            outcome = Outcome(exc.to_response())
        except StoreError as exc:
            self._withdraw(self.commits.abort())
            log.error("storage error during %s: %s", action(), exc)
            outcome = Outcome(storage_failure().to_response())
        except Exception:
            self._withdraw(self.commits.abort())
            log.exception("internal error during %s", action())
            outcome = Outcome(
                MMTPError(
                    errors.INTERNAL, "the server failed on this request; try again later"
                ).to_response()
            )
        # A rollback (here or in an earlier commit step) took back what earlier requests of
        # this turn staged: their answers are withdrawn now. Later requests start a new
        # transaction, and their answers depend on the commit as usual.
        self._withdraw(self.commits.lost())
        return outcome

    @staticmethod
    def _finish(outcome: Outcome | Pending, action: str, request_id: Any) -> Outcome | Pending:
        outcome.action = action
        if isinstance(outcome, Pending):
            # Answered later by `resume`, with this request's id.
            outcome.request_id = request_id
        else:
            with_id(outcome.response, request_id)
        return outcome

    def commit(self) -> None:
        """Make this turn's writes durable; withdraw the answers a failure took back."""
        self._withdraw(self.commits.commit())
        if self.relay_queued:
            self.relay_queued = False
            self.on_relay_committed()

    @staticmethod
    def _withdraw(answers: list[Withdrawable]) -> None:
        for answer in answers:
            answer.withdraw()
