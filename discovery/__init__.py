"""How agents and clients find each other: mDNS / DNS-SD on the LAN, and the directory at scale.

Follows the W3C WoT Discovery introduction by DNS-SD (section 6.3): agents announce
``_wot._tcp.local.`` with TXT ``td``, ``type`` and ``scheme``; directories also announce
``_directory._sub._wot._tcp.local.``.
"""

from wot_agents._fetch import fetch_description

from ._announce import Announcer
from ._bridge import DirectoryBridge
from ._browse import Browser, DiscoveredAgent, DiscoveryEvent
from ._directory import directory_url, find_directory
from ._dnssd import DIRECTORY_SUBTYPE, WOT_SERVICE, Announcement, Kind
from ._kubernetes import ServiceWatcher, service_td_url
from ._registration import Registration
from ._services import announcement, registration

__all__ = [
    "DIRECTORY_SUBTYPE",
    "WOT_SERVICE",
    "Announcement",
    "Announcer",
    "Browser",
    "DirectoryBridge",
    "DiscoveredAgent",
    "DiscoveryEvent",
    "Kind",
    "Registration",
    "ServiceWatcher",
    "announcement",
    "directory_url",
    "fetch_description",
    "find_directory",
    "registration",
    "service_td_url",
]
