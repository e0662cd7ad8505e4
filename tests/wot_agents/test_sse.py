"""The one home of Server-Sent Events: the writer against the parser, and the parser against the standard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from wot_agents import EVENT_STREAM, EventStream, EventStreamParser, ServerSentEvent, parse_events, serve_app
from wot_agents._sse import encode_comment, encode_event


def parse(*chunks: bytes) -> list[ServerSentEvent]:
    parser = EventStreamParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_what_is_written_parses_back() -> None:
    wire = encode_event({"a": "ü\nx"}, event="thing_created", id="7") + encode_event("two\nlines", retry=500)
    first, second = parse(wire)
    assert (first.event, first.id, first.json()) == ("thing_created", "7", {"a": "ü\nx"})
    assert (second.event, second.data, second.id, second.retry) == ("message", "two\nlines", "7", 500)


def test_every_line_ending_and_any_chunking() -> None:
    wire = "\ufeffdata: a\r\ndata:b\rid: 1\n\r: comment\nevent: e\ndata\n\n".encode()
    whole = parse(wire)
    assert [(e.data, e.id) for e in whole] == [("a\nb", "1"), ("", "1")]
    assert whole[1].event == "e"
    assert parse(*(wire[i : i + 1] for i in range(len(wire)))) == whole  # byte by byte, CR LF split


def test_the_standards_corner_cases() -> None:
    events = parse(b"id\x00x: no\nid: a\x00b\nretry: 1x\nunknown: y\ndata: only\n\n", b"event: lone\n\n")
    assert len(events) == 1  # an event without data is not dispatched
    assert events[0].id is None and events[0].retry is None  # id with NUL and a bad retry are ignored


def test_an_event_over_the_bound_is_refused() -> None:
    parser = EventStreamParser(max_event=100)
    with pytest.raises(ValueError, match="over 100"):
        for _ in range(10):
            parser.feed(b"data: " + b"x" * 20 + b"\n")


def test_fields_that_cannot_be_written_are_refused() -> None:
    with pytest.raises(ValueError):
        encode_event("x", id="1\n2")
    with pytest.raises(ValueError):
        encode_event("x", event="a\rb")
    assert encode_comment("open") == b": open\n\n"


@pytest.fixture
async def stream_url() -> AsyncIterator[tuple[str, list[EventStream]]]:
    streams: list[EventStream] = []

    async def numbers() -> AsyncIterator[object]:
        yield 1
        yield ServerSentEvent("two", event="named", id="2")
        await asyncio.Event().wait()  # idle: keep-alives from here

    async def handler(request: web.Request) -> web.StreamResponse:
        stream = EventStream(request, keepalive=0.05)
        streams.append(stream)
        await stream.open()
        await stream.send({"resumed_after": stream.last_event_id})
        await stream.pipe(numbers())
        return stream.response

    app = web.Application()
    app.router.add_get("/events", handler)
    async with serve_app(app) as url:
        yield url + "/events", streams


async def test_a_stream_end_to_end(stream_url: tuple[str, list[EventStream]]) -> None:
    url, streams = stream_url
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers={"Last-Event-ID": "41"}) as response:
            assert response.content_type == EVENT_STREAM
            raw = b""
            while raw.count(b": keepalive") < 2:  # the source is idle: keep-alives flow
                raw += await response.content.readany()
            events = parse(raw)
            assert [e.data for e in events] == ['{"resumed_after": "41"}', "1", "two"]
            assert events[2].event == "named" and events[2].id == "2"
            streams[0].close()  # e.g. at server shutdown: the stream ends, the client sees its end
            rest = [event async for event in parse_events(response.content.iter_any())]
            assert rest == []
            assert response.content.at_eof()
