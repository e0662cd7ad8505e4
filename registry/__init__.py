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
from ._channel_operator import CHANNEL_ROLLOUTS, CHANNEL_ROUTINGS, CHANNELS, ChannelOperator
from ._cluster import LEADER_LEASE, ClusterDuties
from ._config import DirectorySettings
from ._directory import Directory
from ._kubernetes import THING_DESCRIPTIONS, KubernetesStore
from ._memory import MemoryStore
from ._store import SQLiteStore

__all__ = [
    "CHANNELS",
    "CHANNEL_ROLLOUTS",
    "CHANNEL_ROUTINGS",
    "DIRECTORY",
    "LEADER_LEASE",
    "THING_DESCRIPTIONS",
    "Change",
    "ChangeFeed",
    "ChangeJournal",
    "ChangeKind",
    "ChannelOperator",
    "ClusterDuties",
    "Directory",
    "DirectorySettings",
    "DocumentStore",
    "IndexBacklog",
    "JournalEntry",
    "KubernetesStore",
    "MemoryStore",
    "Record",
    "SQLiteStore",
    "Store",
    "create_app",
]
