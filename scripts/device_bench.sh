#!/usr/bin/env bash
# The GPU run behind docs/benchmarks.md's document-pool section (run on a lent H100/H200).
# Needs the Python wheels the GPU image lacks in .whl/ (grpcio 1.85.1, protobuf, grpcio
# health/reflection, pydantic, pydantic-settings and their small deps), carried with the tree.
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 AEGIS_CACHE_DIR=/tmp/aegis-cache
OUT=${OUT:-/tmp/out}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD/services:$PWD/clients/python:/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, grpc, google.protobuf as p; \
print('torch', torch.__version__, 'transformers', transformers.__version__, 'grpc', grpc.__version__, 'protobuf', p.__version__)" \
  | tee -a "$OUT/gpu.txt"
timeout "${BENCH_TIMEOUT:-420}" python3 -m aegis_lab.cli bench document --model aegis:full \
  --device cuda --docs "${DOCS:-4096}" --docs-per-request 16 --concurrency 4,16,64 \
  --long 8192,32768 --max-seconds "${MAX_SECONDS:-20}" --attention padded,packed \
  --out-dir "$OUT/docs" 2>&1 \
  | grep -v "Loading weights\|Writing model" | tee "$OUT/bench.log"
