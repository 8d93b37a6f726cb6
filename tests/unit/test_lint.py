"""The source is clean by the linter pyproject.toml configures ([tool.ruff]): no finding in the package,
the benchmarks, the tests or the docs' scripts."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PATHS = ["specrep_cli", "benchmarks", "tests", "docs"]


def test_ruff_finds_nothing():
    if importlib.util.find_spec("ruff") is not None:   # the pip package, in this interpreter
        ruff = [sys.executable, "-m", "ruff"]
    elif shutil.which("ruff"):
        ruff = [shutil.which("ruff")]
    else:
        pytest.skip("ruff is not installed (it is in the test extra: pip install -e '.[test]')")
    result = subprocess.run([*ruff, "check", "--no-cache", "--output-format", "concise", *PATHS], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
