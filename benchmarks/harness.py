"""Benchmark harness: count, plan and run against the I/O limit, side by side.

    python -m benchmarks.harness --size small                       # a few minutes
    python -m benchmarks.harness --size medium --stages count,plan,run,io,original,profile
    python -m benchmarks.harness --size small --scaling files,regions --repeat 1
    python -m benchmarks.harness --size bigfiles --vector-branches --pileup all --scaling none

For every repetition, in a fresh working directory and in this order: `count` of every input
file, `plan` (the original production's options: `--pileup PU200 --events-per-batch-type 15`,
a batch count that makes `run` write about as many rows as its input files hold), `run`, then
the I/O limit on the same files: reading the 4 selection branches of every file (the floor of
`count`), reading every branch of the files `run` reads, and writing `run`'s rows once. Stages
run side by side, so the ratios of one repetition share the machine's state; medians of the
repetitions are reported. Results: ``<out>/results/<size>.json`` and a Markdown summary on
stdout (also ``<out>/results/<size>.md``); with ``--vector-branches`` the dataset is generated
with jagged branches as ``std::vector<T>`` (cached apart) and the results are
``<size>-vector.json``. The I/O limit's write (``io_write``) writes the rows with uproot's
``mktree`` + ``extend``: counted arrays, also for ``std::vector`` inputs (uproot cannot write
``std::vector``), ``x_*`` branches sharing a counter ``nx``. ``io_rewrite`` writes `run`'s
outputs again in their own format through ``io.ttree_writer``, the writer `run` uses, which
is faster than uproot's for counted arrays too: ``io_limit_format`` = read + rewrite is the
limit with the same writer and format as `run`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from . import scaling
from .datasets import SIZES, Dataset, ensure_dataset, input_paths
from .monitor import measure, python_command
from .pipeline import (
    PlanSettings,
    baseline_stage,
    count_stage,
    io_stage,
    plan_facts,
    plan_stage,
    run_stage,
    selection_branches,
)
from .profiling import profile_run
from .report import markdown, targets

STAGES = ("count", "plan", "run", "io", "original", "profile")
DEFAULT_STAGES = "count,plan,run,io"
MEASURED = (
    "count", "plan", "run", "io_select", "io_read", "io_write", "io_rewrite", "cli_startup",
    "engine_startup",
)  # fmt: skip
LIMITS = ("io_limit", "io_limit_format")


def machine() -> dict[str, Any]:
    """The machine: cores, memory, CPU model, disk, load, versions."""
    import awkward
    import dask
    import numpy
    import psutil
    import uproot

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    disk = subprocess.run(
        ["df", "-h", "--output=source,fstype,size,avail", "."], capture_output=True, text=True
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "memory_gb": psutil.virtual_memory().total / 2**30,
        "cpu": cpu,
        "disk": disk,
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": {
            "uproot": uproot.__version__,
            "awkward": awkward.__version__,
            "numpy": numpy.__version__,
            "dask": dask.__version__,
        },
    }


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repetitions of every numeric field; the raw wall times too."""
    summary: dict[str, Any] = {"repeats": len(records), "walls": [r["wall_s"] for r in records]}
    for key in records[0]:
        values = [r.get(key) for r in records]
        if all(isinstance(v, (int, float)) or v is None for v in values):
            summary[key] = _median(values)
    return summary


def repetition(
    index: int,
    root: Path,
    dataset: Dataset,
    settings: PlanSettings,
    stages: set[str],
    workers: int,
    branches: list[str],
) -> dict[str, dict[str, Any]]:
    """One side-by-side repetition of every selected stage, in a fresh working directory."""
    base = root / f"rep{index}"
    shutil.rmtree(base, ignore_errors=True)
    work, output, limit = base / "work", base / "batches", base / "iolimit"
    records: dict[str, dict[str, Any]] = {}
    paths = input_paths(dataset)
    count = count_stage(work, dataset.file_list, workers, paths, entries=dataset.entries)
    if "count" in stages:
        records["count"] = count
    plan = plan_stage(work, settings, output)
    if "plan" in stages:
        records["plan"] = plan
    facts = plan_facts(work)
    if "run" in stages:
        records["run"] = run_stage(work, workers, facts, output)
    if "io" in stages:
        records["io_select"] = io_stage("select", paths, limit, workers, branches=branches)
        records["io_read"] = io_stage("read", facts.read_paths, limit, workers)
        outputs = sorted(str(p) for p in output.glob("*.root")) if "run" in stages else None
        records["io_write"] = io_stage(
            "write",
            facts.read_paths,
            limit,
            workers,
            rows=facts.output_rows,
            output_files=facts.n_output_files,
            compression=settings.compression,
            outputs=outputs,
        )
        records["io_limit"] = {
            "wall_s": records["io_read"]["seconds"] + records["io_write"]["seconds"],
        }
        if outputs:
            records["io_rewrite"] = io_stage(
                "rewrite",
                facts.read_paths,
                limit,
                workers,
                compression=settings.compression,
                outputs=outputs,
            )
            records["io_limit_format"] = {
                "wall_s": records["io_read"]["seconds"] + records["io_rewrite"]["seconds"],
            }
        records["cli_startup"] = baseline_stage("imports")
        records["engine_startup"] = baseline_stage("local-engine", workers)
    shutil.rmtree(output, ignore_errors=True)
    shutil.rmtree(limit, ignore_errors=True)
    return records


