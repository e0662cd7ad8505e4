"""The W3C WoT Thing Description Directory (WoT Discovery 7.3) of wot-agents.

``create_app(settings)`` gives the aiohttp application; :class:`Directory` is the state behind
it (store, indexes, events) for embedding without HTTP.
"""

from ._app import DIRECTORY, Directory, create_app
from ._config import DirectorySettings
from ._store import Change, Record, SQLiteStore, Store

__all__ = [
    "DIRECTORY",
    "Change",
    "Directory",
    "DirectorySettings",
    "Record",
    "SQLiteStore",
    "Store",
    "create_app",
]
