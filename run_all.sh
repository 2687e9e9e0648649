#!/usr/bin/env bash
# Run the workbook's notebooks (01..07) in order through papermill into a fresh run folder outputs/<profile>-<stamp>-<git7>/.
#
#   ./run_all.sh [--profile NAME] [--only 02,03] [-p key value ...] [--resume RUN_ID] [--dry-run]
#
#   --profile NAME    params profile (default: default = this CPU; tiny = tests; paper = GPU) or a YAML path
#   --only LIST       comma-separated notebook numbers to run (e.g. 01,02); the others are skipped
#   -p KEY VALUE      a dotted config override (value parsed as YAML), e.g. -p head.lr 0.02 -p seeds '[0]'
#   --resume RUN_ID   continue the run outputs/RUN_ID from its first unfinished notebook (same profile, overrides, --only)
#   --dry-run         validate profile + overrides, print hub access, the notebooks that would run and, on the finetune
#                     tier, every fine-tune's plan (updates, pairs per update, checkpoints, GPU-hours); write nothing
#
# The terminal shows each notebook, its current step and feature-extraction progress (morelib.core.status, also in
# <run>/status.log); INFO logs go to <run>/<notebook>/log.txt. The run folder's size is printed at the end.
#
# Overrides reach each notebook as ONE string parameter `overrides`, validated there by load_config (papermill alone
# would only warn about an unknown parameter). A notebook that fails stops the run: the script exits non-zero and
# names the executed notebook that holds the traceback. Completed notebooks are marked with <run>/<notebook>/.done.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(pwd)"
source scripts/setup.sh

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

PROFILE="default"
ONLY=""
RESUME=""
DRY=""
PAIRS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="${2:?--profile needs a name}"; shift 2 ;;
    --only) ONLY="${2:?--only needs a list like 01,02}"; shift 2 ;;
    --resume) RESUME="${2:?--resume needs a run id}"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -p) PAIRS+=("${2:?-p needs KEY VALUE}=${3:?-p needs KEY VALUE}"); shift 3 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_all.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

PY="$ROOT/.venv/bin/python"
NOTEBOOKS=(notebooks/0[0-9]_*.ipynb)
VALID="$(for NB in "${NOTEBOOKS[@]}"; do B="$(basename "$NB")"; printf '%s ' "${B:0:2}"; done)"
if [ -n "$ONLY" ]; then
  for NUM in ${ONLY//,/ }; do
    if [[ " $VALID" != *" $NUM "* ]]; then
      echo "run_all.sh: --only $ONLY: no notebook $NUM; valid notebooks: ${VALID% }" >&2
      exit 2
    fi
  done
fi
if [ -n "$RESUME" ]; then
  RUN="$("$PY" -c 'import sys; from morelib.core.runs import resume_dir; print(resume_dir(sys.argv[1]))' "$RESUME")"
  PROFILE="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["profile"])' "$RUN/run_all.json")"
  OVERRIDES="$("$PY" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["overrides"]))' "$RUN/run_all.json")"
  [ ${#PAIRS[@]} -eq 0 ] || { echo "run_all.sh: --resume reuses the run's overrides; drop -p" >&2; exit 2; }
  [ -z "$ONLY" ] || { echo "run_all.sh: --resume reuses the run's --only; drop --only" >&2; exit 2; }
  ONLY="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("only", ""))' "$RUN/run_all.json")"
else
  OVERRIDES="$("$PY" -m morelib.core.runs overrides ${PAIRS[@]+"${PAIRS[@]}"})"
fi
hub_mode "$PROFILE" "$OVERRIDES"  # also validates profile + overrides (load_config) before anything runs
if [ -n "$DRY" ]; then
  echo "[run_all] dry run: profile $PROFILE, overrides $OVERRIDES, notebooks ${ONLY:-${VALID% }}; nothing written"
  TIER="$("$PY" -c 'import sys; from morelib.core.config import load_config, parse_overrides; print(load_config(sys.argv[1], parse_overrides(sys.argv[2])).train.tier)' "$PROFILE" "$OVERRIDES")"
  if [ "$TIER" = finetune ]; then  # the notebooks fine-tune in their own process: one process per fine-tune
    "$PY" -m morelib.finetune --plan --profile "$PROFILE" --overrides "$OVERRIDES" --world-size 1
    echo "[run_all] the same fine-tunes on W GPUs: python -m morelib.finetune --plan --profile $PROFILE --world-size W"
  fi
  exit 0
fi
[ -n "$RESUME" ] || RUN="$("$PY" -m morelib.core.runs create "$PROFILE" "$OVERRIDES" "$ONLY")"  # a fresh folder, never an existing one
echo "[run_all] run folder: $RUN"
echo "[run_all] profile: $PROFILE  overrides: $OVERRIDES${ONLY:+  only: $ONLY}"

declare -a TIMES=()
for NB in "${NOTEBOOKS[@]}"; do
  NAME="$(basename "$NB" .ipynb)"
  NUM="${NAME:0:2}"
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$NUM,"* ]]; then
    continue
  fi
  if [ -f "$RUN/$NAME/.done" ]; then
    echo "[run_all] $NAME already complete in this run; skipped"
    continue
  fi
  mkdir -p "$RUN/$NAME"
  OUT="$RUN/$NAME/$NAME.ipynb"
  echo "[run_all] $NAME → $OUT"
  START=$(date +%s)
  if ! "$PY" -m papermill "$NB" "$OUT" --cwd notebooks --log-level WARNING \
      -r profile "$PROFILE" -r run_dir "$RUN" -r overrides "$OVERRIDES"; then
    echo "[run_all] FAILED: $NAME — the traceback is in $OUT" >&2
    echo "[run_all] fix it, then continue with: ./run_all.sh --resume $(basename "$RUN")" >&2
    exit 1
  fi
  touch "$RUN/$NAME/.done"
  TIMES+=("$NAME $(( $(date +%s) - START ))s")
done

echo "[run_all] done: $RUN ($(du -sh "$RUN" | cut -f1) on disk)"
[ ${#TIMES[@]} -eq 0 ] || printf '[run_all]   %s\n' "${TIMES[@]}"
