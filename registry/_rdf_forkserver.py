"""Imported by the SPARQL index's forkserver only (``set_forkserver_preload``), never by the server.

The forkserver starts each index process as a fork of itself, with the worker's modules already
imported (this import brings them in). Like the worker, it leaves SIGTERM to the server:
``kill -TERM -PGID`` or a container stop reaches every process of the group, and a forkserver
dead before the server's shutdown made it fail to start, or replace, the index. It still ends
with the server: when the server's end of its pipe closes, whatever killed it.
"""

from __future__ import annotations

import signal

from . import _rdf_worker  # noqa: F401 (preloaded: each index process starts with it imported)

__all__: list[str] = []

signal.signal(signal.SIGTERM, signal.SIG_IGN)
