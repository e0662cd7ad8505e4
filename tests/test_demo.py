"""The README's demo (``make demo``) runs end to end: directory, three agents, router."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO


def test_demo_routes_each_sample_question_to_its_agent_over_its_binding() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--once", "--memory", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "router: 3 agents from the directory" in out
    assert "-> Weather (score" in out and "over http): Expect light rain" in out
    assert "-> Billing (score" in out and "over ws): Your bill is 42.50 EUR" in out
    assert "-> Translator (score" in out and "In German: 'Danke schön'" in out
    assert "What is the capital of Australia?\n    -> no agent fits" in out
