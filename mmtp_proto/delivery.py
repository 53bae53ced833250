"""The delivery side of the outbound queue (SPEC §8.5): takes queued packets to their
domains' servers, and reports back to senders (SPEC §10).

It runs in a process of its own (`delivery_process`), never in the server's: the server's
loop only queues and kicks. Here a manager (the process's main thread) claims due jobs from
the queue with a lease (`store_queue.claim_jobs`), hands them to a few worker threads doing
the network, one batch per (sending domain, recipient domain) at a time, and writes their
outcomes and reports. Why, and what that costs, is in docs/federation.md ("Where delivery
runs"). Any number of such processes may share a queue: a lease keeps a job to one of them,
and an outcome is written only while its claim still stands.

One batch: resolve the domain, connect to its targets in order, verify TLS, DOMAIN_AUTH with
the domain key, then SEND every job pipelined on that one connection. Each answer is judged by
`relay_policy`; a job the remote closed the connection behind (after FRAME_TOO_LARGE) goes out
again on a new connection in the same attempt.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from . import dsn, errors, relay_policy
from .actions import DomainAuthRequest, SendRequest
from .address import domain_of
from .config import ServerConfig
from .errors import LocalError, MMTPError
from .federation import Federation
from .idle_links import IdleLinks
from .relay_link import RelayLink
from .relay_policy import Verdict
from .storage import StoreError
from .store_queue import DONE, FAILED, QueuedJob

log = logging.getLogger("mmtp.relay")

BATCH = 100
# Jobs claimed at most per look at the queue.
CLAIM = 500
IDLE_POLL = 1.0
# Least time between looks while all connections are busy (a batch back starts one).
SATURATED_LOOK = 0.05


@dataclass
class Result:
    job: QueuedJob
    verdict: Verdict
    code: str | None
    message: str
    remote: str | None
    at: int


class Delivery:
    def __init__(
        self,
        config: ServerConfig,
        federation: Federation,
        open_store: Callable[[], Any],
        *,
        owner: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.federation = federation
        self.clock = clock
        # Who claims: unique to this process (a host, a pid and a random part).
        self.owner = owner
        self.lease = max(1, int(config.relay_lease_seconds))
        self._open_store = open_store
        self._stop = threading.Event()
        self._kick = threading.Event()
        # A batch came back (a connection is free); the last look found all of them busy.
        self._freed = threading.Event()
        self._saturated = False
        self._results: queue.Queue[list[Result]] = queue.Queue()
        # Claimed jobs in a worker's hands, by id, and batches under way per key.
        self._claimed: dict[int, tuple[str, str]] = {}
        self._busy: dict[tuple[str, str], int] = {}
        self._renewed = 0.0
        self._workers = ThreadPoolExecutor(
            max(2, config.relay_concurrency * 2), thread_name_prefix="mmtp-deliver"
        )
        self._links = IdleLinks()

    def kick(self) -> None:
        """New mail was queued (and committed): look now."""
        self._kick.set()

    def request_stop(self) -> None:
        """Finish soon; safe from a signal handler or another thread."""
        self._stop.set()
        self._links.closing = True
        self._kick.set()
        self._freed.set()

    def run(self) -> None:
        """Claim, deliver and record until `request_stop`, in the calling thread."""
        store = self._open_store()
        try:
            while not self._stop.is_set():
                # Cleared before the work: a kick that comes meanwhile wakes the next wait.
                self._kick.clear()
                self._freed.clear()
                due = False
                try:
                    self._apply_results(store)
                    self._renew(store)
                    due = self._dispatch(store)
                    self._links.close_stale()
                except StoreError as exc:
                    store.rollback()
                    log.error("relay: queue storage error: %s", exc)
                if self._saturated:
                    # A look reads the whole queue; the server kicks on every commit.
                    self._freed.wait(SATURATED_LOOK)
                self._kick.wait(self._wait_time(store, due))
        except Exception:
            log.exception("relay: the delivery manager failed")
        finally:
            self._workers.shutdown(wait=False, cancel_futures=True)
            self._links.closing = True
            self._links.close_stale(everything=True)
            try:
                self._apply_results(store)
                # What is still out is given back, not held until the lease ends: if a worker
                # was sending it, the remote's messageId dedupe makes the next try harmless.
                if self._claimed:
                    store.release_jobs(self.owner, list(self._claimed))
                store.commit()
            except StoreError:
                store.rollback()
            store.close()

    def _wait_time(self, store: Any, due_now: bool) -> float:
        if due_now:
            # Due jobs wait behind batches in flight (a worker kicks when one is back).
            return IDLE_POLL if self._claimed else 0.05
        due = store.next_due()
        return IDLE_POLL if due is None else max(0.05, min(IDLE_POLL, due - self.clock()))

    def _renew(self, store: Any) -> None:
        """Keep the claims of batches under way while they take long (a slow remote)."""
        now = self.clock()
        if not self._claimed or now - self._renewed < self.lease / 3:
            return
        self._renewed = now
        store.extend_leases(self.owner, list(self._claimed), int(now) + self.lease)
        store.commit()

    def _dispatch(self, store: Any) -> bool:
        """Claim and hand out what free connections can take; whether any job was due."""
        now = int(self.clock())
        # Claim only what connections are free for (a read first, no lock): a claim takes
        # the database's write lock, which the server's loop needs for every turn.
        wanted, sizes = {}, {}
        due = store.due_domains(now)
        for domain, count in due.items():
            sizes[domain] = size = self._batch_size(count)
            busy = max((n for (_, d), n in self._busy.items() if d == domain), default=0)
            wanted[domain] = min(self.config.relay_concurrency - busy, -(-count // size)) * size
        domains = [d for d, n in wanted.items() if n > 0]
        self._saturated = bool(due) and not domains
        if not domains:
            return bool(due)
        limit = min(CLAIM, sum(wanted[d] for d in domains))
        jobs = store.claim_jobs(self.owner, now, self.lease, limit, domains=domains)
        if not self._claimed:
            self._renewed = self.clock()  # fresh claims: the first renewal is a third away
        batches: dict[tuple[str, str], list[QueuedJob]] = {}
        for job in jobs:
            batches.setdefault((domain_of(job.sender), job.domain), []).append(job)
        spare: list[int] = []
        for key, group in batches.items():
            # As planned: sized from fewer jobs, there would be more batches than connections.
            size = sizes[key[1]]
            for start in range(0, len(group), size):
                chunk = group[start : start + size]
                if self._busy.get(key, 0) >= self.config.relay_concurrency:
                    spare.extend(job.id for job in chunk)
                    continue
                self._claimed.update((job.id, key) for job in chunk)
                self._busy[key] = self._busy.get(key, 0) + 1
                self._workers.submit(self._deliver_safely, key, chunk)
        if spare:
            # All of a domain's connections are busy (several sending domains share them):
            # another process may take these now, or this one when a batch comes back.
            store.release_jobs(self.owner, spare)
            store.commit()
        return True

    def _batch_size(self, due: int) -> int:
        """Due jobs are spread over a domain's connections: the remote works through one
        connection's requests in turn, so one long pipeline would leave the others idle."""
        return min(BATCH, max(1, -(-due // self.config.relay_concurrency)))

    def _apply_results(self, store: Any) -> None:
        # Every batch back so far in one transaction: each commit here takes the write lock
        # the server's loop needs, and makes it drop its caches (another connection wrote).
        batches: list[list[Result]] = []
        with contextlib.suppress(queue.Empty):
            while True:
                batches.append(self._results.get_nowait())
        results = [result for batch in batches for result in batch]
        if not results:
            return
        # Reports wait for their mailbox locks: in one order, two processes never deadlock.
        results.sort(key=lambda result: store.lock_order(result.job.sender))
        try:
            for result in results:
                self._apply(store, result)
            store.commit()
        except StoreError as exc:
            # The jobs stay queued and go out again when their claims end (messageId dedupe).
            store.rollback()
            log.error("relay: could not record %d delivery outcomes: %s", len(results), exc)
        finally:
            for result in results:
                self._claimed.pop(result.job.id, None)
            for batch in filter(None, batches):
                key = (domain_of(batch[0].job.sender), batch[0].job.domain)
                self._busy[key] = max(0, self._busy.get(key, 1) - 1)

    def _apply(self, store: Any, result: Result) -> None:
        job, now = result.job, result.at
        meta = job.packet.get("meta", {})
        owner = self.owner
        if result.verdict is Verdict.DELIVERED:
            log.info("relay: %s -> %s delivered (%s)", job.message_id, job.recipient, result.remote)
            if not store.finish_job(
                job.id, DONE, code=None, error=None, remote=result.remote, owner=owner
            ):
                self._claim_lost(job)
            elif dsn.wants_dsn(meta, "delivered"):
                self._report(store, job, "delivered", result, None)
            return
        code = result.code or errors.REMOTE_UNAVAILABLE
        next_at = None
        if result.verdict is Verdict.TEMPORARY:
            next_at = relay_policy.next_attempt_at(
                now,
                job.attempts + 1,
                job.expires_at,
                base=self.config.retry_base,
                cap=self.config.retry_max,
            )
            if next_at is None:
                code, result.message = (
                    errors.POW_EXPIRED,
                    (
                        f"the message could not be delivered before its stamp expired "
                        f"(last problem: {result.code}: {result.message})"
                    ),
                )
        if next_at is None:
            log.warning("relay: %s -> %s failed: %s", job.message_id, job.recipient, code)
            if not store.finish_job(
                job.id, FAILED, code=code, error=result.message, remote=result.remote, owner=owner
            ):
                self._claim_lost(job)
            elif dsn.wants_dsn(meta, "failed"):
                self._report(store, job, "failed", result, code)
            return
        notify = dsn.delay_notice_due(
            job.queued_at,
            now,
            already_sent=job.delay_notified,
            threshold=self.config.delay_notice_seconds,
        )
        log.info(
            "relay: %s -> %s deferred (%s), next try in %ds",
            job.message_id,
            job.recipient,
            code,
            int(next_at - now),
        )
        held = store.retry_job(
            job.id,
            int(next_at),
            code=code,
            error=result.message,
            remote=result.remote,
            delay_notified=job.delay_notified or notify,
            owner=owner,
        )
        if not held:
            self._claim_lost(job)
        elif notify and dsn.wants_dsn(meta, "delayed"):
            self._report(store, job, "delayed", result, code)

    def _report(
        self, store: Any, job: QueuedJob, action: dsn.Action, result: Result, code: str | None
    ) -> None:
        """The report of `action`; `code` None (delivered) means no diagnostic."""
        report = dsn.build_dsn(
            job.packet,
            action=action,
            code=code,
            diagnostic="" if code is None else result.message,
            attempts=job.attempts + 1,
            last_attempt_at=result.at,
            remote=result.remote,
            now=result.at,
            retry_until=job.expires_at,
        )
        report["meta"]["receivedAt"] = result.at
        store.add_report(report, result.at)

    @staticmethod
    def _claim_lost(job: QueuedJob) -> None:
        # The lease ran out and another took the job (or the operator removed it): theirs.
        log.warning(
            "relay: %s -> %s: the claim was lost; outcome not recorded",
            job.message_id,
            job.recipient,
        )

    def _deliver_safely(self, key: tuple[str, str], jobs: list[QueuedJob]) -> None:
        try:
            results = self._deliver(key, jobs)
        except Exception as exc:  # a bug must not lose the claim on these jobs
            log.exception("relay: delivery to %s failed unexpectedly", key[1])
            results = [
                self._result(j, Verdict.TEMPORARY, errors.INTERNAL, str(exc), None) for j in jobs
            ]
        self._results.put(results)
        self._freed.set()
        self._kick.set()

    def _result(
        self, job: QueuedJob, verdict: Verdict, code: str | None, message: str, remote: str | None
    ) -> Result:
        return Result(job, verdict, code, dsn.clean_diagnostic(message), remote, int(self.clock()))

    def _deliver(self, key: tuple[str, str], jobs: list[QueuedJob]) -> list[Result]:
        from_domain, domain = key
        results: list[Result] = []
        pending = list(jobs)
        rounds = 0
        while pending and rounds < 3:
            rounds += 1
            reused = self._links.take(key)
            try:
                link = reused or self._connect(from_domain, domain)
            except MMTPError as exc:
                verdict = relay_policy.classify(exc.code, "domain_auth")
                if exc.code == errors.NO_ROUTE:
                    verdict = Verdict.PERMANENT
                return results + [
                    self._result(j, verdict, exc.code, exc.message, None) for j in pending
                ]
            remote = str(link.target)
            try:
                answers = link.exchange(
                    [(SendRequest.ACTION, SendRequest(j.packet).to_data()) for j in pending]
                )
            except MMTPError as exc:
                link.close()
                if reused is not None:
                    # The remote may have closed an idle connection: a fresh one, same round.
                    rounds -= 1
                    continue
                return results + [
                    self._result(j, Verdict.TEMPORARY, exc.code, exc.message, remote)
                    for j in pending
                ]
            for job, frame in zip(pending, answers, strict=False):
                verdict, code = relay_policy.classify_answer(frame)
                text = str(frame.get("message") or "")
                results.append(self._result(job, verdict, code, text, remote))
            pending = pending[len(answers) :]
            self._links.put(key, link)
        return results + [
            self._result(j, Verdict.TEMPORARY, errors.REMOTE_UNAVAILABLE, "connection lost", None)
            for j in pending
        ]

    def _connect(self, from_domain: str, domain: str) -> RelayLink:
        fed = self.federation

        def domain_auth(link: RelayLink) -> None:
            assert link.greeting is not None
            data = fed.keyring.sign_auth(domain, link.greeting.nonce, from_domain, link.cert_hash)
            request = DomainAuthRequest(data["domain"], data["keyId"], data["signature"])
            link.request(request.ACTION, request.to_data())

        try:
            return fed.open_link(domain, setup=domain_auth)
        except LocalError as exc:
            raise MMTPError(errors.REMOTE_UNAVAILABLE, str(exc)) from None
