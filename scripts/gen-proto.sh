#!/usr/bin/env bash
# Regenerates the committed protobuf code of the wire schema:
#   src/edgechain/wire/edgechain_pb2.py   (protoc --python_out)
#   src/edgechain/wire/edgechain_pb2.pyi  (mypy-protobuf, typed stubs for mypy --strict)
# from src/edgechain/wire/edgechain.proto, with the protoc bundled in grpcio-tools and
# the mypy-protobuf plugin of the project virtualenv (pinned by .venv, so the output is
# reproducible; tests/wire/test_generated.py regenerates into a temp dir and diffs).
#
# Usage: scripts/gen-proto.sh [OUT_DIR]   (default: src/edgechain/wire)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
plugin="$(dirname "$python")/protoc-gen-mypy"
proto_dir="$root/src/edgechain/wire"
out="${1:-$proto_dir}"
mkdir -p "$out"
"$python" -m grpc_tools.protoc \
  --proto_path="$proto_dir" \
  --plugin=protoc-gen-mypy="$plugin" \
  --python_out="$out" \
  --mypy_out="$out" \
  "$proto_dir/edgechain.proto"
