"""The delivery side of the outbound queue (SPEC §8.5): takes queued packets to their
domains' servers, and reports back to senders (SPEC §10).

It runs beside the server's loop, not in it: a manager thread with its own connection to the
database (never the loop's transaction) and a few worker threads doing the network, one batch
per (sending domain, recipient domain) at a time. Why, and what that costs, is in
docs/federation.md ("Where delivery runs"). The manager alone reads and writes the queue; a
worker only talks to one remote and hands its outcomes back.

One batch: resolve the domain, connect to its targets in order, verify TLS, DOMAIN_AUTH with
the domain key, then SEND every job pipelined on that one connection. Each answer is judged by
`relay_policy`; a job the remote closed the connection behind (after FRAME_TOO_LARGE) goes out
again on a new connection in the same attempt.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import dsn, errors, relay_policy
from .actions import DomainAuthRequest, SendRequest
from .address import domain_of
from .config import ServerConfig
from .errors import LocalError, MMTPError
from .federation import Federation
from .relay_link import RelayLink
from .relay_policy import Verdict
from .store import Store, StoreError
from .store_queue import DONE, FAILED, QueuedJob

log = logging.getLogger("mmtp.relay")

BATCH = 100
IDLE_POLL = 1.0
# Seconds a relay connection is kept open after a batch for the next one (well under a
# server's idle timeout, 300 s by default).
IDLE_REUSE = 30.0


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
        db_path: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.federation = federation
        self.clock = clock
        self._db_path = db_path
        self._store: Store | None = None
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._results: queue.Queue[list[Result]] = queue.Queue()
        self._claimed: set[int] = set()
        self._busy: dict[tuple[str, str], int] = {}
        self._workers = ThreadPoolExecutor(
            max(2, config.relay_concurrency * 2), thread_name_prefix="mmtp-deliver"
        )
        self._thread: threading.Thread | None = None
        self._idle: dict[tuple[str, str], list[tuple[RelayLink, float]]] = {}
        self._idle_lock = threading.Lock()

    def start(self) -> None:
        self._store = Store(self._db_path, fsync=self.config.fsync)
        self._thread = threading.Thread(target=self._run, name="mmtp-delivery", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """New mail was queued (and committed): look now."""
        self._kick.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._close_idle(everything=True)

    # ------------------------------------------------------------------ the manager

    def _run(self) -> None:
        store = self._store
        assert store is not None
        try:
            while not self._stop.is_set():
                # Cleared before the work, not after the wait: a kick that comes while the
                # manager works must wake the next wait, not be lost.
                self._kick.clear()
                try:
                    self._apply_results(store)
                    self._dispatch(store)
                    self._close_idle()
                except StoreError as exc:
                    store.rollback()
                    log.error("relay: queue storage error: %s", exc)
                self._kick.wait(self._wait_time(store))
        except Exception:
            log.exception("relay: the delivery manager failed")
        finally:
            try:
                self._apply_results(store)
            except StoreError:
                store.rollback()
            store.close()

    def _wait_time(self, store: Store) -> float:
        due = store.next_due()
        if due is None:
            return IDLE_POLL
        wait = due - self.clock()
        if wait <= 0 and self._claimed:
            # Due jobs are (or wait behind) batches in flight; a worker kicks when it is done.
            return IDLE_POLL
        return max(0.05, min(IDLE_POLL, wait))

    def _dispatch(self, store: Store) -> None:
        now = int(self.clock())
        jobs = [j for j in store.due_jobs(now) if j.id not in self._claimed]
        store.commit()  # due_jobs may have marked a damaged row failed
        batches: dict[tuple[str, str], list[QueuedJob]] = {}
        for job in jobs:
            batches.setdefault((domain_of(job.sender), job.domain), []).append(job)
        for key, group in batches.items():
            for start in range(0, len(group), BATCH):
                if self._busy.get(key, 0) >= self.config.relay_concurrency:
                    break
                chunk = group[start : start + BATCH]
                self._claimed.update(job.id for job in chunk)
                self._busy[key] = self._busy.get(key, 0) + 1
                self._workers.submit(self._deliver_safely, key, chunk)

    def _apply_results(self, store: Store) -> None:
        while True:
            try:
                results = self._results.get_nowait()
            except queue.Empty:
                return
            try:
                for result in results:
                    self._apply(store, result)
                store.commit()
            except StoreError as exc:
                # The jobs stay queued as they were and go out again (the remote's
                # messageId dedupe makes that harmless).
                store.rollback()
                log.error("relay: could not record %d delivery outcomes: %s", len(results), exc)
            finally:
                for result in results:
                    self._claimed.discard(result.job.id)
                if results:
                    key = (domain_of(results[0].job.sender), results[0].job.domain)
                    self._busy[key] = max(0, self._busy.get(key, 1) - 1)

    def _apply(self, store: Store, result: Result) -> None:
        job, now = result.job, result.at
        meta = job.packet.get("meta", {})
        if result.verdict is Verdict.DELIVERED:
            log.info("relay: %s -> %s delivered (%s)", job.message_id, job.recipient, result.remote)
            store.finish_job(job.id, DONE, code=None, error=None, remote=result.remote)
            if dsn.wants_dsn(meta, "delivered"):
                self._report(store, job, "delivered", None, "", result)
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
            store.finish_job(job.id, FAILED, code=code, error=result.message, remote=result.remote)
            if dsn.wants_dsn(meta, "failed"):
                self._report(store, job, "failed", code, result.message, result)
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
        store.retry_job(
            job.id,
            int(next_at),
            code=code,
            error=result.message,
            remote=result.remote,
            delay_notified=job.delay_notified or notify,
        )
        if notify and dsn.wants_dsn(meta, "delayed"):
            self._report(store, job, "delayed", code, result.message, result)

    def _report(
        self,
        store: Store,
        job: QueuedJob,
        action: dsn.Action,
        code: str | None,
        message: str,
        result: Result,
    ) -> None:
        report = dsn.build_dsn(
            job.packet,
            action=action,
            code=code,
            diagnostic=message,
            attempts=job.attempts + 1,
            last_attempt_at=result.at,
            remote=result.remote,
            now=result.at,
            retry_until=job.expires_at,
        )
        report["meta"]["receivedAt"] = result.at
        store.add_report(report, result.at)

    # ------------------------------------------------------------------ a worker

    def _deliver_safely(self, key: tuple[str, str], jobs: list[QueuedJob]) -> None:
        try:
            results = self._deliver(key, jobs)
        except Exception as exc:  # a bug must not lose the claim on these jobs
            log.exception("relay: delivery to %s failed unexpectedly", key[1])
            results = [
                self._result(j, Verdict.TEMPORARY, errors.INTERNAL, str(exc), None) for j in jobs
            ]
        self._results.put(results)
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
            reused = self._take_idle(key)
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
            self._put_idle(key, link)
        return results + [
            self._result(j, Verdict.TEMPORARY, errors.REMOTE_UNAVAILABLE, "connection lost", None)
            for j in pending
        ]

    # Connections are kept a little while after a batch, so a steady stream of mail to one
    # domain does not pay TCP + TLS + DOMAIN_AUTH for every batch.

    def _take_idle(self, key: tuple[str, str]) -> RelayLink | None:
        with self._idle_lock:
            links = self._idle.get(key, [])
            while links:
                link, since = links.pop()
                if not link.closed and time.monotonic() - since < IDLE_REUSE:
                    return link
                link.close()
        return None

    def _put_idle(self, key: tuple[str, str], link: RelayLink) -> None:
        if link.closed or self._stop.is_set():
            link.close()
            return
        with self._idle_lock:
            self._idle.setdefault(key, []).append((link, time.monotonic()))

    def _close_idle(self, everything: bool = False) -> None:
        now = time.monotonic()
        with self._idle_lock:
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
