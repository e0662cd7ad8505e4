"""How agents and clients find each other: mDNS / DNS-SD on the LAN, and the directory at scale.

Follows the W3C WoT Discovery introduction by DNS-SD (section 6.3): agents announce
``_wot._tcp.local.`` with TXT ``td``, ``type`` and ``scheme``; directories also announce
``_directory._sub._wot._tcp.local.``.
"""

from ._announce import Announcer
from ._browse import Browser, DiscoveredAgent, DiscoveryEvent
from ._directory import DirectoryBridge, directory_url, find_directory
from ._dnssd import DIRECTORY_SUBTYPE, WOT_SERVICE, Kind, Service
from ._fetch import fetch_description
from ._registration import Registration

__all__ = [
    "DIRECTORY_SUBTYPE",
    "WOT_SERVICE",
    "Announcer",
    "Browser",
    "DirectoryBridge",
    "DiscoveredAgent",
    "DiscoveryEvent",
    "Kind",
    "Registration",
    "Service",
    "directory_url",
    "fetch_description",
    "find_directory",
]
