"""Signature checks on every write: the directory refuses descriptions that are not their signer's.

A signed description is always verified (``wot_agents.trust``): a TD changed after signing, or
signed with a key its ``kid`` does not name, is refused with 400 whatever the settings. With
``require_signatures`` an unsigned one is refused too, and with ``trusted_issuers`` only those
signers are accepted. A merge patch is checked on its result, so a patch that changes a signed
TD without the signer's new signature is refused; one that removes ``signatures`` stores the TD
unsigned, when signatures are not required.

What the directory adds (``registration``, the discovery context) is outside the signed form,
so stored, listed and patched TDs keep verifying.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from wot_agents import DidResolver, KeyResolutionError, SignatureError, TrustError, TrustPolicy

from ._config import DirectorySettings
from ._problems import HTTPProblem

__all__ = ["SignatureCheck", "did_resolver"]


def did_resolver(settings: DirectorySettings) -> DidResolver:
    """The directory's resolver of signers' and group callers' DIDs, as the settings say."""
    context = None
    if settings.did_web_ca is not None:
        context = ssl.create_default_context()
        context.load_verify_locations(cafile=str(settings.did_web_ca))
    return DidResolver(http_hosts=frozenset(settings.did_web_http_hosts), ssl=context)


def _issuer(exc: TrustError) -> dict[str, Any]:
    return {"issuer": exc.issuer} if exc.issuer else {}


class SignatureCheck:
    """The directory's trust policy, applied by :class:`~registry.Directory` to each write."""

    def __init__(self, settings: DirectorySettings) -> None:
        self.policy = TrustPolicy(
            require_signature=settings.require_signatures,
            trusted=None if settings.trusted_issuers is None else frozenset(settings.trusted_issuers),
            resolver=did_resolver(settings),
        )

    @property
    def active(self) -> bool:
        return self.policy.require_signature or self.policy.trusted is not None

    async def check(self, td: Mapping[str, Any]) -> None:
        """Refuse (400) a write whose signatures do not verify or are not trusted."""
        if "signatures" not in td and not self.active:
            return
        try:
            await self.policy.check(td, source="directory")
        except SignatureError as exc:
            raise HTTPProblem(400, f"the TD's signature does not verify: {exc}", **_issuer(exc)) from None
        except KeyResolutionError as exc:
            raise HTTPProblem(
                400, f"the TD's signing key could not be found: {exc}", **_issuer(exc)
            ) from None
        except TrustError as exc:
            raise HTTPProblem(400, f"this directory does not accept the TD: {exc}", **_issuer(exc)) from None

    @staticmethod
    def needs_own_id(td: Mapping[str, Any]) -> None:
        """A signed TD cannot be given an id by the directory: that would change what was signed."""
        if "signatures" in td and "id" not in td:
            raise HTTPProblem(
                400, "a signed TD must carry its own id (the directory cannot add one to signed content)"
            )
