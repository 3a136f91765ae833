"""Importing the client imports neither Ray, torch nor the server; numpy and tqdm only on use."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_after(code: str) -> set[str]:
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return {name.split(".")[0] for name in json.loads(result.stdout.splitlines()[-1])}


def test_importing_clients_and_the_cli_stays_light():
    top = imported_after("import clients, clients.cli, clients.types\nfrom clients import Client, AsyncClient")
    assert "clients" in top and "httpx" in top and "pydantic" in top
    for heavy in ("ray", "torch", "deployments", "transformers", "fastapi", "numpy", "tqdm"):
        assert heavy not in top, heavy


def test_numpy_comes_with_the_first_vectors_only():
    top = imported_after("import clients\nfrom clients._split import decode_embeddings")
    assert "numpy" not in top
