"""The HTTP binding (W3C HTTP binding template): server and client."""

from ._client import HttpClient
from ._server import HttpBinding

__all__ = ["HttpBinding", "HttpClient"]
