"""Messages workers post back to the UI (Textual side)."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class Failed(Message):
    """A worker's job failed; `text` is for people."""

    def __init__(self, text: str, *, what: str = "") -> None:
        super().__init__()
        self.text, self.what = text, what


class Stage(Message):
    """A step of a longer job starts (connecting, encrypting, sending...)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Stage)


class Done(Message):
    """A worker's job succeeded, with what it made."""

    def __init__(self, what: str, value: Any = None) -> None:
        super().__init__()
        self.what, self.value = what, value


# Typed outcomes: one class per result, so a handler never compares strings.


class RegistrationChecked(Message):
    """The fingerprint the server has for our address (None: nothing registered)."""

    def __init__(self, fingerprint: str | None) -> None:
        super().__init__()
        self.fingerprint = fingerprint


class RegistrationUnknown(Message):
    """The server could not be asked (offline); `text` is for people."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class KeyGenerated(Message):
    """A new key is current; `previous` is the one it replaced (kept in the ring)."""

    def __init__(self, fingerprint: str, previous: str | None) -> None:
        super().__init__()
        self.fingerprint, self.previous = fingerprint, previous


class KeyRegistered(Message):
    def __init__(self, fingerprint: str) -> None:
        super().__init__()
        self.fingerprint = fingerprint


class ContactFetched(Message):
    def __init__(self, email: str, status: str) -> None:
        super().__init__()
        self.email, self.status = email, status


class JobFailed(Message):
    """A keys-pane job failed; `text` is for people."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class MailFetched(Message):
    """A fetch finished: `result` is a sync.FetchResult."""

    def __init__(self, result: Any) -> None:
        super().__init__()
        self.result = result


class FetchFailed(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class NewMailWaiting(Message):
    """The periodic check found `count` messages on the server."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count


class AccountReady(Message):
    """Setup finished: `session` is the new account's AccountSession."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session


class SetupFailed(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class OutboxFlushed(Message):
    """The Outbox was tried: `result` is an outbox.FlushResult."""

    def __init__(self, result: Any) -> None:
        super().__init__()
        self.result = result


class AttachmentOpened(Message):
    """The open command finished: `status` its exit status (None: it did not run)."""

    def __init__(self, name: str, status: int | None) -> None:
        super().__init__()
        self.name, self.status = name, status