def ratios(rep: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Stage times over their I/O limit, within one repetition."""
    result = {}
    if "io_limit" in rep:
        limit = rep["io_limit"]["wall_s"]
        for stage in ("count", "plan", "run"):
            if stage in rep:
                result[f"{stage}_vs_io_limit"] = rep[stage]["wall_s"] / limit
        if "count" in rep:
            result["count_vs_select_read"] = rep["count"]["wall_s"] / rep["io_select"]["seconds"]
        if "run" in rep:
            result["run_cpu_vs_io_limit_cpu"] = rep["run"]["cpu_s"] / (
                rep["io_read"]["cpu_s"] + rep["io_write"]["cpu_s"]
            )
    if "io_limit_format" in rep and "run" in rep:
        result["run_vs_io_limit_format"] = rep["run"]["wall_s"] / rep["io_limit_format"]["wall_s"]
    return result


def choose_batches(
    root: Path,
    file_list: Path,
    paths: list[str],
    settings: PlanSettings,
    workers: int,
    fraction: float,
) -> tuple[PlanSettings, dict[str, Any]]:
    """Untimed probe (also warms the page cache): the batch count for `fraction`."""
    probe = root / "probe"
    shutil.rmtree(probe, ignore_errors=True)
    count_stage(probe / "work", file_list, workers, paths)
    batches = settings.batches or scaling.batches_for(
        probe / "work", settings, fraction, probe / "batches"
    )
    settings = replace(settings, batches=batches)
    plan_stage(probe / "work", settings, probe / "batches")
    facts = plan_facts(probe / "work")
    described = {**asdict(facts), "read_paths": None, "read_files": len(facts.read_paths)}
    return settings, {"probe_workdir": str(probe / "work"), **described}


def original_stage(
    probe: Path, out: Path, batches: int, workers: int, max_regions: int | None
) -> dict[str, Any]:
    """The original per-region RDataFrame workflow on `batches` batches of the probe's plan."""
    directory = out / "original"
    shutil.rmtree(directory, ignore_errors=True)
    result = out / "original.json"
    arguments: list[object] = [
        "--workdir", probe, "--batches", ",".join(str(b) for b in range(batches)),
        "--parallel", workers, "--out", directory, "--result", result,
    ]  # fmt: skip
    if max_regions is not None:
        arguments += ["--max-regions", max_regions]
    measurement = measure(python_command("benchmarks.original_rdf", *arguments))
    record: dict[str, Any] = json.loads(result.read_text())
    jobs = record["jobs"]
    for job in jobs:
        scale = job["regions_in_batch"] / job["regions"]
        job["extrapolated_s"] = job["import_s"] + (job["snapshot_s"] + job["hadd_s"]) * scale
        job["extrapolated_bytes_read"] = job["bytes_read"] * scale
    # jobs are single-threaded and ran `parallel` at a time, each timed while the others ran:
    # on `parallel` cores a batch takes one job's time / `parallel`
    parallel = min(workers, batches)
    per_job = _median([j["extrapolated_s"] for j in jobs])
    assert per_job is not None
    record.update(
        parallel=parallel,
        peak_rss_max_mb=measurement.peak_rss_max_mb,
        command_wall_s=measurement.wall_s,
        cpu_s=measurement.cpu_s,
        per_job_s=per_job,
        per_batch_on_cores_s=per_job / parallel,
        bytes_read_per_batch=_median([j["extrapolated_bytes_read"] for j in jobs]),
        regions_measured=jobs[0]["regions"],
        regions_per_batch=jobs[0]["regions_in_batch"],
    )
    shutil.rmtree(directory, ignore_errors=True)
    return record


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.harness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", choices=tuple(SIZES), default="small")
    parser.add_argument(
        "--vector-branches",
        action="store_true",
        help="the dataset generated with jagged branches as std::vector<T> (its own cache "
        "directory; results in <size>-vector.json)",
    )
    parser.add_argument(
        "--stages",
        default=DEFAULT_STAGES,
        help=f"comma-separated from {', '.join(STAGES)}, or none",
    )
    parser.add_argument("--repeat", type=int, default=None, help="default: 1 for tiny, else 3")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench-data"))
    parser.add_argument(
        "--scaling",
        default=None,
        help=f"curves, comma-separated from {', '.join(scaling.CURVES)}, or none "
        "(default: all for small, none otherwise)",
    )
    parser.add_argument("--pileup", default="PU200", help="PU200 (the original's), all, ...")
    parser.add_argument("--per-batch", type=int, default=15, help="events per batch type")
    parser.add_argument("--batches", type=int, default=None, help="default: from --output-fraction")
    parser.add_argument("--output-fraction", type=float, default=1.0)
    parser.add_argument("--original-batches", type=int, default=2)
    parser.add_argument(
        "--original-regions", type=int, default=100, help="regions per original batch (0: all)"
    )
    args = parser.parse_args(argv)
    args.stages = {s for s in args.stages.split(",") if s and s != "none"}
    unknown = args.stages - set(STAGES)
    if unknown:
        parser.error(f"--stages: unknown {sorted(unknown)}; valid: {', '.join(STAGES)}")
    if args.scaling is None:
        args.scaling = ",".join(scaling.CURVES) if args.size == "small" else "none"
    args.curves = [] if args.scaling == "none" else [c for c in args.scaling.split(",") if c]
    bad = set(args.curves) - set(scaling.CURVES)
    if bad:
        parser.error(f"--scaling: unknown {sorted(bad)}; valid: {', '.join(scaling.CURVES)}")
    if args.repeat is None:
        args.repeat = 1 if args.size == "tiny" else 3
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs the benchmark; returns (and writes) the results."""
    args = parse_args(argv)
    out = args.out.resolve()
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine(), "args": _jsonable(vars(args))}
    spec = replace(SIZES[args.size], vector_branches=args.vector_branches)
    dataset = ensure_dataset(spec, out, args.workers)
    results["dataset"] = dataset.as_dict()
    paths = input_paths(dataset)
    root = out / "work" / f"{args.size}-{spec.key}"
    settings = PlanSettings(pileup=args.pileup, per_batch=args.per_batch, batches=args.batches)
    if args.stages:
        settings, probe = choose_batches(
            root, dataset.file_list, paths, settings, args.workers, args.output_fraction
        )
        results["plan_settings"] = {**asdict(settings), "output_fraction": args.output_fraction}
        results["plan_facts"] = probe
    if args.stages & {"count", "plan", "run", "io"}:
        branches = selection_branches()
        reps = [
            repetition(i, root, dataset, settings, args.stages, args.workers, branches)
            for i in range(args.repeat)
        ]
        results["repetitions"] = reps
        results["stages"] = {
            stage: summarise([rep[stage] for rep in reps])
            for stage in (*MEASURED, *LIMITS)
            if stage in reps[0]
        }
        results["ratios"] = summarise_ratios([ratios(rep) for rep in reps], results["stages"])
    if "profile" in args.stages:
        results["profile"] = profile_run(Path(probe["probe_workdir"]), root / "profile")
    if "original" in args.stages:
        results["original"] = original_stage(
            Path(probe["probe_workdir"]),
            root,
            args.original_batches,
            args.workers,
            args.original_regions or None,
        )
    if args.curves:
        results["scaling"] = run_curves(args.curves, out, dataset, args.workers, settings)
    results["targets"] = targets(results)
    results["elapsed_s"] = time.perf_counter() - started
    directory = out / "results"
    directory.mkdir(parents=True, exist_ok=True)
    name = args.size + ("-vector" if args.vector_branches else "")
    if not set(DEFAULT_STAGES.split(",")) <= args.stages:  # leaves a full run's results alone
        name += "-" + "-".join(sorted(args.stages) or ["none"])
    (directory / f"{name}.json").write_text(json.dumps(results, indent=2))
    text = markdown(results)
    (directory / f"{name}.md").write_text(text)
    print(text)
    return results


def summarise_ratios(per_rep: list[dict[str, float]], stages: dict[str, Any]) -> dict[str, Any]:
    """Median of the per-repetition ratios, and the ratio of the medians."""
    if not per_rep or not per_rep[0]:
        return {}
    summary: dict[str, Any] = {key: _median([r[key] for r in per_rep]) for key in per_rep[0]}
    summary["per_repetition"] = per_rep
    limit = stages["io_limit"]["wall_s"]
    summary["of_medians"] = {
        f"{stage}_vs_io_limit": stages[stage]["wall_s"] / limit
        for stage in ("count", "plan", "run")
        if stage in stages
    }
    if "io_limit_format" in stages and "run" in stages:
        summary["of_medians"]["run_vs_io_limit_format"] = (
            stages["run"]["wall_s"] / stages["io_limit_format"]["wall_s"]
        )
    return summary


def run_curves(
    curves: list[str], out: Path, dataset: Any, workers: int, settings: PlanSettings
) -> dict[str, Any]:
    """The selected scaling curves."""
    base = replace(settings, batches=None)
    result: dict[str, Any] = {}
    if "files" in curves:
        result["files"] = scaling.files_curve(out, workers, base)
    if "regions" in curves:
        result["regions"] = scaling.regions_curve(out, dataset, workers, base)
    if "batches" in curves:
        result["batches"] = scaling.batches_curve(out, dataset, workers, base)
    if "workers" in curves:
        result["workers"] = scaling.workers_curve(out, dataset, workers, base)
    if "plan" in curves:
        result["plan"] = scaling.synthetic_plan(out)
    return result


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: (
            sorted(value)
            if isinstance(value, set)
            else str(value)
            if isinstance(value, Path)
            else value
        )
        for key, value in values.items()
    }


if __name__ == "__main__":
    main()
