"""The W3C WoT Thing Description Directory (WoT Discovery 7.3) of wot-agents.

``create_app(settings, store=...)`` gives the aiohttp application; :class:`Directory` is the
service behind it (the write path, reads, searches, events) for embedding without HTTP. A store
implements the protocols of ``_backend.py``: :class:`SQLiteStore` (the default) and
:class:`MemoryStore` come with the package.
"""

from ._app import DIRECTORY, create_app
from ._backend import (
    Change,
    ChangeFeed,
    ChangeJournal,
    ChangeKind,
    DocumentStore,
    IndexBacklog,
    JournalEntry,
    Record,
    Store,
)
from ._config import DirectorySettings
from ._directory import Directory
from ._memory import MemoryStore
from ._store import SQLiteStore

__all__ = [
    "DIRECTORY",
    "Change",
    "ChangeFeed",
    "ChangeJournal",
    "ChangeKind",
    "Directory",
    "DirectorySettings",
    "DocumentStore",
    "IndexBacklog",
    "JournalEntry",
    "MemoryStore",
    "Record",
    "SQLiteStore",
    "Store",
    "create_app",
]
