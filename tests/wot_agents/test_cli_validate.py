from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, W3C_EXAMPLES
from wot_agents.cli import main


def test_valid_files_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(REPO / "examples" / "weather-agent.json"), *map(str, W3C_EXAMPLES)]
    assert main(["validate", *files]) == 0
    out = capsys.readouterr().out
    assert out.count(": valid") == len(files)


def test_invalid_file_prints_pointer_lines_and_exits_one(
    tmp_path: Path, weather_agent: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    weather_agent["title"] = 5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(weather_agent))
    good = REPO / "examples" / "weather-agent.json"
    assert main(["validate", "--quiet", str(good), str(bad)]) == 1
    assert capsys.readouterr().out.splitlines() == [f'{bad}: /title: 5 is not of type "string"']


def test_broken_json_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"title": ')
    assert main(["validate", str(broken), str(tmp_path / "missing.json")]) == 1
    captured = capsys.readouterr()
    assert f"{broken}: /: not valid JSON" in captured.out
    assert "missing.json: cannot read" in captured.err


def test_console_script_reads_stdin() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wot_agents.cli", "validate", "-"],
        input=b'{"title": "x"}',
        capture_output=True,
        check=False,
    )
    assert result.returncode == 1
    assert b'-: /: "@context" is a required property' in result.stdout


def test_usage_error_exits_two() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wot_agents.cli", "validate"], capture_output=True, check=False
    )
    assert result.returncode == 2
