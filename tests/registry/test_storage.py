"""What the directory stores and serves back is the submitted JSON, value for value."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

pytestmark = pytest.mark.usefixtures("store_kind")

TD = "application/td+json"


async def test_big_integers_round_trip_and_nan_is_refused(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    td = make_td(**{"lmos:weight": 2**70, "lmos:ratio": 0.1})
    body = f'{{"lmos:weight": {2**70}, "lmos:ratio": 0.1, ' + _rest(td)
    async with http.put(f"{directory}/things/{td['id']}", data=body, headers={"Content-Type": TD}) as r:
        assert r.status == 201, await r.text()
    async with http.get(f"{directory}/things/{td['id']}") as r:
        raw = await r.read()
    assert f'"lmos:weight":{2**70},'.encode() in raw  # not rounded through a float
    async with http.get(f"{directory}/things") as r:
        assert (await r.json())[0]["lmos:weight"] == 2**70
    nan = '{"lmos:ratio": NaN, ' + _rest(td)
    async with http.put(f"{directory}/things/{td['id']}", data=nan, headers={"Content-Type": TD}) as r:
        assert r.status == 400 and "NaN" in (await r.json(content_type=None))["detail"]


def _rest(td: dict[str, Any]) -> str:
    rest = {k: v for k, v in td.items() if k not in ("lmos:weight", "lmos:ratio")}
    return json.dumps(rest)[1:]
