#!/usr/bin/env bash
# The GPU run behind docs/benchmarks.md's document-pool section (run on a lent H100/H200).
# Needs the Python wheels the GPU image lacks in .whl/ (grpcio 1.85.1, protobuf, grpcio
# health/reflection, pydantic, pydantic-settings and their small deps), carried with the tree.
# The st_encode baseline needs sentence-transformers too: put its wheel in .whl/ (with
# scikit-learn/scipy if the image lacks them); without it that row is skipped with a note.
#
# Rows (docs/results/document_pool.json): gateway per attention mode (padded, packed, and
# auto = packed or padded per batch) and layer-exit depth; baselines one batch of 32 at a
# time in the same dtype: raw_hf_sorted (AutoModel + SDPA on length-sorted batches, as
# sentence-transformers batches; every depth), st_encode (SentenceTransformer.encode on those
# batches) and raw_hf (corpus order, full depth: the earlier headline's baseline).
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
python3 -c "import sentence_transformers as s; print('sentence-transformers', s.__version__)" \
  2>/dev/null | tee -a "$OUT/gpu.txt" || echo "no sentence-transformers: st_encode is skipped" \
  | tee -a "$OUT/gpu.txt"
timeout "${BENCH_TIMEOUT:-540}" python3 -m aegis_lab.cli bench document --model aegis:full \
  --device cuda --docs "${DOCS:-4096}" --docs-per-request 16 --concurrency 4,16,64 \
  --long 8192,32768 --max-seconds "${MAX_SECONDS:-12}" \
  --attention "${ATTENTION:-padded,packed,auto}" --out-dir "$OUT/docs" 2>&1 \
  | grep -v "Loading weights\|Writing model" | tee "$OUT/bench.log"
