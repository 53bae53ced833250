"""A relaying server's federation state (SPEC §8): its domain keys, routes, relay TLS, and the
caches of what it learned from other domains' servers (their domain keys, their users' keys,
their stamp figures).

The fetches here block (DNS, TCP, TLS): they run on `executor`, never on the server's loop. The
loop submits one and gets a `Future`; the waiting connection's answers wait (a
`deferred.Pending` on that future) while every other connection goes on. A user's key fetched
from its domain is kept as fetched until a worker process has judged it (`pgp_jobs.validate_key`,
run by the protocol): no OpenPGP data from another server is parsed on these threads either.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from . import errors
from .actions import DomainKeyAnswer, DomainKeyRequest, Greeting, RequestPublicKeyAnswer
from .address import domain_of
from .config import ServerConfig
from .domain_keys import DomainKeyCache, DomainKeyring, cert_hash
from .errors import MMTPError
from .ratelimit import FailureLimiter
from .relay_link import RelayLink
from .relay_tls import RelayTLS
from .routing import Resolver, parse_host_port

log = logging.getLogger("mmtp.relay")

SENDER_KEY_TTL = 3600.0
FAILED_LOOKUP_TTL = 60.0
POLICY_TTL = 86_400.0
FETCH_THREADS = 8
LOOKUPS_PER_MINUTE = 60
# Lookups one source may have waiting on fetches at once. A fetch may take relay_timeout (a
# remote that trickles); without this, one client naming slow domains (a wildcard DNS makes
# them free) fills every fetch thread, and every other client's lookups and every relay's
# DOMAIN_AUTH key fetch wait behind it.
LOOKUPS_IN_FLIGHT_PER_SOURCE = 2
# Fetches from one domain's server at once (see `_shared`).
FETCHES_PER_DOMAIN = 2
# A remote's stampValiditySeconds is kept within these: a message waits in the queue at most
# about five days, as in Postfix (maximal_queue_lifetime).
REMOTE_VALIDITY_MIN = 60
REMOTE_VALIDITY_MAX = 5 * 86_400
MIN_FRAME_BYTES = 4096
# The most bits this server's own operator may ask for (config `difficulty`): more is no
# figure a client can mint to.
REMOTE_DIFFICULTY_MAX = 40


@dataclass(frozen=True)
class RemoteKey:
    """A user's key as its own domain's server gave it, validated like a registration."""

    armored: str
    fingerprint: str


@dataclass(frozen=True)
class _KeyLookup:
    expires: float
    # The text as fetched, until a worker has judged it; then the key, or why there is none.
    fetched: str | None = None
    key: RemoteKey | None = None
    error: MMTPError | None = None


@dataclass(frozen=True)
class RemotePolicy:
    """What a remote's greeting said a stamp for it must be (SPEC §8.4)."""

    difficulty: int
    stamp_validity_seconds: int | None
    max_frame_bytes: int | None
    fetched_at: float


def remote_policy(greeting: Greeting, now: float) -> RemotePolicy:
    """A remote greeting's stamp figures, clamped before any use: they reach clients (POLICY:
    what to mint; negative bits break a minter) and the queue (a job is retried until its stamp
    expires by the remote's validity, and its spent stamp kept as long: not for ever)."""
    validity = greeting.stamp_validity_seconds
    frame = greeting.max_frame_bytes
    return RemotePolicy(
        max(0, min(greeting.difficulty, REMOTE_DIFFICULTY_MAX)),
        None if validity is None else max(REMOTE_VALIDITY_MIN, min(validity, REMOTE_VALIDITY_MAX)),
        None if frame is None else max(MIN_FRAME_BYTES, frame),
        now,
    )


