"""Deferred answers: work a handler hands off the loop, and what to do when it is done.

A handler that must not do its work on the loop thread (OpenPGP parsing and verification of
untrusted data; later, federation's remote lookups) returns a `Pending`: a `Job` (a plain
picklable function and its arguments, run elsewhere under a deadline) and a continuation
`then`, which runs back on the loop with the job's `JobResult` and gives the `Outcome` (or
another `Pending`). The connection answers nothing after a pending request until it is done,
so answers stay in request order; other connections go on.
"""

from __future__ import annotations

from collections.abc import Callable
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

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass
class Pending:
    job: Job
    then: Callable[[JobResult], Outcome | Pending]
    # Set by the protocol: the request this answers.
    action: str = "-"
    request_id: Any = field(default=None)


def run_inline(job: Job) -> JobResult:
    """Run a job in this thread (tests and tools without a loop; never the server's loop)."""
    try:
        return JobResult(job.func(*job.args))
    except Exception as exc:
        return JobResult(failure=ERROR, detail=f"{type(exc).__name__}: {exc}")
