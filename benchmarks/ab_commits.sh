#!/bin/bash
# Whole commands of two commits side by side on the medium dataset, alternated:
#   benchmarks/ab_commits.sh OLD_COMMIT [REPEATS]
# OLD_COMMIT's src/ is checked out into a temporary worktree and put first on PYTHONPATH;
# the other arm is this checkout. Each repetition counts, plans and runs in a fresh working
# directory per arm (2 workers), prints the wall seconds of each command and the CPU seconds of
# run (/usr/bin/time: user + system of it and its worker processes), and the output files
# of both arms are compared byte for byte. The arm that goes first alternates (old first in odd
# repetitions, new first in even ones). Needs the medium dataset of benchmarks.harness
# (bench-data/datasets/sall-f2-e4000-seed1-zstd), or the dataset directory in BB_AB_DATA (e.g.
# its std::vector twin, sall-f2-e4000-seed1-zstd-vector), planned with the options in BB_AB_PLAN
# (default: --pileup PU200 --events-per-batch-type 15 --batches 10).
set -euo pipefail
OLD=${1:?usage: $0 OLD_COMMIT [REPEATS]}
REPEATS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${BB_AB_DATA:-$ROOT/bench-data/datasets/sall-f2-e4000-seed1-zstd}
PLAN=${BB_AB_PLAN:---pileup PU200 --events-per-batch-type 15 --batches 10}
EXAMPLE=$ROOT/examples/prod_Phase2_v2
BB=$ROOT/.venv/bin/balanced-batches
WORK=$(mktemp -d)
trap 'git -C "$ROOT" worktree remove --force "$WORK/old-src" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
git -C "$ROOT" worktree add --detach "$WORK/old-src" "$OLD" >/dev/null 2>&1
seconds() { local start=$1; echo "$(date +%s.%N) - $start" | bc; }
for rep in $(seq 1 "$REPEATS"); do
  arms="old new"; [ $((rep % 2)) -eq 0 ] && arms="new old"
  for arm in $arms; do
    if [ "$arm" = old ]; then export PYTHONPATH=$WORK/old-src/src; else unset PYTHONPATH; fi
    W=$WORK/$arm-$rep
    start=$(date +%s.%N)
    "$BB" count --workdir "$W" --prod-campaign prod_Phase2_v2 \
      --process-types "$EXAMPLE/process_types.yaml" --pt-abseta-bins "$EXAMPLE/binning.yaml" \
      --input-file-list "$DATA/flist.txt" --workers 2 >/dev/null 2>&1
    count=$(seconds "$start"); start=$(date +%s.%N)
    "$BB" plan --workdir "$W" $PLAN --output-directory "$W/out" --seed 1 >/dev/null 2>&1
    plan=$(seconds "$start"); start=$(date +%s.%N)
    /usr/bin/time -f "%U %S" -o "$WORK/time" "$BB" run --workdir "$W" --workers 2 >/dev/null 2>&1
    run=$(seconds "$start")
    cpu=$(awk '{print $1 + $2}' "$WORK/time")  # user + system, worker processes included
    echo "$arm rep$rep count $count plan $plan run $run run_cpu $cpu"
  done
  if cmp -s <(cd "$WORK/old-$rep/out" && sha256sum batch*.root) \
            <(cd "$WORK/new-$rep/out" && sha256sum batch*.root); then
    echo "rep$rep: outputs identical"
  else
    echo "rep$rep: OUTPUTS DIFFER"
  fi
done
