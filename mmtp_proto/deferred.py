"""Answers that come later: what a handler waits for off the loop, and what to do then.

A handler that must not do its work on the loop thread returns a `Pending`, which waits for
one of two things:

- a `Job`: a plain picklable function and its arguments, run by the worker-process pool
  (`worker_pool`) under a deadline and a memory limit: OpenPGP parsing and verification of
  untrusted data (`pgp_jobs`);
- a `Future`: a fetch from another server made on federation's threads (SPEC §8.4: a remote
  key, POLICY, the domain keys DOMAIN_AUTH needs).

Either way the continuation `then` runs back on the loop thread with a `JobResult` (a future's
result or exception is put in one by `future_result`) and gives the `Outcome`, or another
`Pending`. The connection answers nothing after a pending request until it is done, so answers
stay in request order; other connections go on.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .session import Outcome

# Why a job gave no value.
DEADLINE = "deadline"  # it ran past its deadline; its worker was killed and replaced
CRASHED = "crashed"  # its worker died or ran out of memory
BUSY = "busy"  # it waited too long for a free worker and never ran
ERROR = "error"  # the function raised (a bug, or data the function did not expect)


@dataclass(frozen=True)
class Job:
    func: Callable[..., Any]
    args: tuple[Any, ...]
    # Whose work this is (the source IP): queued jobs are taken from each source in turn.
    source: str = ""
    # A hint for the runner: jobs with the same affinity go to the same worker when it is
    # free (it has that key parsed in its cache already).
    affinity: str = ""


@dataclass(frozen=True)
class JobResult:
    value: Any = None
    failure: str | None = None  # None when the function returned `value`
    detail: str = ""
    # Worker CPU seconds the job cost (the deadline when it was killed): charged to its source.
    cpu_seconds: float = 0.0
    # What a future ended with when it raised (failure is then ERROR); never set for a job.
    exception: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass
class Pending:
    """A request answered later: by `then(result)` once `job` (or `future`) is done.

    Exactly one of `job` and `future` is set; build it with `on_job` or `on_future`."""

    then: Callable[[JobResult], Outcome | Pending]
    job: Job | None = None
    future: Future[Any] | None = None
    # Set by the protocol: the request this answers (framing.NO_ID when it had no id).
    action: str = "-"
    request_id: Any = field(default=None)

    def __post_init__(self) -> None:
        if (self.job is None) == (self.future is None):
            raise ValueError("a Pending waits for a job or for a future, not both or neither")

    @classmethod
    def on_job(cls, job: Job, then: Callable[[JobResult], Outcome | Pending]) -> Pending:
        return cls(then, job=job)

    @classmethod
    def on_future(
        cls, future: Future[Any], then: Callable[[JobResult], Outcome | Pending]
    ) -> Pending:
        return cls(then, future=future)


def future_result(future: Future[Any]) -> JobResult:
    """A finished future's outcome in a job's shape (a cancelled one counts as an error)."""
    if future.cancelled():
        return JobResult(failure=ERROR, detail="cancelled")
    exc = future.exception()
    if exc is not None:
        return JobResult(failure=ERROR, detail=f"{type(exc).__name__}: {exc}", exception=exc)
    return JobResult(future.result())


def run_inline(job: Job) -> JobResult:
    """Run a job in this thread (tests and tools without a loop; never the server's loop)."""
    try:
        return JobResult(job.func(*job.args))
    except Exception as exc:
        return JobResult(failure=ERROR, detail=f"{type(exc).__name__}: {exc}")
