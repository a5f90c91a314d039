#!/usr/bin/env bash
# Sets up insid3 on a fresh machine: a virtual environment in .venv with the CPU runtime, the
# export stage, serving, benchmarks and tests. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# -qq: errors only (a machine's pip configuration can print a warning per package otherwise).
# The CPU build of torch first, pinned: a looser requirement would pull a multi-GB CUDA build.
.venv/bin/pip install -qq torch==2.13.0
# The CPU runtime (onnxruntime): never together with the gpu extra's onnxruntime-gpu.
.venv/bin/pip install -qq -e ".[cpu,openvino,export,serve,ray,bench,eval,test]"
# Debian's chromium for the web page's browser tests (Playwright drives it; it never downloads a
# browser). Only where apt and root are at hand; elsewhere those tests skip, saying why (in CI,
# CI=true, they fail instead).
if [ -x /usr/bin/chromium ]; then
    :
elif command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
        || echo "setup.sh: apt-get could not install chromium: the browser tests will skip" >&2
else
    echo "setup.sh: no apt-get or not root: chromium not installed, the browser tests will skip" >&2
fi
# Label Studio, for the ML backend's tests against a real one (tests/serve/test_label_studio.py),
# in its own virtual environment: its pins conflict with ours. sentry-sdk 3 rejects an option
# Label Studio passes. Where it cannot be installed those tests skip (in CI, CI=true, they fail).
[ -x .venv-ls/bin/python ] || "$PYTHON" -m venv .venv-ls
.venv-ls/bin/pip install -qq "label-studio>=1.23" "sentry-sdk<3" \
    || echo "setup.sh: Label Studio could not be installed in .venv-ls: its tests will skip" >&2
echo "insid3 is set up in $(pwd)/.venv"
