"""Scaling curves: input files, regions, batches, workers; and planning a very large production.

Every point of a curve runs `count`, `plan` and `run` once (one repetition: these curves show
trends, the headline table gives medians) in a fresh working directory. The batch count of a
point is chosen so that `run` writes about as many rows as its input files hold (`--output-
fraction`), except on the batches curve, where the batch count is the variable.

``python -m benchmarks.scaling synthetic-plan`` builds a catalog of N files x R regions with
random counts directly with the library (no ROOT file is read) and times
``stages.plan.plan_batches`` for B batches, reporting the catalog's size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import (
    BINNING,
    PROCESS_TYPES,
    Dataset,
    DatasetSpec,
    binning_for_regions,
    ensure_dataset,
    input_paths,
    write_binning,
)
from .monitor import measure, python_command
from .pipeline import (
    MB,
    PlanSettings,
    count_stage,
    plan_facts,
    plan_stage,
    run_stage,
)

CURVES = ("files", "regions", "batches", "workers", "plan")
FILES_POINTS = (10, 30, 100, 300, 1000)
FILES_SPEC = DatasetSpec(max_samples=None, files_per_sample=11, entries_per_file=200)
REGIONS_POINTS = (24, 260, 1000, 3000)
BATCHES_POINTS = (10, 100, 1000, 10_000, 100_000)
RUN_ROWS_LIMIT = 2  # the batches curve runs `run` only up to this many rows per input row


def batches_for(workdir: Path, settings: PlanSettings, fraction: float, output: Path) -> int:
    """The batch count that makes `run` write `fraction` x the rows its inputs hold."""
    plan_stage(workdir, replace(settings, batches=1), output)  # probe: streams and files
    facts = plan_facts(workdir)
    return max(1, round(fraction * facts.read_entries / (facts.n_streams * facts.per_batch)))


def pipeline_point(
    workdir: Path,
    file_list: Path,
    paths: list[str],
    settings: PlanSettings,
    workers: int,
    *,
    binning: Path | None = None,
    fraction: float | None = 1.0,
    run_rows_limit: float | None = None,
) -> dict[str, Any]:
    """count, plan (batches from `fraction` unless settings fix them) and run, once each."""
    shutil.rmtree(workdir, ignore_errors=True)
    work, output = workdir / "work", workdir / "batches"
    count = count_stage(work, file_list, workers, paths, binning or BINNING)
    if settings.batches is None and fraction is not None:
        settings = replace(settings, batches=batches_for(work, settings, fraction, output))
    plan = plan_stage(work, settings, output)
    facts = plan_facts(work)
    point: dict[str, Any] = {
        "files": len(paths),
        "input_mb": sum(Path(p).stat().st_size for p in paths) / MB,
        "regions": None,
        "streams": facts.n_streams,
        "batches": facts.n_batches,
        "output_files": facts.n_output_files,
        "output_rows": facts.output_rows,
        "read_entries": facts.read_entries,
        "count_s": count["wall_s"],
        "plan_s": plan["wall_s"],
        "catalog_mb": plan["catalog_mb"],
        "run_s": None,
        "run_peak_rss_mb": None,
        "scratch_peak_mb": None,
    }
    if run_rows_limit is None or facts.output_rows <= run_rows_limit * facts.read_entries:
        run = run_stage(work, workers, facts, output)
        point.update(
            run_s=run["wall_s"],
            run_cpu_s=run["cpu_s"],
            run_peak_rss_mb=run["peak_rss_max_mb"],
            scratch_peak_mb=run["scratch_peak_mb"],
            run_us_per_output_row=1e6 * run["wall_s"] / max(facts.output_rows, 1),
        )
    shutil.rmtree(workdir, ignore_errors=True)
    return point


def spread_over_samples(paths: list[str]) -> list[str]:
    """The files in the order that takes the k-th file of every sample (directory) before the
    (k+1)-th of any: the first N then cover as many samples, pile-ups included, as they can."""
    rank: dict[Path, int] = {}
    keyed = []
    for position, path in enumerate(paths):
        sample = Path(path).parent
        rank[sample] = rank.get(sample, -1) + 1
        keyed.append((rank[sample], position, path))
    return [path for _, _, path in sorted(keyed)]


def files_curve(root: Path, workers: int, settings: PlanSettings) -> list[dict[str, Any]]:
    """count/plan/run time against the number of input files (same files, 200 entries each)."""
    dataset = ensure_dataset(FILES_SPEC, root, workers)
    paths = spread_over_samples(input_paths(dataset))
    points = []
    for n in FILES_POINTS:
        chosen = paths[: min(n, len(paths))]
        file_list = root / "scaling" / f"files-{n}.txt"
        file_list.parent.mkdir(parents=True, exist_ok=True)
        file_list.write_text("\n".join(chosen) + "\n")
        points.append(
            pipeline_point(root / "scaling" / f"files-{n}", file_list, chosen, settings, workers)
        )
    return points


def regions_curve(
    root: Path, dataset: Dataset, workers: int, settings: PlanSettings
) -> list[dict[str, Any]]:
    """count/plan/run time against the number of regions (1 candidate per region and batch)."""
    paths = input_paths(dataset)
    points = []
    for target in REGIONS_POINTS:
        binning, n_regions = binning_for_regions(target)
        path = write_binning(root / "scaling" / f"binning-{n_regions}.yaml", binning)
        point = pipeline_point(
            root / "scaling" / f"regions-{n_regions}",
            dataset.file_list,
            paths,
            replace(settings, per_batch=1),
            workers,
            binning=path,
        )
        point["regions"] = n_regions
        points.append(point)
    return points


def batches_curve(
    root: Path, dataset: Dataset, workers: int, settings: PlanSettings
) -> list[dict[str, Any]]:
    """plan (and, while the output stays small, run) time against the number of batches."""
    paths = input_paths(dataset)
    binning, n_regions = binning_for_regions(24)
    path = write_binning(root / "scaling" / f"binning-{n_regions}.yaml", binning)
    points = []
    for n in BATCHES_POINTS:
        point = pipeline_point(
            root / "scaling" / f"batches-{n}",
            dataset.file_list,
            paths,
            replace(settings, per_batch=1, batches=n),
            workers,
            binning=path,
            fraction=None,
            run_rows_limit=RUN_ROWS_LIMIT,
        )
        point["regions"] = n_regions
        points.append(point)
    return points


def workers_curve(
    root: Path, dataset: Dataset, workers: int, settings: PlanSettings
) -> list[dict[str, Any]]:
    """count/plan/run time with 1 ... `workers` worker processes (1 = in-process engine)."""
    paths = input_paths(dataset)
    points = []
    for n in range(1, max(workers, 2) + 1):
        point = pipeline_point(
            root / "scaling" / f"workers-{n}", dataset.file_list, paths, settings, n
        )
        point["workers"] = n
        points.append(point)
    return points


def synthetic_plan(
    root: Path, files: int = 300, regions: int = 3000, batches: int = 100_000
) -> dict[str, Any]:
    """Times `plan_batches` on a synthesised catalog, in a subprocess (its RSS is measured)."""
    workdir = root / "scaling" / f"synthetic-{files}x{regions}x{batches}"
    result = workdir.parent / f"{workdir.name}.json"
    shutil.rmtree(workdir, ignore_errors=True)
    measurement = measure(
        python_command(
            "benchmarks.scaling",
            "synthetic-plan",
            "--workdir",
            workdir,
            "--files",
            files,
            "--regions",
            regions,
            "--batches",
            batches,
            "--result",
            result,
        )
    )
    record: dict[str, Any] = json.loads(result.read_text())
    record["peak_rss_mb"] = measurement.peak_rss_max_mb
    record["command_wall_s"] = measurement.wall_s
    shutil.rmtree(workdir, ignore_errors=True)
    return record


def _synthesise(workdir: Path, files: int, regions: int, batches: int, seed: int = 1) -> Any:
    """A catalog of `files` counted files with random counts in `regions` regions; the config."""
    from balanced_batches.catalog import Catalog
    from balanced_batches.config import ProjectConfig, load_process_types
    from balanced_batches.inputs import catalog_name, detect_pileup, detect_process
    from balanced_batches.regions import build_selection
    from balanced_batches.stages.count import selection_fingerprint
    from balanced_batches.synthetic.generate import file_path
    from balanced_batches.synthetic.samples import SAMPLES

    binning, n_regions = binning_for_regions(regions)
    processes = {
        name: spec.model_dump() for name, spec in load_process_types(PROCESS_TYPES).items()
    }
    config = ProjectConfig.model_validate(
        {
            "inputs": {"campaign": "prod_Phase2_v2"},
            "processes": processes,
            "binning": binning,
            "plan": {"pileup": "all", "events_per_batch_type": 15, "batches": batches},
            "output": {"directory": str(workdir / "batches")},
        }
    )
    selection = build_selection(config)
    catalog = Catalog.open(workdir, create=True)
    entries = []
    for index in range(files):
        sample = SAMPLES[index % len(SAMPLES)]
        path = str(file_path(workdir / "data", sample, index // len(SAMPLES) + 1))
        name = catalog_name(path, config.inputs.campaign)
        processes_of = detect_process(name, config.processes)
        entries.append((path, name, processes_of, detect_pileup(name)))
    catalog.sync_file_list(entries)
    catalog.set_meta("config", config.model_dump(mode="json"))
    fingerprint = selection_fingerprint(selection, config.inputs.tree)
    catalog.set_meta("selection", fingerprint)
    rng = np.random.default_rng(seed)
    for record in catalog.files():
        counts = rng.poisson(20, n_regions) * (rng.random(n_regions) < 0.7)
        catalog.record_count(
            record.id,
            size=10**8,
            mtime=0.0,
            entries=int(counts.sum()),
            bytes_per_entry=5000.0,
            selection_hash=fingerprint,
            counts=counts.astype(np.int64),
        )
    return catalog, config, n_regions


def _sqlite_mb(workdir: Path) -> float:
    return sum(p.stat().st_size for p in workdir.glob("balanced-batches.sqlite*")) / MB


def synthetic_plan_main(workdir: Path, files: int, regions: int, batches: int) -> dict[str, Any]:
    """Builds the catalog, then times plan_batches, load_plan and build_jobs on it."""
    from balanced_batches.stages.plan import load_plan, plan_batches
    from balanced_batches.stages.units import build_jobs, spec_from_catalog

    start = time.perf_counter()
    catalog, config, n_regions = _synthesise(workdir, files, regions, batches)
    synthesised = time.perf_counter()
    counted_mb = _sqlite_mb(workdir)
    cpu = time.process_time()
    plan = plan_batches(catalog, config, workdir)
    planned, plan_cpu = time.perf_counter(), time.process_time() - cpu
    loaded = load_plan(catalog)
    loaded_at = time.perf_counter()
    jobs = build_jobs(spec_from_catalog(catalog, loaded, config, workdir))
    built = time.perf_counter()
    catalog.close()
    return {
        "files": files,
        "regions": n_regions,
        "batches": plan.n_batches,
        "streams": plan.n_streams,
        "members": len(plan.member_file),
        "write_units": plan.n_write_units,
        "read_units": len(jobs.reads),
        "synthesise_s": synthesised - start,
        "plan_s": planned - synthesised,
        "plan_cpu_s": plan_cpu,
        "load_plan_s": loaded_at - planned,
        "build_jobs_s": built - loaded_at,  # the start of `run`: every read task
        "catalog_mb_counts": counted_mb,
        "catalog_mb": _sqlite_mb(workdir),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """`synthetic-plan`: the large-plan measurement, in its own process."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__)
    parser.add_argument("mode", choices=("synthetic-plan",))
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--regions", type=int, default=3000)
    parser.add_argument("--batches", type=int, default=100_000)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    result = synthetic_plan_main(args.workdir, args.files, args.regions, args.batches)
    args.result.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