class Federation:
    def __init__(
        self,
        config: ServerConfig,
        *,
        cert_path: Path | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        data_dir = Path(config.data_dir)
        self.config = config
        self.clock = clock
        self.local_domains = frozenset(config.domains)
        self.keyring = DomainKeyring.load_or_create(data_dir)
        routes = {d: parse_host_port(t) for d, t in config.routes.items()}
        self.resolver = Resolver(
            routes, dns_server=config.dns_server, allow_private=config.allow_private_targets
        )
        self.tls = RelayTLS.for_data_dir(
            config.relay_tls_verify,  # type: ignore[arg-type]
            data_dir,
            config.relay_ca,
        )
        # certHash of the certificate this server presents: DOMAIN_AUTH must name it.
        self.served_cert_hash = _cert_hash_of(cert_path) if cert_path else None
        self.domain_keys = DomainKeyCache()
        self.executor = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="mmtp-fetch")
        self._lock = threading.Lock()
        self._sender_keys: dict[str, _KeyLookup] = {}
        self._policies: dict[str, RemotePolicy] = {}
        self._in_flight: dict[tuple[str, str], Future[None]] = {}
        self._waiting: dict[str, deque[tuple[tuple[str, str], Future[None], Callable[[], None]]]]
        self._waiting = {}
        self._running: dict[str, int] = {}
        self._policy_failures: dict[str, tuple[MMTPError, float]] = {}
        # Lookups made for clients that need a fetch, per source IP (SPEC §8.4: no amplifier).
        # Used from the loop thread only.
        self.lookups = FailureLimiter(LOOKUPS_PER_MINUTE - 1, 60.0, 60.0)  # the 61st waits
        self._lookups_in_flight: dict[str, int] = {}

    def set_route(self, domain: str, host: str, port: int) -> None:
        """A static route added after start (tests bind servers on free ports first)."""
        self.resolver.routes[domain.lower()] = (host, port)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    # --- connecting ---------------------------------------------------------------------

    def open_link(self, domain: str, setup: Callable[[RelayLink], None] | None = None) -> RelayLink:
        """Blocking: a verified connection to `domain`'s server (targets in order)."""
        link = RelayLink.open(
            domain,
            self.resolver.resolve(domain),
            self.tls,
            deadline=self.config.relay_timeout,
            setup=setup,
        )
        greeting = link.greeting
        if greeting is not None:
            self.note_policy(domain, remote_policy(greeting, self.clock()))
        return link

    # --- remote stamp figures -----------------------------------------------------------

    def note_policy(self, domain: str, policy: RemotePolicy) -> None:
        with self._lock:
            if len(self._policies) > 10_000:
                self._policies.clear()
            self._policies[domain] = policy

    def policy(self, domain: str, max_age: float = POLICY_TTL) -> RemotePolicy | None:
        with self._lock:
            policy = self._policies.get(domain)
        if policy is None or self.clock() - policy.fetched_at > max_age:
            return None
        return policy

    # --- background fetches -------------------------------------------------------------

    def lookups_in_flight(self, source: str) -> int:
        with self._lock:
            return self._lookups_in_flight.get(source, 0)

    def track_lookup(self, source: str, future: Future[None]) -> None:
        """`source` waits on `future` until it is done (see LOOKUPS_IN_FLIGHT_PER_SOURCE)."""
        with self._lock:
            self._lookups_in_flight[source] = self._lookups_in_flight.get(source, 0) + 1

        def done(_future: Future[None]) -> None:
            with self._lock:
                _count_down(self._lookups_in_flight, source)

        future.add_done_callback(done)

    def _shared(self, key: tuple[str, str], job: Callable[[], None]) -> Future[None]:
        """Identical fetches in flight share one (SPEC §8.4: no amplifier). Fetches from one
        domain run FETCHES_PER_DOMAIN at a time, the rest wait their turn outside the
        threads: a domain whose server trickles holds that many threads, not every one."""
        domain = domain_of(key[1]) if key[0] == "public_key" else key[1]
        with self._lock:
            future = self._in_flight.get(key)
            if future is not None:
                return future
            future = Future()
            self._in_flight[key] = future
            self._waiting.setdefault(domain, deque()).append((key, future, job))
            self._start_next(domain)
        return future

    def _start_next(self, domain: str) -> None:
        """Under the lock: start `domain`'s next waiting fetch if it has a free slot."""
        waiting = self._waiting.get(domain)
        if not waiting or self._running.get(domain, 0) >= FETCHES_PER_DOMAIN:
            return
        key, future, job = waiting.popleft()
        if not waiting:
            del self._waiting[domain]
        self._running[domain] = self._running.get(domain, 0) + 1
        try:
            self.executor.submit(self._run, domain, key, future, job)
        except RuntimeError:  # shut down: nobody will run it
            self._running[domain] -= 1
            self._in_flight.pop(key, None)
            future.set_exception(MMTPError(errors.REMOTE_UNAVAILABLE, "the server is stopping"))

    def _run(
        self, domain: str, key: tuple[str, str], future: Future[None], job: Callable[[], None]
    ) -> None:
        try:
            job()
        except BaseException as exc:  # the waiting request gets it, as from executor.submit
            error: BaseException | None = exc
        else:
            error = None
        with self._lock:
            self._in_flight.pop(key, None)
            _count_down(self._running, domain)
            self._start_next(domain)
        # Outside the lock: done callbacks run here, at once.
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def fetch_domain_keys(self, domain: str) -> Future[None]:
        return self._shared(("domain_key", domain), lambda: self._fetch_domain_keys(domain))

    def _fetch_domain_keys(self, domain: str) -> None:
        try:
            link = self.open_link(domain)
            try:
                answer = DomainKeyAnswer.from_response(
                    link.request(DomainKeyRequest.ACTION, DomainKeyRequest(domain).to_data())
                )
            finally:
                link.close()
        except (MMTPError, errors.LocalError) as exc:
            log.warning("relay: fetching the domain keys of %s failed: %s", domain, exc)
            self.domain_keys.failed(domain)
            return
        kept = self.domain_keys.store(domain, answer.keys, answer.ttl)
        log.info("relay: fetched %d domain key(s) of %s", len(kept), domain)

    def remote_key(self, email: str) -> tuple[bool, RemoteKey | None, MMTPError | None]:
        """(known, key, error) of the cached lookup of `email`'s key at its own server; not
        known while the key fetched is not judged yet (see `fetched_key`)."""
        entry = self._lookup(email)
        if entry is None or entry.fetched is not None:
            return False, None, None
        return True, entry.key, entry.error

    def fetched_key(self, email: str) -> str | None:
        """The text of `email`'s key as fetched, while no worker has judged it yet."""
        entry = self._lookup(email)
        return entry.fetched if entry is not None else None

    def _lookup(self, email: str) -> _KeyLookup | None:
        with self._lock:
            entry = self._sender_keys.get(email)
        if entry is None or entry.expires <= self.clock():
            return None
        return entry

    def note_judged(
        self, email: str, fetched: str, key: RemoteKey | None, error: MMTPError | None
    ) -> None:
        """A worker's verdict on the key fetched for `email`: cached an hour when valid, a
        minute when not (unless the lookup was made again meanwhile)."""
        ttl = SENDER_KEY_TTL if key is not None else FAILED_LOOKUP_TTL
        with self._lock:
            entry = self._sender_keys.get(email)
            if entry is not None and entry.fetched == fetched:
                expires = min(entry.expires, self.clock() + ttl)
                self._sender_keys[email] = _KeyLookup(expires, key=key, error=error)

    def fetch_sender_key(self, email: str) -> Future[None]:
        return self._shared(("public_key", email), lambda: self._fetch_sender_key(email))

    def _fetch_sender_key(self, email: str) -> None:
        fetched: str | None = None
        ttl = FAILED_LOOKUP_TTL
        error: MMTPError | None = None
        try:
            link = self.open_link(domain_of(email))
            try:
                frame = link.request("REQUEST_PUBLIC_KEY", {"email": email})
            finally:
                link.close()
            answer = RequestPublicKeyAnswer.from_response(frame)
            if answer.email.lower() != email or answer.remote:
                raise MMTPError(errors.KEY_INVALID, "the remote answered for another address")
            # Judged by a worker before any use (`note_judged`): a bad key is never used.
            fetched = answer.public_key
            ttl = SENDER_KEY_TTL
        except MMTPError as exc:
            log.info("relay: the key of %s could not be had: %s", email, exc)
            error = exc
        except errors.LocalError as exc:
            log.info("relay: the key of %s could not be had: %s", email, exc)
            error = MMTPError(errors.REMOTE_UNAVAILABLE, str(exc))
        with self._lock:
            if len(self._sender_keys) > 10_000:
                self._sender_keys.clear()
            self._sender_keys[email] = _KeyLookup(self.clock() + ttl, fetched, error=error)

    def fetch_policy(self, domain: str) -> Future[None]:
        return self._shared(("policy", domain), lambda: self._fetch_policy(domain))

    def policy_failure(self, domain: str) -> MMTPError | None:
        """A POLICY fetch that failed less than a minute ago (SPEC §8.4 caches failures)."""
        with self._lock:
            entry = self._policy_failures.get(domain)
        if entry is None or entry[1] <= self.clock():
            return None
        return entry[0]

    def _fetch_policy(self, domain: str) -> None:
        try:
            self.open_link(domain).close()
        except MMTPError as exc:
            error = exc
        except errors.LocalError as exc:
            error = MMTPError(errors.REMOTE_UNAVAILABLE, str(exc))
        else:
            return
        with self._lock:
            if len(self._policy_failures) > 10_000:
                self._policy_failures.clear()
            self._policy_failures[domain] = (error, self.clock() + FAILED_LOOKUP_TTL)
        raise error


def _cert_hash_of(path: Path) -> str:
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    return cert_hash(certificate.public_bytes(Encoding.DER))


def _count_down(counts: dict[str, int], key: str) -> None:
    """One fewer under `key`; none left, no entry (the dicts stay as small as what runs)."""
    left = counts.get(key, 1) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
