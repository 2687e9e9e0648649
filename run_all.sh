#!/usr/bin/env bash
# Run the workbook's notebooks (01..07) in order through papermill into a fresh run folder outputs/<profile>-<stamp>-<git7>/.
#
#   ./run_all.sh [--profile NAME] [--only 02,03] [-p key value ...] [--resume RUN] [--dry-run]
#
#   --profile NAME    params profile (default: default = this CPU; tiny = tests; paper = GPU) or a YAML path
#   --only LIST       comma-separated notebook numbers to run (e.g. 01,02); the others are skipped
#   -p KEY VALUE      a dotted config override (value parsed as YAML), e.g. -p head.lr 0.02 -p seeds '[0]'
#   --resume RUN      continue outputs/RUN (or the run folder at path RUN) from its first unfinished notebook, on the
#                     run's saved config.yaml and --only (a profile edited since is named, not used)
#   --dry-run         validate profile + overrides and the data folder, print what would run and, on the finetune
#                     tier, every fine-tune's plan (updates, pairs per update, checkpoints, GPU-hours); write nothing
#
# Relative paths (a profile file, MORE_DATA_DIR, -p output_root / data.data_dir, a --resume path) mean what they
# say from the directory you run the script in. Every notebook of a run loads the run's config.yaml; a lock
# (<run>/.lock) keeps two run_all.sh off one run. Ctrl-C stops the run with a short line: nothing unfinished is
# marked done.
#
# The terminal shows each notebook, its current step and feature-extraction progress (morelib.core.status, also in
# <run>/status.log); INFO logs go to <run>/<notebook>/log.txt. The run folder's size is printed at the end.
#
# The profile and overrides are validated before the run folder is made (exit 2 when invalid); the folder's
# config.yaml then reaches each notebook as its `profile` parameter, validated again there by load_config. A notebook
# that fails stops the run: the script exits non-zero and says where the traceback is (or what papermill left when it
# could not write the notebook). Completed notebooks are marked with <run>/<notebook>/.done.
set -euo pipefail
CALLER="$(pwd)"
cd "$(dirname "$0")"
ROOT="$(pwd)"
source scripts/setup.sh

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }
# abspath P: P resolved against the caller's directory (it need not exist)
abspath() { (cd "$CALLER" && realpath -m -- "$1"); }

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
case "$PROFILE" in *.yaml|*.yml|*/*) PROFILE="$(abspath "$PROFILE")" ;; esac
if [ -n "${MORE_DATA_DIR:-}" ]; then export MORE_DATA_DIR="$(abspath "$MORE_DATA_DIR")"; fi
case "$RESUME" in */*) RESUME="$(abspath "$RESUME")" ;; esac
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
  [ ${#PAIRS[@]} -eq 0 ] || { echo "run_all.sh: --resume reuses the run's saved config; drop -p" >&2; exit 2; }
  [ -z "$ONLY" ] || { echo "run_all.sh: --resume reuses the run's --only; drop --only" >&2; exit 2; }
  PLAN="$("$PY" -m morelib.core.runs resume "$RESUME")" || exit 2  # run, profile, overrides, only, data root
  { read -r RUN; read -r PROFILE; read -r OVERRIDES; read -r ONLY; read -r DATA_ROOT; } <<< "$PLAN"
  if [ "$DATA_ROOT" != hub ] && [ -n "$DATA_ROOT" ]; then
    if [ -n "${MORE_DATA_DIR:-}" ] && [ "$MORE_DATA_DIR" != "$DATA_ROOT" ]; then
      echo "[run_all] note: MORE_DATA_DIR=$MORE_DATA_DIR differs from the run's data folder; the resume reads $DATA_ROOT" >&2
    fi
    export MORE_DATA_DIR="$DATA_ROOT"
  fi
else
  OVERRIDES="$(cd "$CALLER" && "$PY" -m morelib.core.runs overrides ${PAIRS[@]+"${PAIRS[@]}"})" || exit 2
fi
# Validate profile + overrides and check the data folder before anything is created (exit 2 on a bad config).
CHECK="$("$PY" -m morelib.core.runs check "$PROFILE" "$OVERRIDES")" || exit 2
hub_mode "$PROFILE" "$OVERRIDES"
if [ -n "$DRY" ]; then
  echo "[run_all] dry run: $CHECK; profile $PROFILE, overrides $OVERRIDES, notebooks ${ONLY:-${VALID% }}; nothing written"
  TIER="$("$PY" -c 'import sys; from morelib.core.config import load_config, parse_overrides; print(load_config(sys.argv[1], parse_overrides(sys.argv[2])).train.tier)' "$PROFILE" "$OVERRIDES")"
  if [ "$TIER" = finetune ]; then  # the notebooks fine-tune in their own process: one process per fine-tune
    "$PY" -m morelib.finetune --plan --profile "$PROFILE" --overrides "$OVERRIDES" --world-size 1
    echo "[run_all] the same fine-tunes on W GPUs: python -m morelib.finetune --plan --profile $PROFILE --world-size W"
  fi
  exit 0
fi
if [ -z "$RESUME" ]; then
  RUN="$("$PY" -m morelib.core.runs create "$PROFILE" "$OVERRIDES" "$ONLY")" || exit 2  # a fresh folder, never an existing one
  echo "[run_all] profile: $PROFILE  overrides: $OVERRIDES${ONLY:+  only: $ONLY}"
fi
echo "[run_all] run folder: $RUN"
# One run_all.sh per run: a second one (two --resume at once) would write the same notebooks and heads.
exec 9>>"$RUN/.lock"
if ! flock -n 9; then
  echo "run_all.sh: another run_all.sh is working on $RUN (it holds $RUN/.lock); wait for it to finish" >&2
  exit 2
fi
# How to continue this run: by id when it lives in outputs/, else by its path.
if [ "$(dirname "$RUN")" = "$ROOT/outputs" ]; then RESUME_AS="$(basename "$RUN")"; else RESUME_AS="$RUN"; fi
CURRENT=""
trap 'echo "[run_all] interrupted${CURRENT:+ during $CURRENT}: nothing unfinished is marked done; continue with: ./run_all.sh --resume $RESUME_AS" >&2; exit 130' INT

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
  CURRENT="$NAME"
  RC=0  # every notebook loads the run's config.yaml, so a resume and a fresh run run the same settings
  "$PY" -m morelib.cli.run_notebook "$NB" "$OUT" "$RUN/config.yaml" "$RUN" "{}" || RC=$?
  if [ "$RC" -eq 130 ]; then
    echo "[run_all] interrupted during $NAME: nothing unfinished is marked done; continue with: ./run_all.sh --resume $RESUME_AS" >&2
    exit 130
  elif [ "$RC" -ne 0 ]; then
    echo "[run_all] FAILED: $NAME (see the line above); fix it, then continue with: ./run_all.sh --resume $RESUME_AS" >&2
    exit 1
  fi
  touch "$RUN/$NAME/.done"
  TIMES+=("$NAME $(( $(date +%s) - START ))s")
done

echo "[run_all] done: $RUN ($(du -sh "$RUN" | cut -f1) on disk)"
[ ${#TIMES[@]} -eq 0 ] || printf '[run_all]   %s\n' "${TIMES[@]}"
