"""Search queries, sorting and collapsed threads for the message list. Plain module: no
Textual, no SQL; the store hands over messages and these functions pick and order them.

A query is words and operators, all of which must match (case-insensitive):

    from:bob  to:alice  subject:plans  before:2026-06-01  after:2026-05-01
    has:attachment  is:unread  is:read  is:flagged  "two words"  anything-else

A bare word matches the subject, the sender, the recipient or the body. `before:` is
exclusive and `after:` inclusive, both whole UTC days.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .mailstore import StoredMessage, order_threads

SORTS = ("date", "sender", "subject")
_DAY = timedelta(days=1)


class QueryError(ValueError):
    """A query that cannot be read; the text says what to fix."""


@dataclass
class Query:
    words: list[str] = field(default_factory=list)
    sender: list[str] = field(default_factory=list)
    recipient: list[str] = field(default_factory=list)
    subject: list[str] = field(default_factory=list)
    before: int | None = None  # Unix seconds, exclusive
    after: int | None = None  # Unix seconds, inclusive
    has_attachment: bool = False
    unread: bool | None = None
    flagged: bool = False


def _day(value: str, name: str) -> int:
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise QueryError(f"{name}: wants a date as YYYY-MM-DD, not {value!r}") from None
    return int(day.timestamp())


def parse(text: str) -> Query:
    """Read a query (QueryError when an operator's value is wrong)."""
    try:
        tokens = shlex.split(text)
    except ValueError:  # an unclosed quote: take the words as they are
        tokens = text.split()
    query = Query()
    for token in tokens:
        name, colon, value = token.partition(":")
        name = name.lower()
        if not colon or not value:
            query.words.append(token.lower())
        elif name == "from":
            query.sender.append(value.lower())
        elif name == "to":
            query.recipient.append(value.lower())
        elif name == "subject":
            query.subject.append(value.lower())
        elif name == "before":
            query.before = _day(value, "before")
        elif name == "after":
            query.after = _day(value, "after")
        elif name == "has":
            if value.lower() not in ("attachment", "attachments"):
                raise QueryError(f"has: knows only has:attachment, not has:{value}")
            query.has_attachment = True
        elif name == "is":
            kind = value.lower()
            if kind in ("unread", "new"):
                query.unread = True
            elif kind in ("read", "seen"):
                query.unread = False
            elif kind in ("flagged", "starred"):
                query.flagged = True
            else:
                raise QueryError(f"is: knows unread, read and flagged, not is:{value}")
        else:
            query.words.append(token.lower())
    return query


def matches(message: StoredMessage, query: Query) -> bool:
    sender, recipient = message.sender.lower(), message.recipient.lower()
    subject = message.subject.lower()
    if not all(part in sender for part in query.sender):
        return False
    if not all(part in recipient for part in query.recipient):
        return False
    if not all(part in subject for part in query.subject):
        return False
    if query.before is not None and message.timestamp >= query.before:
        return False
    if query.after is not None and message.timestamp < query.after:
        return False
    if query.has_attachment and not message.attachments:
        return False
    if query.unread is not None and query.unread == message.read:
        return False
    if query.flagged and not message.flagged:
        return False
    if query.words:
        haystack = "\n".join((subject, sender, recipient, message.body.lower()))
        return all(word in haystack for word in query.words)
    return True


def search(messages: list[StoredMessage], text: str) -> list[StoredMessage]:
    query = parse(text)
    return [m for m in messages if matches(m, query)]


def sort_messages(messages: list[StoredMessage], how: str) -> list[StoredMessage]:
    """`date`: threads together (newest thread first); `sender`/`subject`: flat, A→Z,
    newest first within the same value."""
    if how == "date":
        return order_threads(list(messages))
    if how not in SORTS:
        raise ValueError(f"sort by one of {', '.join(SORTS)}, not {how!r}")
    flat = sorted(messages, key=lambda m: (-m.timestamp, -m.id))
    if how == "sender":
        flat.sort(key=lambda m: m.sender.lower())
    else:
        flat.sort(key=lambda m: _bare_subject(m.subject))
    for message in flat:
        message.depth = 0
    return flat


def _bare_subject(subject: str) -> str:
    """`Re: Fwd: plans` sorts with `plans`."""
    subject = subject.strip()
    while subject[:3].lower() in ("re:",) or subject[:4].lower() == "fwd:":
        subject = subject[3:] if subject[:3].lower() == "re:" else subject[4:]
        subject = subject.lstrip()
    return subject.lower()


def collapse(messages: list[StoredMessage]) -> list[StoredMessage]:
    """One row per thread (its first message shown); `hidden_replies` counts the rest."""
    shown: dict[str, StoredMessage] = {}
    for message in messages:
        first = shown.get(message.thread)
        if first is None:
            message.hidden_replies = 0
            shown[message.thread] = message
        else:
            first.hidden_replies += 1
    return list(shown.values())


def next_thread_index(messages: list[StoredMessage], index: int, step: int) -> int:
    """The row of the next (step 1) or previous (step -1) thread's first message."""
    if not messages:
        return 0
    index = max(0, min(index, len(messages) - 1))
    current = messages[index].thread
    i = index
    while 0 <= i + step < len(messages) and messages[i + step].thread == current:
        i += step
    if not 0 <= i + step < len(messages):
        return index if step > 0 else _thread_start(messages, i)
    i += step
    return _thread_start(messages, i)


def _thread_start(messages: list[StoredMessage], index: int) -> int:
    thread = messages[index].thread
    while index > 0 and messages[index - 1].thread == thread:
        index -= 1
    return index
