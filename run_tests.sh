#!/usr/bin/env bash
# The test command: builds .venv if needed, then runs the whole suite (pass pytest options through, e.g. -k solver).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"  # the suite never touches the hub (tests that run run_all.sh reset it)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v chromium >/dev/null && [ -z "${MORE_NO_APT:-}" ]; then
  echo "[tests] installing Debian chromium for the browser test"
  (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }) \
    || echo "[tests] chromium could not be installed; the browser test will be skipped"
fi
echo "[tests] ruff: format check and lint (line length 120; pyproject.toml)"
ruff format --check --quiet . && ruff check --quiet .
# Two workers (pytest-xdist), each running whole test files, one thread each: most of the suite's time is notebooks
# and subprocesses at one thread, so the 2-core CI machine runs two side by side. MORE_TEST_WORKERS=1: one process.
WORKERS="${MORE_TEST_WORKERS:-2}"
if [ "$WORKERS" -gt 1 ]; then
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  exec python -m pytest -q -n "$WORKERS" --dist loadfile "$@"
fi
exec python -m pytest -q "$@"
