"""Peak memory per worker with a ~4 GB input file, for several batch counts.

    python -m benchmarks.memory --batches 100,1000        # ~10 min on 2 cores

The dataset `onefile4gb` (one DY file, 3.8 M candidates, ~4.3 GiB, made once by
`generate` and cached) is counted once; then for every batch count a fresh copy of the
counted working directory is planned and `run` with `--workers 2`, sampled by
`monitor.measure` (RSS of every process every 0.2 s). The target: at most 2 GB in any process,
whatever the number of batches. A single input file is one read unit: one worker reads it in
chunks of `execution.chunk_mb` while the other waits, then both write.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .datasets import SIZES, ensure_dataset, input_paths
from .pipeline import PlanSettings, count_stage, plan_facts, plan_stage, run_stage

LIMIT_MB = 2048


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measures and prints one table; results go to `<out>/results/memory.json`."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__)
    parser.add_argument("--batches", default="100,1000", help="comma-separated batch counts")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench-data"))
    args = parser.parse_args(argv)
    out = args.out.resolve()
    dataset = ensure_dataset(SIZES["onefile4gb"], out, args.workers)
    root = out / "work" / "memory"
    shutil.rmtree(root, ignore_errors=True)
    counted = root / "counted"
    count = count_stage(counted, dataset.file_list, args.workers, input_paths(dataset))
    rows = []
    for batches in (int(b) for b in args.batches.split(",")):
        workdir = root / f"b{batches}"
        shutil.copytree(counted, workdir)
        output = workdir / "batches"
        settings = PlanSettings(pileup="all", batches=batches)
        plan = plan_stage(workdir, settings, output)
        run = run_stage(workdir, args.workers, plan_facts(workdir), output)
        rows.append({"batches": batches, "plan": plan, "run": run})
        shutil.rmtree(output, ignore_errors=True)
    results = {"dataset": dataset.as_dict(), "count": count, "runs": rows}
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "results" / "memory.json").write_text(json.dumps(results, indent=2))
    print(markdown(results))
    return results


def markdown(results: dict[str, Any]) -> str:
    """The table of peak memory per run."""
    dataset = results["dataset"]
    lines = [
        f"Input: {dataset['files']} file, {dataset['bytes'] / 2**30:.2f} GiB, "
        f"{dataset['entries']:,} entries; count: {results['count']['wall_s']:.1f} s, "
        f"peak RSS {results['count']['peak_rss_max_mb']:.0f} MB",
        "",
        "| batches | output files | rows written | run wall s | peak RSS worker MB "
        "| peak RSS client MB | scratch peak MB | within 2 GB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["runs"]:
        run, plan = row["run"], row["plan"]
        worker = run["peak_rss_children_mb"] or 0.0
        lines.append(
            f"| {row['batches']:,} | {plan['output_files']:,} | {plan['output_rows']:,} "
            f"| {run['wall_s']:.1f} | {worker:.0f} | {run['peak_rss_client_mb']:.0f} "
            f"| {run['scratch_peak_mb']:.0f} | {'yes' if worker <= LIMIT_MB else 'no'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
