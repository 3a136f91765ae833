#!/usr/bin/env bash
# GPU benchmark of the 0.6B models, under 8 minutes on one H200 (see bench/gpu.py).
#
#   bash bench/gpu.sh                   # tables on stdout, plus $OUT/gpu.md and $OUT/gpu.json
#   bash bench/gpu.sh --skip http       # any bench/gpu.py option passes through
#
# Needs torch (CUDA) and transformers; the vLLM rows need the `gpu` extra, the HTTP rows Ray
# Serve and the project's dependencies. The random 0.6B folders (real shapes, bf16 on disk)
# are written once to $MODELS and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-${TMPDIR:-/tmp}/qwen3-search-gpu}
MODELS=${MODELS:-${TMPDIR:-/tmp}/qwen3-search-bench/0.6B-bf16}
mkdir -p "$OUT_DIR"
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
# The real Qwen3 tokenizer gives the real vocabulary (and token counts): ../shared or ./shared.
for dir in ../shared/qwen3-tokenizer shared/qwen3-tokenizer; do
  if [ -z "${QWEN3_TOKENIZER:-}" ] && [ -f "$dir/tokenizer.json" ]; then export QWEN3_TOKENIZER="$PWD/$dir"; fi
done
started=$SECONDS
for kind in embedding reranker; do
  if [ ! -f "$MODELS/$kind/config.json" ]; then
    python -m deployments.engine.random_model --kind "$kind" --size 0.6B --dtype bfloat16 "$MODELS/$kind"
  fi
done
echo "models ready in $((SECONDS - started)) s"
# The whole run stays inside 8 minutes; a section cut short still leaves the tables printed before it.
timeout --signal=INT $((470 - (SECONDS - started))) \
  python bench/gpu.py --models "$MODELS" --json "$OUT_DIR/gpu.json" "$@" | tee "$OUT_DIR/gpu.md"
