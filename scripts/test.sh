#!/usr/bin/env bash
# Install erp-chatbot with its demo models and test tools, make sure Redis answers, run the tests.
# Usage: ./scripts/test.sh [pytest arguments]     e.g. ./scripts/test.sh -m 'not slow'
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install.sh demo,dev

# The fault tests start, freeze and kill a redis-server of their own, so the binary is needed too.
if ! command -v redis-server >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
# The playground test drives Debian's Chromium through Playwright (no browser download); a Korean
# font lets its screenshot show the Korean question and answer.
if ! command -v chromium >/dev/null 2>&1 || ! dpkg -s fonts-nanum >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq chromium fonts-nanum >/dev/null
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --maxmemory-policy allkeys-lru
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "Redis did not start" >&2; exit 1; }
fi

# Test modules are spread over workers (pytest-xdist): a worker per core while each has ~10 GB of
# memory (tests/conftest.py), each with its own Redis database and its own cores; the longest modules
# first, in the order tests/conftest.py gives. Pass -n 0 to run them in one process.
exec python3 -m pytest -n auto --dist loadfile --no-loadscope-reorder "$@"
