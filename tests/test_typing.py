"""The server is type-checked: `mypy deployments` is clean (the client is checked --strict in
tests/client/test_typing.py)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_is_clean_on_deployments():
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "deployments"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
