"""The LMOS WebSocket binding (subprotocol ``lmosprotocol``): server and client."""

from ._client import WebSocketClient
from ._server import WebSocketBinding

__all__ = ["WebSocketBinding", "WebSocketClient"]
