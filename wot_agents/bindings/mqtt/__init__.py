"""The MQTT binding (W3C MQTT binding template, MQTT 5): server and client. Needs ``wot-agents[mqtt]``."""

from ._broker import LocalBroker, find_mosquitto
from ._client import MqttClient
from ._server import MqttServer
from ._topics import TD_TOPIC_PREFIX, Broker

__all__ = ["TD_TOPIC_PREFIX", "Broker", "LocalBroker", "MqttClient", "MqttServer", "find_mosquitto"]
