"""The layers keep to themselves: each is imported in a fresh interpreter and must not pull in
what it has no business with (a stray import of torch in the HTTP layer fails here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "deployments.http": ("torch", "ray", "transformers", "vllm", "onnxruntime"),
    "deployments.engine": ("ray", "fastapi", "torch", "transformers"),  # torch only once an engine is built
    "deployments.engine.errors": ("ray", "fastapi", "torch", "numpy"),
    "deployments.index": ("torch", "ray", "fastapi", "transformers"),
    "deployments.jobs": ("torch", "ray", "fastapi"),
    "deployments.config": ("torch", "ray", "fastapi"),
    "clients": ("torch", "ray", "fastapi", "deployments", "numpy", "transformers"),
    "clients.types": ("torch", "ray", "fastapi", "deployments", "numpy"),
}


def modules_after_import(module: str) -> set[str]:
    script = f"import {module}, json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return {name.split(".")[0] for name in json.loads(result.stdout.splitlines()[-1])}


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_layer_imports_only_what_it_may(module):
    loaded = modules_after_import(module)
    assert not loaded & set(FORBIDDEN[module]), f"importing {module} loads {sorted(loaded & set(FORBIDDEN[module]))}"


def test_the_check_catches_a_forbidden_import():
    # The same check on a module known to load torch must see it, or the test above proves nothing.
    assert "torch" in modules_after_import("deployments.engine.torch_backend")


def test_client_suite_runs_without_torch_or_ray():
    """The client tests (less the two live files, which need the real server) with torch and Ray
    made unimportable: the client must need neither."""
    script = (
        "import sys\n"
        "for name in ('torch', 'ray', 'transformers'): sys.modules[name] = None\n"
        "import pytest\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/client',\n"
        "    '--ignore=tests/client/test_live.py', '--ignore=tests/client/test_collections_live.py']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
