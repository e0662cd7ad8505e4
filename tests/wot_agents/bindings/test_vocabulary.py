from __future__ import annotations

import json
import re

import pytest

from wot_agents import Form, TraceContext
from wot_agents.bindings._vocabulary import (
    decode_payload,
    encode_payload,
    form_ops,
    http_method,
    mqtt_control_packet,
    mqtt_qos,
)


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


def test_payloads_are_json_in_utf8_whatever_orjson_refuses() -> None:
    value = {"text": "Grüße 🌍", "n": [1, 2.5, True, None], "nested": {"a": ()}}
    assert decode_payload(encode_payload(value)) == {**value, "nested": {"a": []}}
    assert "Grüße 🌍".encode() in encode_payload(value)  # UTF-8, not \u escapes
    # beyond orjson: an integer past 64 bits and a key that is not a string, as json writes them
    assert json.loads(encode_payload({"big": 2**70, 1: "one"})) == {"big": 2**70, "1": "one"}
    assert encode_payload({"x": float("nan")}) == b'{"x":null}'  # JSON has no NaN
    with pytest.raises(TypeError):
        encode_payload({"x": object()})


def test_trace_ids_are_random_lower_case_hex_and_never_zero() -> None:
    traces = {TraceContext.new().child().traceparent for _ in range(200)}
    assert len(traces) == 200
    pattern = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-01$")
    assert all(pattern.match(trace) for trace in traces)
    assert all(TraceContext.parse(trace) is not None for trace in traces)
