"""The typed vocabulary of MMTP (SPEC §1, §5): one module per action, each with its request
and its OK answer as dataclasses, built and parsed in one place for server and client.

Every module follows one pattern, so a new action (revision 2's POLICY, DOMAIN_KEY and
DOMAIN_AUTH) is one more module of the same shape:

- `<Name>Request` has `ACTION`, `to_data()` (the request's `data` object, as given: the
  server judges it) and `from_data(data)` (the server's strict parse: a bad field raises
  `MMTPError` with the SPEC's code and words).
- `<Name>Answer` has `to_response()` (the OK frame, `status` first, without `id`) and
  `from_response(frame)` (the client's parse of an OK frame: unknown keys are ignored, a
  missing or ill-typed field is `LocalError`, as for any answer that is not MMTP).

Error answers are not answer types: they are `errors.MMTPError` on both sides.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from ._fields import email_of
from .auth import AuthAnswer, AuthRequest
from .check import CheckAnswer, CheckRequest
from .delete import DeleteAnswer, DeleteRequest
from .domain_auth import DomainAuthAnswer, DomainAuthRequest
from .domain_key import DomainKeyAnswer, DomainKeyRequest
from .greeting import Features, Greeting
from .policy import PolicyAnswer, PolicyRequest
from .receive import ReceiveAnswer, ReceiveRequest
from .register_key import RegisterKeyAnswer, RegisterKeyRequest
from .request_public_key import RequestPublicKeyAnswer, RequestPublicKeyRequest
from .send import SendAnswer, SendRequest


class ActionRequest(Protocol):
    """What every request type offers; `ClientConnection.send` takes any of them."""

    ACTION: ClassVar[str]

    def to_data(self) -> dict[str, Any]: ...


__all__ = [
    "ActionRequest",
    "AuthAnswer",
    "AuthRequest",
    "CheckAnswer",
    "CheckRequest",
    "DeleteAnswer",
    "DeleteRequest",
    "DomainAuthAnswer",
    "DomainAuthRequest",
    "DomainKeyAnswer",
    "DomainKeyRequest",
    "Features",
    "Greeting",
    "PolicyAnswer",
    "PolicyRequest",
    "ReceiveAnswer",
    "ReceiveRequest",
    "RegisterKeyAnswer",
    "RegisterKeyRequest",
    "RequestPublicKeyAnswer",
    "RequestPublicKeyRequest",
    "SendAnswer",
    "SendRequest",
    "email_of",
]
