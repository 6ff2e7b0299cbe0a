"""The original per-region workflow, re-implemented with ROOT RDataFrame, as a baseline.

The original ``make_batches.py`` job makes one batch: for every region of the batch it builds an
``RDataFrame`` over the region's files, filters the region's selection, takes the entry range
the job configuration gives (``Range(offset, offset + N)`` of the selected candidates) and
snapshots all branches into a per-region file; the region files are then merged with ``hadd``.
Every region therefore re-reads its files from the start until its range is filled.

The job configuration is derived here from the *same* plan as balanced-batches (same streams,
same files, same counts, files in list order) with the original's consumption rule: batch *b*
takes positions ``b*N ... b*N+N-1`` of a stream, counted over its files in list order, wrapping
to the first file when the stream ends (without the original's boundary bug). Selections are
the original's strings, e.g. ``genLepton_index >= 0 && (genLepton_kind == 1 ||
genLepton_kind == 3) && (abs(tau_eta) >= 0.0 && abs(tau_eta) < 0.6) && (tau_pt >= 20.0 &&
tau_pt < 25.0)``. Snapshots and ``hadd`` use ZSTD level 5, like balanced-batches' default.
Not reproduced: the copy to a grid storage element (``gfal-copy``).

    python -m benchmarks.original_rdf --workdir WORK --batches 0,1 --parallel 2 \\
        --out DIR --result original.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RegionJob:
    """One region of one batch: its selection, its files (with repeats) and its entry range."""

    key: str
    region: str
    selection: str
    files: tuple[str, ...]
    offset: int
    n: int


def interval(expression: str, edges: Sequence[float], index: int) -> str:
    """The original's bin condition: `(x >= lo && x < hi)`, or `x >= last` for the overflow."""
    low = edges[index]
    if index == len(edges) - 1:
        return f"{expression} >= {low!r}"
    return f"({expression} >= {low!r} && {expression} < {edges[index + 1]!r})"


def region_selection(config: Any, space: Any, region: int) -> str:
    """Selection string of a region: type && |eta| bin && pT bin."""
    type_index, abseta_bin, pt_bin = space.split(region)
    type_text = list(config.types.values())[type_index]
    abseta = interval(config.regions.abseta, space.abseta_edges, abseta_bin)
    pt = interval(config.regions.pt, space.pt_edges, pt_bin)
    return f"{type_text} && {abseta} && {pt}"


def stream_range(
    paths: Sequence[str], counts: Sequence[int], start: int, n: int
) -> tuple[tuple[str, ...], int]:
    """Files (in list order, wrapping, with repeats) covering positions [start, start+n)."""
    total = int(sum(counts))
    start %= total
    bounds = np.cumsum((0, *counts))
    first = int(np.searchsorted(bounds, start, side="right") - 1)
    offset = start - int(bounds[first])
    files: list[str] = []
    covered, index = -offset, first
    while covered < n:
        files.append(paths[index])
        covered += int(counts[index])
        index = (index + 1) % len(paths)
    return tuple(files), offset


def batch_jobs(workdir: Path, batch: int) -> tuple[list[RegionJob], str]:
    """The original job configuration of `batch`, from the plan in `workdir`; and the tree."""
    from balanced_batches.catalog import Catalog
    from balanced_batches.config import ProjectConfig
    from balanced_batches.regions import build_selection
    from balanced_batches.stages.plan import load_plan

    catalog = Catalog.open(workdir)
    plan = load_plan(catalog)
    config = ProjectConfig.model_validate(catalog.get_meta("plan_config"))
    paths = {record.id: record.path for record in catalog.files()}
    catalog.close()
    space = build_selection(config).space
    jobs = []
    for stream in range(plan.n_streams):
        members = slice(int(plan.member_ptr[stream]), int(plan.member_ptr[stream + 1]))
        files = [paths[int(i)] for i in plan.member_file[members]]
        counts = [int(n) for n in plan.member_count[members]]
        chosen, offset = stream_range(files, counts, batch * plan.per_batch, plan.per_batch)
        key, name = plan.stream_label(stream)
        region = int(plan.stream_region[stream])
        jobs.append(
            RegionJob(
                key, name, region_selection(config, space, region), chosen, offset, plan.per_batch
            )
        )
    return jobs, config.inputs.tree


def hadd_path() -> Path:
    """`hadd` of the ROOT wheel (it is not on PATH)."""
    import ROOT

    return Path(ROOT.__file__).parent / "bin" / "hadd"


