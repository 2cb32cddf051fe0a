#!/usr/bin/env bash
# Install erp-chatbot in editable mode with the given extras (default: demo).
# Usage: ./scripts/install.sh [EXTRAS]     e.g. ./scripts/install.sh demo,dev
set -euo pipefail
cd "$(dirname "$0")/.."

# llama.cpp (the demo's LLM runtime) compiles for this CPU. On some virtual machines that report
# Intel AMX, its AMX kernels stop the process at the first answer ("Illegal instruction"); there it
# is built without AMX (AVX-512 and VNNI stay). A CMAKE_ARGS of your own wins. pip reuses a wheel
# it built before: after an "Illegal instruction", run `pip cache remove llama_cpp_python` and
# `pip uninstall -y llama-cpp-python` first.
if [ -z "${CMAKE_ARGS:-}" ] && grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then
  no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  export CMAKE_ARGS="-DCMAKE_C_FLAGS='${no_amx}' -DCMAKE_CXX_FLAGS='${no_amx}'"
fi
python3 -m pip install --quiet --disable-pip-version-check -e ".[${1:-demo}]"
