#!/bin/bash
# Held-out splits against one balanced set of the same size, side by side on the medium dataset:
#   benchmarks/splits.sh [REPEATS]
# Arm "one" counts without splits and plans 30 batches; arm "splits" counts with
# train=0.8,validation=0.1,test=0.1 and plans 10 batches in each split (30 in all). Both run with
# 2 workers in a fresh working directory per repetition, alternated; each prints the wall seconds
# of count, plan and run, and the rows written. Needs the medium dataset of benchmarks.harness
# (bench-data/datasets/sall-f2-e4000-seed1-zstd).
set -euo pipefail
REPEATS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=$ROOT/bench-data/datasets/sall-f2-e4000-seed1-zstd
EXAMPLE=$ROOT/examples/prod_Phase2_v2
BB=$ROOT/.venv/bin/balanced-batches
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
seconds() { local start=$1; echo "$(date +%s.%N) - $start" | bc; }
for rep in $(seq 1 "$REPEATS"); do
  for arm in one splits; do
    W=$WORK/$arm-$rep
    if [ "$arm" = one ]; then extra=(); batches=30; else
      extra=(--splits train=0.8,validation=0.1,test=0.1); batches=10; fi
    start=$(date +%s.%N)
    "$BB" count --workdir "$W" --prod-campaign prod_Phase2_v2 \
      --process-types "$EXAMPLE/process_types.yaml" --pt-abseta-bins "$EXAMPLE/binning.yaml" \
      --input-file-list "$DATA/flist.txt" --workers 2 "${extra[@]}" >/dev/null 2>&1
    count=$(seconds "$start"); start=$(date +%s.%N)
    "$BB" plan --workdir "$W" --pileup PU200 --events-per-batch-type 15 --batches "$batches" \
      --output-directory "$W/out" --seed 1 >/dev/null 2>&1
    plan=$(seconds "$start"); start=$(date +%s.%N)
    "$BB" run --workdir "$W" --workers 2 > "$W/run.txt" 2>&1
    run=$(seconds "$start")
    rows=$(grep -o '[0-9]* entries' "$W/run.txt" | cut -d' ' -f1)
    echo "$arm rep$rep count $count plan $plan run $run rows $rows"
  done
done
