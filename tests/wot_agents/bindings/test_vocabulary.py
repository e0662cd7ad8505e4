from __future__ import annotations

import pytest

from wot_agents import Form
from wot_agents.bindings._vocabulary import form_ops, http_method, mqtt_control_packet, mqtt_qos


def test_a_form_without_op_takes_the_td_default_of_its_kind() -> None:
    form = Form(href="http://x/p")
    assert form_ops(form, "property") == ["readproperty", "writeproperty"]
    assert form_ops(form, "action") == ["invokeaction"]
    assert form_ops(form, "event") == ["subscribeevent", "unsubscribeevent"]
    assert form_ops(Form(href="http://x", op="readproperty"), "property") == ["readproperty"]


def test_http_method_defaults_follow_the_binding_template_and_yield_to_htv() -> None:
    form = Form(href="http://x/p")
    assert [http_method(form, op) for op in ("readproperty", "writeproperty", "invokeaction")] == [
        "GET",
        "PUT",
        "POST",
    ]
    assert (
        http_method(Form.model_validate({"href": "http://x", "htv:methodName": "patch"}), "writeproperty")
        == "PATCH"
    )
    with pytest.raises(ValueError, match="no default method"):
        http_method(form, "subscribeallevents")


def test_mqtt_terms() -> None:
    form = Form(href="mqtt://b")
    assert mqtt_control_packet(form, "readproperty") == "mqv:subscribe"
    assert mqtt_control_packet(form, "invokeaction") == "mqv:publish"
    assert mqtt_control_packet(
        Form.model_validate({"href": "mqtt://b", "mqv:controlPacket": "subscribe"}), "x"
    ) == ("mqv:subscribe")
    assert mqtt_qos(form) == 0
    assert mqtt_qos(Form.model_validate({"href": "mqtt://b", "mqv:qos": "2"})) == 2
    with pytest.raises(ValueError):
        mqtt_qos(Form.model_validate({"href": "mqtt://b", "mqv:qos": "3"}))
