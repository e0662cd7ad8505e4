"""Accept-Language negotiation of a TD's default language (WoT Discovery 7.3.2, TD 1.1 6.3.2).

A directory may answer a TD in another default language when the TD carries the translations
itself (``titles`` / ``descriptions`` MultiLanguage maps): ``title`` and ``description`` take the
negotiated language's text and an ``@language`` member in ``@context`` says which language that
is, as TD 1.1 requires for a negotiated TD. Nothing is translated; a TD without a matching
language is answered unchanged.
"""

from __future__ import annotations

from typing import Any

__all__ = ["localize", "parse_accept_language"]

_TEXTS = (("titles", "title"), ("descriptions", "description"))


def parse_accept_language(header: str) -> list[str]:
    """The language ranges of an ``Accept-Language`` header, most wanted first (RFC 9110 12.5.4).

    Ranges with ``q=0`` are dropped; ties keep the header's order.
    """
    ranges: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")):
        name, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if name and quality > 0:
            ranges.append((-quality, position, name.lower()))
    return [name for _, _, name in sorted(ranges)]


def _languages(node: Any, found: dict[str, str]) -> None:
    """Every language tag used in the MultiLanguage maps of ``node``, lower case -> as written."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("titles", "descriptions") and isinstance(value, dict):
                for tag in value:
                    found.setdefault(tag.lower(), tag)
            else:
                _languages(value, found)
    elif isinstance(node, list):
        for item in node:
            _languages(item, found)


def _choose(wanted: list[str], available: dict[str, str]) -> str | None:
    """RFC 4647 lookup: a range matches its tag exactly, else its shorter prefixes do (de-CH -> de)."""
    for language_range in wanted:
        if language_range == "*":
            return None  # anything goes: the TD's own default language is as good as any
        candidate = language_range
        while candidate:
            if candidate in available:
                return available[candidate]
            candidate = candidate.rpartition("-")[0]
    return None


def _apply(node: Any, tag: str) -> None:
    if isinstance(node, dict):
        for plural, singular in _TEXTS:
            texts = node.get(plural)
            if isinstance(texts, dict) and isinstance(texts.get(tag), str):
                node[singular] = texts[tag]
        for key, value in node.items():
            if key not in ("titles", "descriptions"):
                _apply(value, tag)
    elif isinstance(node, list):
        for item in node:
            _apply(item, tag)


def _with_language(context: Any, tag: str) -> list[Any]:
    entries = list(context) if isinstance(context, list) else [context]
    # TD 1.1 recommends a single Map in @context: put @language into the existing one if any.
    for index, entry in enumerate(entries):
        if isinstance(entry, dict):
            entries[index] = {**entry, "@language": tag}
            return entries
    return [*entries, {"@language": tag}]


def localize(td: dict[str, Any], accept_language: str) -> tuple[str, dict[str, Any]] | None:
    """``td`` with the default language negotiated from the header, and that language tag.

    None when no language of the TD's MultiLanguage maps matches (the TD is then served as is).
    ``td`` is modified in place.
    """
    available: dict[str, str] = {}
    _languages(td, available)
    tag = _choose(parse_accept_language(accept_language), available)
    if tag is None:
        return None
    _apply(td, tag)
    td["@context"] = _with_language(td.get("@context"), tag)
    return tag, td
