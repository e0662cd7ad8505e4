from __future__ import annotations

import base64
from typing import Any

from wot_agents import AgentDescription
from wot_agents.bindings import ApiKey, ApiKeyAuth, BasicAuth, BasicCredentials, BearerAuth, BearerToken
from wot_agents.bindings._security import Presented, apply_security


def td(definitions: dict[str, Any], security: Any) -> AgentDescription:
    return AgentDescription.from_dict(
        {
            "@context": "https://www.w3.org/2022/wot/td/v1.1",
            "title": "T",
            "securityDefinitions": definitions,
            "security": security,
        }
    )


def test_nosec_needs_nothing() -> None:
    applied = apply_security(td({"n": {"scheme": "nosec"}}, "n"), None, None)
    assert applied is not None and not applied.headers and not applied.query


def test_each_scheme_goes_where_its_definition_says() -> None:
    basic = apply_security(td({"b": {"scheme": "basic"}}, "b"), None, BasicCredentials("ann", "pw"))
    assert basic is not None
    assert basic.headers["Authorization"] == "Basic " + base64.b64encode(b"ann:pw").decode()
    assert (basic.username, basic.password) == ("ann", "pw")
    bearer = apply_security(td({"t": {"scheme": "bearer"}}, ["t"]), None, BearerToken("tok"))
    assert bearer is not None and bearer.headers == {"Authorization": "Bearer tok"}
    header = td({"k": {"scheme": "apikey", "in": "header", "name": "X-Key"}}, "k")
    assert apply_security(header, None, ApiKey("s3")).headers == {"X-Key": "s3"}  # type: ignore[union-attr]
    query = td({"k": {"scheme": "apikey", "in": "query", "name": "key"}}, "k")
    assert apply_security(query, None, ApiKey("s3")).query == {"key": "s3"}  # type: ignore[union-attr]


def test_missing_or_wrong_kind_of_credentials_cannot_satisfy() -> None:
    bearer = td({"t": {"scheme": "bearer"}}, "t")
    assert apply_security(bearer, None, None) is None
    assert apply_security(bearer, None, ApiKey("k")) is None
    assert (
        apply_security(td({"o": {"scheme": "oauth2", "flow": "code"}}, "o"), None, BearerToken("x")) is None
    )


def test_credentials_by_name_and_combos() -> None:
    doc = td(
        {
            "t": {"scheme": "bearer"},
            "k": {"scheme": "apikey", "in": "header", "name": "X-Key"},
            "either": {"scheme": "combo", "oneOf": ["t", "k"]},
            "both": {"scheme": "combo", "allOf": ["t", "k"]},
        },
        "either",
    )
    assert apply_security(doc, None, {"k": ApiKey("key")}).headers == {"X-Key": "key"}  # type: ignore[union-attr]
    assert apply_security(doc, "both", {"k": ApiKey("key")}) is None
    both = apply_security(doc, "both", {"k": ApiKey("key"), "t": BearerToken("tok")})
    assert both is not None and both.headers == {"X-Key": "key", "Authorization": "Bearer tok"}


def test_server_schemes_check_what_was_presented() -> None:
    basic = BasicAuth({"ann": "pw"})
    good = "Basic " + base64.b64encode(b"ann:pw").decode()
    assert basic.authenticate(Presented({"authorization": good}))
    assert not basic.authenticate(
        Presented({"Authorization": "Basic " + base64.b64encode(b"ann:no").decode()})
    )
    assert not basic.authenticate(Presented({"Authorization": "Basic !!!"}))
    bearer = BearerAuth({"tok"})
    assert bearer.authenticate(Presented({"Authorization": "Bearer tok"}))
    assert not bearer.authenticate(Presented({"Authorization": "Bearer other"}))
    assert BearerAuth(lambda token: token.startswith("ok-")).authenticate(
        Presented({"Authorization": "Bearer ok-1"})
    )
    query_key = ApiKeyAuth({"k1"}, in_="query", param="key")
    assert query_key.authenticate(Presented({}, {"key": "k1"}))
    assert not query_key.authenticate(Presented({"key": "k1"}, {}))
    assert query_key.definition().to_dict() == {"scheme": "apikey", "in": "query", "name": "key"}
