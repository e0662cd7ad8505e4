"""JSON Schemas and JSON-LD contexts that wot-agents ships, so nothing is fetched at run time.

Files from the W3C (Thing Description 1.1 schema and contexts, WoT Discovery context, extension
schema and directory Thing Model) are verbatim copies under the W3C Software and Document
License; see NOTICE. The LMOS files are this project's own.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

__all__ = ["CONTEXT_FILES", "SCHEMA_FILES", "load"]

#: JSON-LD context URL -> file. The discovery context is served for both spellings in use.
CONTEXT_FILES: dict[str, str] = {
    "https://www.w3.org/2019/wot/td/v1": "td-context-1.0.jsonld",
    "https://www.w3.org/2022/wot/td/v1.1": "td-context-1.1.jsonld",
    "https://www.w3.org/2022/wot/discovery": "discovery-context.jsonld",
    "https://www.w3.org/2022/wot/discovery/": "discovery-context.jsonld",
    "https://eclipse.dev/lmos/protocol/v1": "lmos-context-v1.jsonld",
}

#: Schema name -> file.
SCHEMA_FILES: dict[str, str] = {
    "td": "td-json-schema-validation-1.1.json",
    "discovery": "td-discovery-extensions-json-schema.json",
    "agent": "agent-description-schema.json",
    "directory-tm": "directory.tm.json",
}


@cache
def _read(name: str) -> str:
    return files(__name__).joinpath(name).read_text(encoding="utf-8")


def load(name: str) -> Any:
    """A fresh parsed copy of a shipped file (callers may mutate it)."""
    return json.loads(_read(name))
