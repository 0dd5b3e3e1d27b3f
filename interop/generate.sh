#!/usr/bin/env bash
# Regenerates interop/generated/ from interop/mls_client.proto (a verbatim copy of the
# MLS WG interop proto). The virtual proto path makes the generated modules import each
# other as `interop.generated.*`. Needs grpcio-tools (the `interop` extra).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m grpc_tools.protoc -Iinterop/generated=interop \
    --python_out=. --pyi_out=. --grpc_python_out=. interop/generated/mls_client.proto
# Generated code is exempt from our linters; its typed surface is the .pyi.
for f in interop/generated/mls_client_pb2.py interop/generated/mls_client_pb2.pyi \
         interop/generated/mls_client_pb2_grpc.py; do
    printf '# mypy: ignore-errors\n# ruff: noqa\n%s\n' "$(cat "$f")" > "$f"
done