def spread(n: int, limit: int | None) -> list[int]:
    """`limit` indices spread evenly over range(n) (all of them without a limit)."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, limit)})


def make_batch(
    workdir: Path, batch: int, out: Path, max_regions: int | None = None
) -> dict[str, Any]:
    """One original job: per-region RDataFrame snapshots, then hadd. Timings and bytes read.

    With `max_regions`, only that many regions, spread evenly over the batch's regions, are
    made (the cost per region is nearly constant; the caller extrapolates).
    """
    started = time.perf_counter()
    all_jobs, tree = batch_jobs(workdir, batch)
    jobs = [all_jobs[i] for i in spread(len(all_jobs), max_regions)]
    import ROOT

    ROOT.gErrorIgnoreLevel = ROOT.kWarning
    imported = time.perf_counter()
    options = ROOT.RDF.RSnapshotOptions()
    options.fCompressionAlgorithm = ROOT.RCompressionSetting.EAlgorithm.kZSTD
    options.fCompressionLevel = 5
    directory = out / f"batch{batch}-regions"
    directory.mkdir(parents=True, exist_ok=True)
    region_files = []
    for index, job in enumerate(jobs):
        target = directory / f"region{index:05d}.root"
        frame = ROOT.RDataFrame(tree, ROOT.std.vector("string")(job.files))
        frame.Filter(job.selection).Range(job.offset, job.offset + job.n).Snapshot(
            tree, str(target), "", options
        )
        region_files.append(str(target))
    snapshots = time.perf_counter()
    merged = out / f"batch{batch}.root"
    subprocess.run(
        [str(hadd_path()), "-f505", "-v", "0", str(merged), *region_files],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    done = time.perf_counter()
    entries = int(ROOT.RDataFrame(tree, str(merged)).Count().GetValue())
    return {
        "batch": batch,
        "regions": len(jobs),
        "regions_in_batch": len(all_jobs),
        "entries": entries,
        "planned_entries": sum(job.n for job in jobs),
        "input_files_opened": sum(len(job.files) for job in jobs),
        "seconds": done - started,
        "import_s": imported - started,
        "snapshot_s": snapshots - imported,
        "hadd_s": done - snapshots,
        "bytes_read": int(ROOT.TFile.GetFileBytesRead()),
        "output_bytes": merged.stat().st_size,
        "region_files_bytes": sum(Path(p).stat().st_size for p in region_files),
        "example_job": asdict(jobs[0]) if jobs else None,
    }


def run_batches(
    workdir: Path, batches: Sequence[int], parallel: int, out: Path, max_regions: int | None
) -> dict[str, Any]:
    """Runs one job process per batch, `parallel` at a time (like batch jobs on the cores)."""
    out.mkdir(parents=True, exist_ok=True)
    pending = list(batches)
    running: list[tuple[int, subprocess.Popen[bytes], Path]] = []
    results = []
    started = time.perf_counter()
    while pending or running:
        while pending and len(running) < parallel:
            batch = pending.pop(0)
            result = out / f"job{batch}.json"
            command = [
                sys.executable, "-m", "benchmarks.original_rdf", "job",
                "--workdir", str(workdir), "--batch", str(batch), "--out", str(out),
                "--result", str(result),
            ]  # fmt: skip
            if max_regions is not None:
                command += ["--max-regions", str(max_regions)]
            running.append((batch, subprocess.Popen(command, env=os.environ.copy()), result))
        time.sleep(0.2)
        for item in list(running):
            batch, process, result = item
            if process.poll() is None:
                continue
            running.remove(item)
            if process.returncode != 0:
                raise RuntimeError(f"original job of batch {batch} failed: {process.returncode}")
            results.append(json.loads(result.read_text()))
    wall = time.perf_counter() - started
    return {"wall_s": wall, "parallel": parallel, "jobs": sorted(results, key=lambda r: r["batch"])}


def main(argv: Sequence[str] | None = None) -> None:
    """`job` makes one batch in this process; without it, batches run as parallel jobs."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.original_rdf", description=__doc__)
    parser.add_argument("mode", nargs="?", choices=("batches", "job"), default="batches")
    parser.add_argument("--workdir", type=Path, required=True, help="a planned workdir")
    parser.add_argument("--batches", default="0", help="comma-separated batch indices")
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--max-regions", type=int, default=None, help="evenly spread subset")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.mode == "job":
        result = make_batch(args.workdir, args.batch, args.out, args.max_regions)
    else:
        batches = [int(b) for b in args.batches.split(",") if b]
        result = run_batches(args.workdir, batches, args.parallel, args.out, args.max_regions)
    args.result.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
