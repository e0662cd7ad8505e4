"""The one exception hierarchy of wot-agents.

Every error the SDK and the services raise on purpose derives from :class:`WotAgentsError`,
so a caller can catch everything from the project with one ``except``. Where a builtin
describes the same failure, the child inherits it too, so ``except TimeoutError`` or
``except ConnectionError`` keeps working for code that knows nothing of wot-agents::

    WotAgentsError
    ├── DescriptionError (ValueError)        a document that is not a usable Thing Description
    │   └── ValidationError                  ... because of schema problems, listed in ``problems``
    ├── JsonLdError                          JSON-LD processing failed (e.g. an unknown remote context)
    ├── InteractionError                     talking to an agent over a binding failed
    │   ├── ConnectError (ConnectionError)   the agent could not be reached
    │   ├── RequestTimeout (TimeoutError)    no answer in time
    │   ├── RemoteError                      the agent answered with an error (``status``, ``problem``)
    │   ├── PayloadError (ValueError)        a payload does not match the affordance's data schema
    │   └── NoSuitableFormError              no form with a supported op, scheme and security
    ├── DirectoryError                       a directory request failed (``status``, ``problem``)
    ├── TrustError                           identity, signature or membership checks failed
    │   ├── SignatureError (ValueError)      a signed description does not verify (tampered, wrong key)
    │   ├── UntrustedIssuer                  it verifies, but no signer is one the caller trusts
    │   ├── AccessDenied (PermissionError)   the caller may not use this affordance / group
    │   └── KeyResolutionError               a signer's key could not be found (DID unresolvable)
    ├── DiscoveryError                       mDNS / DNS-SD discovery failed
    │   ├── AnnouncementError (ValueError)   a DNS-SD announcement breaks the WoT Discovery rules
    │   └── DirectoryNotFound (LookupError)  no directory announced itself in time
    ├── KubernetesError                      the Kubernetes API refused a request or could not be reached
    └── RoutingError                         the router could not decide (not the same as "no agent fits")
        ├── EmbedderError                    an embedding model could not load or embed
        └── LLMRoutingError                  the LLM gave no usable answer within the bounded retries

A remote problem (the RFC 7807 document an agent or a directory answered) is always ``.problem``.
Servers map these errors onto problem details in one place, ``wot_agents._problem``
(``ERROR_STATUSES``), where also ``HTTPProblem`` lives: the exception a handler raises to answer
with a given status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AccessDenied",
    "AnnouncementError",
    "ConnectError",
    "DescriptionError",
    "DirectoryError",
    "DirectoryNotFound",
    "DiscoveryError",
    "EmbedderError",
    "InteractionError",
    "JsonLdError",
    "KeyResolutionError",
    "KubernetesError",
    "LLMRoutingError",
    "NoSuitableFormError",
    "PayloadError",
    "Problem",
    "RemoteError",
    "RequestTimeout",
    "RoutingError",
    "SignatureError",
    "TrustError",
    "UntrustedIssuer",
    "ValidationError",
    "WotAgentsError",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a document: where (a JSON Pointer, RFC 6901) and what."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


class WotAgentsError(Exception):
    """Root of every error wot-agents raises on purpose."""


class DescriptionError(WotAgentsError, ValueError):
    """A document is not a usable Thing Description (not JSON, too large, wrong shape...)."""


class ValidationError(DescriptionError):
    """A document breaks the schemas; ``problems`` lists every violation found, not just the first."""

    def __init__(self, problems: Sequence[Problem], *, source: str | None = None) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.source = source
        where = f"{source}: " if source else ""
        first = self.problems[0] if self.problems else Problem("", "invalid")
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(f"{where}invalid Thing Description: {first}{more}")


class JsonLdError(WotAgentsError):
    """JSON-LD processing failed, e.g. a context that is not known offline."""


class InteractionError(WotAgentsError):
    """Talking to an agent through one of its forms failed."""

    def __init__(self, message: str, *, href: str | None = None, thing_id: str | None = None) -> None:
        super().__init__(message)
        self.href = href
        self.thing_id = thing_id


class ConnectError(InteractionError, ConnectionError):
    """The agent's endpoint could not be reached (refused, unresolvable, closed)."""


