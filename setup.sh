#!/usr/bin/env bash
# Sets up insid3 on a fresh machine: a virtual environment in .venv with the CPU runtime, the
# export stage, serving, benchmarks and tests. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# The CPU build of torch first, pinned: a looser requirement would pull a multi-GB CUDA build.
.venv/bin/pip install -q torch==2.13.0
# The CPU runtime (onnxruntime): never together with the gpu extra's onnxruntime-gpu.
.venv/bin/pip install -q -e ".[cpu,openvino,export,serve,ray,bench,test]"
echo "insid3 is set up in $(pwd)/.venv"
