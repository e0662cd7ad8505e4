"""The code stays lint-clean (ruff), type-clean (mypy --strict over the packages and examples/) and
layered (import-linter: no package imports one above it; the contract is in pyproject.toml).

These run the same checks as ``make lint``, so CI refuses a change that breaks any of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("wot_agents", "td_schemas", "registry", "discovery", "router", "runtime")
#: import-linter's command (``lint-imports``), run by the interpreter running the tests.
LINT_IMPORTS = "from importlinter.cli import lint_imports_command as run; run()"


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return _python("-m", *command)


def _python(*arguments: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}  # the tree under test, not an installed copy
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_finds_nothing() -> None:
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_checks_every_package_and_the_examples() -> None:
    """What the README teaches is typed like the packages: mypy's configured files cover both."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert set(config["files"]) == {*PACKAGES, "examples"}


def test_no_package_imports_one_above_it() -> None:
    result = _python("-c", LINT_IMPORTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_layering_contract_refuses_an_upward_import(tmp_path: Path) -> None:
    """The contract is not vacuous: the SDK importing the registry, even lazily, breaks it."""
    for package in PACKAGES:
        if (REPO / package).is_dir():
            shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    consumer = tmp_path / "wot_agents" / "_consumer.py"
    consumer.write_text(consumer.read_text() + "\n\ndef _upward() -> None:\n    import registry  # noqa\n")
    result = _python("-c", LINT_IMPORTS, cwd=tmp_path)
    assert result.returncode != 0
    assert "wot_agents._consumer -> registry" in result.stdout, result.stdout
