"""Browser pages shipped as package data: the one way wot-agents' servers serve them.

The directory's explorer (``registry/explorer/``) and the runtime's chat page
(``runtime/chat/``) are plain HTML, CSS and JavaScript modules: no build step, no CDN, nothing
fetched from elsewhere, so they work offline and behind any firewall. They share the files of
``wot_agents/web/`` (the base stylesheet and the JavaScript helpers); a page's own folder wins
when both have a file of the same name.

Only the files found at start-up are served, by exact name (no path is ever joined from a
request, so ``..`` cannot escape), with a strict Content-Security-Policy: scripts, styles and
connections from the page's own origin only, no inline script, no framing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

from aiohttp import web

from ._problem import HTTPProblem

__all__ = ["PAGE_HEADERS", "PageFiles", "prefers_html", "shared_pages"]

_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".txt": "text/plain",
}

#: Sent with every page file: nothing runs or loads from anywhere but the page's own origin.
PAGE_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load (the ETag makes that a 304): an upgrade shows at once.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class _File:
    body: bytes
    content_type: str
    etag: str


class PageFiles:
    """The files of one page, read once from package folders (earlier folders win)."""

    def __init__(self, folders: Iterable[Traversable]) -> None:
        self._files: dict[str, _File] = {}
        for folder in folders:
            for entry in folder.iterdir():
                suffix = "." + entry.name.rpartition(".")[2]
                if entry.is_file() and suffix in _TYPES and entry.name not in self._files:
                    body = entry.read_bytes()
                    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
                    self._files[entry.name] = _File(body, _TYPES[suffix], etag)

    def __contains__(self, name: str) -> bool:
        return name in self._files

    @property
    def names(self) -> list[str]:
        return sorted(self._files)

    def response(self, request: web.Request, name: str) -> web.Response:
        """The file ``name`` (404 problem when there is none); 304 when the client has it already."""
        found = self._files.get(name)
        if found is None:
            raise HTTPProblem(404, f"no page file {name!r}")
        headers = {**PAGE_HEADERS, "ETag": found.etag}
        if request.headers.get("If-None-Match") == found.etag:
            return web.Response(status=304, headers=headers)
        charset = "utf-8" if found.content_type.startswith("text/") else None
        return web.Response(
            body=found.body, content_type=found.content_type, charset=charset, headers=headers
        )


def shared_pages(package: str, folder: str) -> PageFiles:
    """The files of ``package``'s ``folder``, then the shared ones of ``wot_agents/web/``."""
    return PageFiles([files(package).joinpath(folder), files("wot_agents").joinpath("web")])


def _quality(part: str) -> tuple[str, float]:
    media, *params = (p.strip() for p in part.split(";"))
    q = 1.0
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
    return media.lower(), q


def prefers_html(accept: str, *others: str) -> bool:
    """Does an ``Accept`` header ask for HTML (named, not by ``*/*``) over each of ``others``?

    A browser navigating sends ``text/html,...,*/*;q=0.8``: it gets the page. WoT clients send
    ``application/td+json``, ``application/json``, ``*/*`` or nothing: they keep the JSON.
    """
    ranked = dict(_quality(part) for part in accept.split(",") if part.strip())
    html = ranked.get("text/html", 0.0)
    return html > 0 and all(html >= ranked.get(other, 0.0) for other in others)
