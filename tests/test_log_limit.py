"""`log_limit.RepeatLimiter`: lines of one kind per interval, then one summary."""

from __future__ import annotations

import logging

from mmtp_proto.log_limit import MAX_KINDS, RepeatLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _setup(lines: int = 3, seconds: float = 10.0) -> tuple[logging.Logger, Collect, Clock]:
    clock = Clock()
    handler = Collect()
    handler.addFilter(RepeatLimiter(lines, seconds, handler.handle, clock=clock))
    logger = logging.getLogger(f"test.log_limit.{id(handler)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, handler, clock


def test_a_flood_of_one_kind_passes_its_budget_then_one_summary():
    logger, handler, clock = _setup(lines=3)
    for i in range(1000):
        logger.info("%s - ERROR %s", f"10.0.0.{i % 250}", "BAD_JSON")
    assert len(handler.lines) == 3
    clock.now += 10.0
    logger.info("%s - ERROR %s", "10.0.0.1", "BAD_JSON")
    assert handler.lines[3] == "997 similar lines suppressed in 10 s: '%s - ERROR %s'"
    assert handler.lines[4] == "10.0.0.1 - ERROR BAD_JSON"


def test_kinds_have_budgets_of_their_own():
    logger, handler, _ = _setup(lines=2)
    for _ in range(10):
        logger.info("connection from %s", "a")
        logger.info("closed %s", "a")
        logger.warning("connection from %s", "a")  # another level, another kind
    assert len(handler.lines) == 6


def test_flush_writes_the_summary_without_a_later_line():
    logger, handler, clock = _setup(lines=1, seconds=5.0)
    limiter = next(f for f in handler.filters if isinstance(f, RepeatLimiter))
    for _ in range(4):
        logger.info("junk from %s", "x")
    limiter.flush()
    assert len(handler.lines) == 1  # the interval is not over yet
    clock.now += 5.0
    limiter.flush()
    assert handler.lines[1].startswith("3 similar lines suppressed in 5 s")
    clock.now += 5.0
    limiter.flush()
    assert len(handler.lines) == 2  # nothing more to say


def test_no_summary_when_nothing_was_suppressed():
    logger, handler, clock = _setup(lines=5)
    logger.info("once")
    clock.now += 100.0
    logger.info("twice")
    assert handler.lines == ["once", "twice"]


def test_messages_with_their_data_in_the_template_cannot_grow_the_table_without_bound():
    logger, handler, _ = _setup(lines=3)
    limiter = next(f for f in handler.filters if isinstance(f, RepeatLimiter))
    for i in range(MAX_KINDS * 3):
        logger.info(f"preformatted {i}")
    # MAX_KINDS kinds, then one shared budget for all the others.
    assert len(limiter._windows) == MAX_KINDS + 1
    assert len(handler.lines) == MAX_KINDS + 3


def test_zero_lines_turns_the_limit_off():
    logger, handler, _ = _setup(lines=0)
    for _ in range(100):
        logger.info("same")
    assert len(handler.lines) == 100