class RequestTimeout(InteractionError, TimeoutError):
    """The agent did not answer within the timeout."""


class RemoteError(InteractionError):
    """The agent answered with an error status; ``problem`` holds its problem document (or ``{}``)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        problem: Mapping[str, Any] | None = None,
        href: str | None = None,
        thing_id: str | None = None,
    ) -> None:
        super().__init__(message, href=href, thing_id=thing_id)
        self.status = status
        self.problem = dict(problem) if problem else {}


class PayloadError(InteractionError, ValueError):
    """A value sent or received does not match the affordance's data schema."""

    def __init__(self, message: str, *, problems: Sequence[Problem] = (), **kwargs: Any) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(_with_problems(message, self.problems), **kwargs)


def _with_problems(message: str, problems: Sequence[Problem], shown: int = 3) -> str:
    """``message: /a: ...; /b: ... (and N more)``: the problems belong in what ``str()`` shows."""
    if not problems:
        return message
    listed = "; ".join(str(problem) for problem in problems[:shown])
    more = f" (and {len(problems) - shown} more)" if len(problems) > shown else ""
    return f"{message}: {listed}{more}"


class NoSuitableFormError(InteractionError):
    """No form of the affordance has an operation, scheme and security this client supports."""


class DirectoryError(WotAgentsError):
    """A directory answered with an error (``status``, its ``problem`` document) or could not be reached.

    ``waited`` is set when the directory stayed busy (503 with ``Retry-After``) for longer than the
    client would wait: the seconds it waited before giving up.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        problem: Mapping[str, Any] | None = None,
        waited: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.problem = dict(problem) if problem else {}
        self.waited = waited


class TrustError(WotAgentsError):
    """An identity, signature or membership check failed; ``issuer`` names the signer when known."""

    def __init__(self, message: str, *, issuer: str | None = None) -> None:
        super().__init__(message)
        self.issuer = issuer


class SignatureError(TrustError, ValueError):
    """A description's signature does not verify: changed after signing, or signed by another key."""


class UntrustedIssuer(TrustError):
    """Every signature verifies, but none is by an issuer the caller accepts (or there is none)."""


class AccessDenied(TrustError, PermissionError):
    """The caller did not prove what the affordance (or the group API) requires: a membership,
    an identity, a valid and unexpired credential with its proof."""


class KeyResolutionError(TrustError):
    """A signer's public key could not be found: unknown DID method, DID document unreachable,
    too large, too slow, redirected to another host, or without the key named."""


class DiscoveryError(WotAgentsError):
    """Announcing or browsing with mDNS / DNS-SD failed."""


class AnnouncementError(DiscoveryError, ValueError):
    """A DNS-SD announcement breaks the WoT Discovery rules (no ``td``, a relative path...)."""


class DirectoryNotFound(DiscoveryError, LookupError):
    """No Thing Description Directory announced itself by DNS-SD within the timeout."""


class KubernetesError(WotAgentsError):
    """The Kubernetes API answered with an error (``status``, ``reason``) or could not be reached.

    ``status`` is None when no answer came; ``reason`` is the API's Status reason (``Conflict``,
    ``Expired``, ``NotFound``...), which callers branch on rather than on the message.
    """

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class RoutingError(WotAgentsError):
    """The router failed to reach a decision; an abstention ("no agent fits") is not an error."""


class EmbedderError(RoutingError):
    """An embedding model is not installed, could not load, or failed to embed."""


class LLMRoutingError(RoutingError):
    """The LLM endpoint failed or kept answering unusably (bad JSON, unknown agent) past the retries."""
