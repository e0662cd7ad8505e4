"""Protocol bindings: serve an agent over HTTP, WebSocket and MQTT, and reach any TD's forms.

Each protocol is a subpackage with a server half and a client half; they share the forms
vocabulary (:mod:`._vocabulary`), the security schemes (:mod:`._security`) and the typed
interfaces (:mod:`._interfaces`). ``serve()`` runs several servers as one unit.
"""

from ._interfaces import (
    BindingServer,
    ClientBinding,
    ExposedAction,
    ExposedAgent,
    ExposedEvent,
    ExposedProperty,
    Interaction,
    ServeContext,
    Stream,
)
from ._mtls import CertificateAuth
from ._security import (
    ApiKey,
    ApiKeyAuth,
    BasicAuth,
    BasicCredentials,
    BearerAuth,
    BearerToken,
    Credential,
    Credentials,
    ServerSecurity,
)
from ._serve import RunningAgent, Service, Serving, serve, slugify
from ._vocabulary import (
    CONTENT_TYPE,
    DEFAULT_OPS,
    HTTP_METHODS,
    LMOS_SUBPROTOCOL,
    MQTT_CONTROL_PACKETS,
    SSE_SUBPROTOCOL,
    Kind,
    Op,
    form_ops,
)
from ._web import WebServer

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_OPS",
    "HTTP_METHODS",
    "LMOS_SUBPROTOCOL",
    "MQTT_CONTROL_PACKETS",
    "SSE_SUBPROTOCOL",
    "ApiKey",
    "ApiKeyAuth",
    "BasicAuth",
    "BasicCredentials",
    "BearerAuth",
    "BearerToken",
    "BindingServer",
    "CertificateAuth",
    "ClientBinding",
    "Credential",
    "Credentials",
    "ExposedAction",
    "ExposedAgent",
    "ExposedEvent",
    "ExposedProperty",
    "Interaction",
    "Kind",
    "Op",
    "RunningAgent",
    "ServeContext",
    "ServerSecurity",
    "Service",
    "Serving",
    "Stream",
    "WebServer",
    "form_ops",
    "serve",
    "slugify",
]
