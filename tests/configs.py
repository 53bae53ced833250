"""The server config of the tests, in a module of its own: test modules import it by this
name (`conftest` is ambiguous, tests/tui having one of its own)."""

from __future__ import annotations

from pathlib import Path

from mmtp_proto.config import ServerConfig

DOMAINS = ["localhost", "example.com"]
TEST_DIFFICULTY = 6


def make_config(data_dir: Path, **overrides) -> ServerConfig:
    values = dict(
        host="127.0.0.1",
        port=0,
        secure_port=0,
        data_dir=data_dir,
        domains=list(DOMAINS),
        difficulty=TEST_DIFFICULTY,
        log_level="DEBUG",
        # The machine running the tests may be busy: a real key's check must not hit the
        # deadline there. Tests of the deadline itself set a short one.
        job_deadline_seconds=30.0,
    )
    values.update(overrides)
    return ServerConfig(**values)
