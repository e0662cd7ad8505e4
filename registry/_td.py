"""The directory's own Thing Description, made from the W3C directory Thing Model.

It is ``directory.tm.json`` (7.3.2.4) instantiated: ``@type`` ``ThingDirectory``, the base URL
the client used, the affordances this directory implements (XPath search is not one of them),
the JSON filter search as an extra action, and a link to the OpenAPI description.
"""

from __future__ import annotations

from typing import Any

import td_schemas

from ._enrich import TD10_CONTEXT

__all__ = ["directory_td"]


def directory_td(
    base: str, *, protected_writes: bool, title: str, protected_reads: bool = False
) -> dict[str, Any]:
    td: dict[str, Any] = td_schemas.load(td_schemas.SCHEMA_FILES["directory-tm"])
    td.pop("tm:optional", None)
    td.pop("version", None)
    # TD 1.1 5.3.1.1: where TD 1.0 consumers may come (node-wot validates with the 1.0 schema), the
    # 1.0 context goes first and the 1.1 context second; a directory is such a place.
    td["@context"] = [TD10_CONTEXT, *td["@context"]]
    td["@type"] = "ThingDirectory"
    td["title"] = title
    td["base"] = base.rstrip("/") + "/"
    td["actions"].pop("searchXPath", None)
    td["actions"]["searchFilter"] = {
        "description": "Search by common fields (@type, capability, tenant, channel, subset, protocol, "
        "security scheme, text) with AND/OR/NOT, sorting and pagination; see the OpenAPI description",
        "input": {"type": "object"},
        "output": {"type": "object"},
        "safe": True,
        "idempotent": True,
        "forms": [
            {"href": "/search/filter", "htv:methodName": "POST", "contentType": "application/json",
             "response": {"contentType": "application/ld+json"}},
        ],
    }  # fmt: skip
    for kind in ("properties", "actions", "events"):
        for affordance in td[kind].values():
            for form in affordance["forms"]:
                # TD 1.1 requires a contentType on every expected response, even an empty one
                # (7.3.2.4 suggests application/x-empty); without it the directory's TD is invalid.
                for response in [form.get("response"), *form.get("additionalResponses", [])]:
                    if isinstance(response, dict):
                        response.setdefault("contentType", "application/x-empty")
    td["links"] = [{"rel": "service-desc", "href": "/openapi.json", "type": "application/openapi+json"}]
    bearer = {"scheme": "bearer", "in": "header", "name": "Authorization"}
    if protected_reads:  # every affordance needs the token (the TD itself stays readable)
        td["securityDefinitions"] = {"bearer_sc": bearer}
        td["security"] = "bearer_sc"
        return td
    td["securityDefinitions"] = {"nosec_sc": {"scheme": "nosec"}}
    td["security"] = "nosec_sc"
    if protected_writes:
        td["securityDefinitions"]["bearer_sc"] = bearer
        writes = ("createThing", "createAnonymousThing", "updateThing", "partiallyUpdateThing", "deleteThing")
        for name in writes:
            for form in td["actions"][name]["forms"]:
                form["security"] = ["bearer_sc"]
    return td
