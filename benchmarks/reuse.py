"""`run` on plans that reuse their candidates: two code versions and the I/O limit, alternated.

    python -m benchmarks.reuse --old 9123eb8 --new 07dfd2b     # 17-29 min (+3 to generate data)
    python -m benchmarks.reuse --old /path/to/src --new HEAD --levels 50:7500 --repeat 1
    python -m benchmarks.reuse --old 9123eb8 --new 07dfd2b --repeat 0 --profile new:50,old:50

A plan reuses candidates when a (process, region) stream has fewer candidates than the
batches need: with K = batches x N candidates per stream, a stream of c candidates uses
min(c, K) of them, each about K / c times. The *level* of a plan is its output rows per
input row used, S x K / sum(min(c, K)) over its S streams. The issue's example (6 files of
150,000 candidates, N = 50, batches = largest region / N: 1,548,000 rows, per-stream reuse
median x99, max x795) is scaled to 6 files of `balanced-batches generate --max-samples 6`
(one file per sample, cached by `datasets.ensure_dataset`); each level has its own entries
per file, so that every level writes 0.1-1.5 M rows (the x50 level writes about the
example's 1.5 M rows from 6 files of 7,500 entries) and fits the time budget. The plan is
`--pileup all --events-per-batch-type 50` (`--per-batch`) and the batch count whose level is
closest to the target, found from the streams' candidate counts of an untimed probe plan.

Per level, once: `count` (untimed; it also warms the page cache), the probe plan, then a
planned working directory for the facts of the plan. Per repetition and level, in a rotated
order (OLD, NEW, limit / NEW, limit, OLD / limit, OLD, NEW):

- OLD and NEW: a fresh copy of the counted working directory, `plan` (untimed, its own
  output directory), then `run --workers W` (without `--keep-scratch`) measured by
  `pipeline.run_stage`: wall and CPU time, peak RSS of every process (worker = the largest
  worker process) and the peak size of `<workdir>/scratch`. The output ROOT files are
  hashed (sha256): OLD's and NEW's must be byte-identical (`provenance.json` holds the date
  and is not compared);
- the I/O limit as the harness measures it (`pipeline.io_stage`): reading every branch of
  every file `run` reads, plus writing the rows `run` wrote (its output files, read back
  untimed) into as many files.

The code versions: `--old` / `--new` are `src` directories (or git revisions, exported with
`git archive` as `executor_engine` does) put first on PYTHONPATH of the measured `run`. The
untimed `count` and `plan`, the I/O limit and the catalog look-ups use OLD's code.

The scratch peak is compared with the uncompressed size of the input rows the plan uses:
per input file, the uncompressed bytes of its branches (every branch is kept) per entry x
the distinct entries of that file in the outputs (their `bb_source_file`,
`bb_source_entry`). `--profile ARM:LEVEL,...` profiles `run --workers 1` of that arm on that
level with `profiling.profile_run` (py-spy if installed in the venv, else cProfile).
Results: `<out>/results/reuse.json` and `reuse.md` (`--name`; `reuse-profile` with `--repeat 0`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import DatasetSpec, ensure_dataset, input_paths
from .executor_engine import export_src
from .harness import _median, machine
from .pipeline import (
    MB,
    PlanFacts,
    PlanSettings,
    count_stage,
    io_stage,
    plan_facts,
    plan_stage,
    run_stage,
)
from .profiling import profile_run
from .report import table

DEFAULT_LEVELS = "1.2:150000,3:50000,10:20000,50:7500"
SAMPLES = 6  # input files: one per sample, as the 6 files
ARMS = ("old", "new", "limit")
TARGET_RUN_VS_LIMIT = 1.5
TARGET_SCRATCH_VS_USED = 1.2
TARGET_WORKER_MB = 2048.0


@dataclass(frozen=True)
class Level:
    """A reuse level: the target output rows per input row used, and the dataset it runs on."""

    target: float
    entries_per_file: int

    @property
    def spec(self) -> DatasetSpec:
        """6 files, one per sample, of `entries_per_file` entries."""
        return DatasetSpec(
            max_samples=SAMPLES, files_per_sample=1, entries_per_file=self.entries_per_file
        )

    @property
    def name(self) -> str:
        """e.g. `x50`."""
        return f"x{self.target:g}"


def parse_levels(text: str) -> list[Level]:
    """`TARGET:ENTRIES_PER_FILE,...`."""
    levels = []
    for item in filter(None, text.split(",")):
        target, entries = item.split(":")
        levels.append(Level(float(target), int(entries)))
    return levels


def reuse_level(totals: np.ndarray, needed: int) -> float:
    """Output rows per distinct input row used when every stream needs `needed` candidates."""
    return float(len(totals) * needed / np.minimum(totals, needed).sum())


def batches_for_reuse(totals: np.ndarray, per_batch: int, target: float) -> int:
    """The batch count whose level is closest to `target` (the level grows with batches)."""
    best, best_distance = 1, float("inf")
    for batches in range(1, 1_000_000):
        level = reuse_level(totals, batches * per_batch)
        distance = abs(np.log(level / target))
        if distance < best_distance:
            best, best_distance = batches, distance
        if level > target:
            break
    return best


@contextmanager
def code(src: Path | None) -> Iterator[None]:
    """Subprocesses started meanwhile import the library from `src` (None: as installed)."""
    saved = os.environ.get("PYTHONPATH")
    if src is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = str(src)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def resolve_src(value: str | None, out: Path) -> Path | None:
    """A `src` directory as given, or `src/` of a git revision exported once."""
    if value is None:
        return None
    path = Path(value)
    if (path / "balanced_batches" / "__init__.py").exists():
        return path.resolve()
    return export_src(value, out / "work" / "src-export")[0]


def stream_totals(workdir: Path) -> np.ndarray:
    """Candidates per stream of the plan stored in `workdir`."""
    from balanced_batches.catalog import Catalog
    from balanced_batches.stages.plan import load_plan

    catalog = Catalog.open(workdir)
    try:
        return np.asarray(load_plan(catalog).stream_total)
    finally:
        catalog.close()


def _copy_counted(counted: Path, work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(counted, work, ignore=shutil.ignore_patterns("scratch", "*.lock"))


@dataclass
class Prepared:
    """A level's dataset, counted working directory, plan settings and facts."""

    level: Level
    root: Path
    counted: Path
    settings: PlanSettings
    facts: PlanFacts
    described: dict[str, Any]
    reference_outputs: list[str] | None = None  # the first run's outputs (the limit's rows)
    reference_hashes: dict[str, str] | None = None


def prepare(level: Level, out: Path, workers: int, base: PlanSettings) -> Prepared:
    """Dataset, count, probe plan (stream sizes: the batch count) and the planned facts."""
    dataset = ensure_dataset(level.spec, out, workers)
    root = out / "work" / "reuse" / f"{level.name}-{level.spec.key}"
    shutil.rmtree(root, ignore_errors=True)
    counted = root / "counted"
    count = count_stage(counted, dataset.file_list, workers, input_paths(dataset))
    probe = root / "probe"
    _copy_counted(counted, probe)
    plan_stage(probe, replace(base, batches=1), root / "probe-batches")
    totals = stream_totals(probe)
    shutil.rmtree(probe)
    settings = replace(base, batches=batches_for_reuse(totals, base.per_batch, level.target))
    planned = root / "planned"
    _copy_counted(counted, planned)
    plan_stage(planned, settings, root / "planned-batches")
    facts = plan_facts(planned)
    needed = facts.n_batches * facts.per_batch
    per_stream = needed / totals
    described = {
        "dataset": dataset.as_dict(),
        "count_s": count["wall_s"],
        "settings": asdict(settings),
        "streams": facts.n_streams,
        "batches": facts.n_batches,
        "output_files": facts.n_output_files,
        "output_rows": facts.output_rows,
        "read_files": len(facts.read_paths),
        "read_entries": facts.read_entries,
        "read_bytes": facts.read_bytes,
        "candidates": int(totals.sum()),
        "used_rows_planned": int(np.minimum(totals, needed).sum()),
        "level": reuse_level(totals, needed),
        "stream_reuse_median": float(np.median(per_stream)),
        "stream_reuse_max": float(per_stream.max()),
        "stream_candidates_median": float(np.median(totals)),
        "stream_candidates_max": int(totals.max()),
    }
    return Prepared(level, root, counted, settings, facts, described)


def sha256_of_outputs(directory: Path) -> dict[str, str]:
    """sha256 of every output ROOT file, by name."""
    hashes = {}
    for path in sorted(directory.glob("*.root")):
        with path.open("rb") as handle:
            hashes[path.name] = hashlib.file_digest(handle, "sha256").hexdigest()
    return hashes


def used_input(prepared: Prepared, outputs: list[str]) -> dict[str, Any]:
    """Distinct input rows in the outputs (provenance branches) and their uncompressed size."""
    import uproot

    from balanced_batches.catalog import Catalog

    keys = []
    for path in outputs:
        tree = uproot.open(path)["taus"]
        arrays = tree.arrays(["bb_source_file", "bb_source_entry"], library="np")
        keys.append(arrays["bb_source_file"].astype(np.int64) << 40 | arrays["bb_source_entry"])
    distinct = np.unique(np.concatenate(keys))
    files, per_file = np.unique(distinct >> 40, return_counts=True)
    catalog = Catalog.open(prepared.root / "planned")
    try:
        paths = {record.id: record.path for record in catalog.files()}
    finally:
        catalog.close()
    uncompressed = 0.0
    per_entry = {}
    for file_id, count in zip(files.tolist(), per_file.tolist(), strict=True):
        tree = uproot.open(paths[file_id])["taus"]
        per_entry[paths[file_id]] = tree.uncompressed_bytes / tree.num_entries
        uncompressed += per_entry[paths[file_id]] * count
    return {
        "used_rows": len(distinct),
        "used_uncompressed_bytes": uncompressed,
        "used_uncompressed_mb": uncompressed / MB,
        "uncompressed_bytes_per_entry": per_entry,
    }


def run_arm(
    prepared: Prepared, src: Path | None, reference: Path | None, base: Path, workers: int
) -> dict[str, Any]:
    """A fresh working directory planned with `reference`'s code, `run` with `src`'s."""
    shutil.rmtree(base, ignore_errors=True)
    work, output = base / "work", base / "batches"
    _copy_counted(prepared.counted, work)
    with code(reference):
        plan_stage(work, prepared.settings, output)
    with code(src):
        record = run_stage(work, workers, prepared.facts, output)
    record["hashes"] = sha256_of_outputs(output)
    if prepared.reference_outputs is None:
        kept = prepared.root / "outputs"
        shutil.rmtree(kept, ignore_errors=True)
        output.rename(kept)
        prepared.reference_outputs = sorted(str(p) for p in kept.glob("*.root"))
        prepared.reference_hashes = record["hashes"]
        with code(reference):
            prepared.described.update(used_input(prepared, prepared.reference_outputs))
    record["identical_to_first_run"] = record["hashes"] == prepared.reference_hashes
    shutil.rmtree(base, ignore_errors=True)
    return record


def limit_arm(
    prepared: Prepared, reference: Path | None, base: Path, workers: int
) -> dict[str, Any]:
    """The I/O limit: read every branch of run's files, write run's rows once."""
    shutil.rmtree(base, ignore_errors=True)
    facts = prepared.facts
    with code(reference):
        read = io_stage("read", facts.read_paths, base, workers)
        write = io_stage(
            "write",
            facts.read_paths,
            base,
            workers,
            rows=facts.output_rows,
            output_files=facts.n_output_files,
            compression=prepared.settings.compression,
            outputs=prepared.reference_outputs,
        )
    shutil.rmtree(base, ignore_errors=True)
    return {
        "wall_s": read["seconds"] + write["seconds"],
        "cpu_s": read["cpu_s"] + write["cpu_s"],
        "read": read,
        "write": write,
    }


def order_of(repetition: int) -> tuple[str, ...]:
    """OLD, NEW, limit rotated by one every repetition."""
    shift = repetition % len(ARMS)
    return ARMS[shift:] + ARMS[:shift]


def repetition(
    index: int, prepared: Prepared, sources: dict[str, Path | None], workers: int
) -> dict[str, Any]:
    """One repetition of a level: OLD, NEW and the limit in a rotated order."""
    loads: dict[str, float] = {}  # 1-minute load average before each arm
    record: dict[str, Any] = {"order": list(order_of(index)), "load_average": loads}
    for arm in order_of(index):
        if arm == "limit" and prepared.reference_outputs is None:
            continue  # no outputs to rewrite yet: after the runs
        base = prepared.root / f"rep{index}" / arm
        loads[arm] = os.getloadavg()[0]
        if arm == "limit":
            record[arm] = limit_arm(prepared, sources["old"], base, workers)
        else:
            record[arm] = run_arm(prepared, sources[arm], sources["old"], base, workers)
    if "limit" not in record:
        base = prepared.root / f"rep{index}" / "limit"
        loads["limit"] = os.getloadavg()[0]
        record["limit"] = limit_arm(prepared, sources["old"], base, workers)
    record["identical"] = record["old"]["hashes"] == record["new"]["hashes"]
    for arm in ("old", "new"):
        del record[arm]["hashes"]
    used = prepared.described["used_uncompressed_bytes"]
    record["ratios"] = {
        "old_vs_limit": record["old"]["wall_s"] / record["limit"]["wall_s"],
        "new_vs_limit": record["new"]["wall_s"] / record["limit"]["wall_s"],
        "old_cpu_vs_limit_cpu": record["old"]["cpu_s"] / record["limit"]["cpu_s"],
        "new_cpu_vs_limit_cpu": record["new"]["cpu_s"] / record["limit"]["cpu_s"],
        "new_vs_old": record["new"]["wall_s"] / record["old"]["wall_s"],
        "new_cpu_vs_old_cpu": record["new"]["cpu_s"] / record["old"]["cpu_s"],
        "old_scratch_vs_used": record["old"]["watched_peak_bytes"] / used,
        "new_scratch_vs_used": record["new"]["watched_peak_bytes"] / used,
    }
    return record


def summarise(prepared: Prepared, reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repetitions, per arm and of the per-repetition ratios."""
    keys = ("wall_s", "cpu_s", "peak_rss_children_mb", "peak_rss_client_mb", "peak_rss_sum_mb")
    summary: dict[str, Any] = {}
    for arm in ("old", "new"):
        summary[arm] = {key: _median([r[arm][key] for r in reps]) for key in keys}
        summary[arm]["walls"] = [r[arm]["wall_s"] for r in reps]
        summary[arm]["scratch_peak_mb"] = _median([r[arm]["scratch_peak_mb"] for r in reps])
        summary[arm]["peak_rss_worker_max_mb"] = max(r[arm]["peak_rss_children_mb"] for r in reps)
        summary[arm]["bytes_read_ratio"] = _median([r[arm]["bytes_read_ratio"] for r in reps])
    summary["limit"] = {
        "wall_s": _median([r["limit"]["wall_s"] for r in reps]),
        "walls": [r["limit"]["wall_s"] for r in reps],
        "read_s": _median([r["limit"]["read"]["seconds"] for r in reps]),
        "write_s": _median([r["limit"]["write"]["seconds"] for r in reps]),
        "cpu_s": _median([r["limit"]["cpu_s"] for r in reps]),
        "peak_rss_worker_mb": _median([r["limit"]["write"]["peak_rss_children_mb"] for r in reps]),
    }
    summary["ratios"] = {
        key: _median([r["ratios"][key] for r in reps]) for key in reps[0]["ratios"]
    }
    summary["ratios_per_repetition"] = {
        key: [r["ratios"][key] for r in reps] for key in reps[0]["ratios"]
    }
    summary["identical"] = [r["identical"] for r in reps]
    summary["identical_to_first_run"] = [
        r[arm]["identical_to_first_run"] for r in reps for arm in ("old", "new")
    ]
    ratios, targets = summary["ratios"], {}
    for arm in ("old", "new"):
        targets[f"{arm}: run <= {TARGET_RUN_VS_LIMIT} x I/O limit"] = (
            ratios[f"{arm}_vs_limit"] <= TARGET_RUN_VS_LIMIT
        )
        targets[f"{arm}: scratch peak <= {TARGET_SCRATCH_VS_USED} x used input"] = (
            ratios[f"{arm}_scratch_vs_used"] <= TARGET_SCRATCH_VS_USED
        )
        targets[f"{arm}: peak worker RSS <= 2 GB"] = (
            summary[arm]["peak_rss_worker_max_mb"] <= TARGET_WORKER_MB
        )
    targets["outputs byte-identical"] = all(
        summary["identical"] + summary["identical_to_first_run"]
    )
    summary["targets"] = targets
    return summary


def _values(values: Sequence[float], digits: int = 2) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def level_markdown(level: dict[str, Any]) -> str:
    """The table of one level."""
    d, s = level["described"], level["summary"]
    ds = d["dataset"]
    head = (
        f"**{level['name']}**: {ds['files']} files x {ds['entries_per_file']:,} entries "
        f"({ds['mb']:.0f} MB), `--pileup {d['settings']['pileup']} --events-per-batch-type "
        f"{d['settings']['per_batch']} --batches {d['batches']}`: {d['streams']} streams, "
        f"{d['output_rows']:,} rows into {d['output_files']} files from {d['used_rows']:,} "
        f"distinct input rows (planned {d['used_rows_planned']:,}): **{d['level']:.2f} output "
        f"rows per input row used**; per stream x{d['stream_reuse_median']:.0f} (median), "
        f"x{d['stream_reuse_max']:.0f} (max). Used input uncompressed: "
        f"{d['used_uncompressed_mb']:.0f} MB. Reads {d['read_files']} files, "
        f"{d['read_bytes'] / MB:.0f} MB."
    )
    r, per = s["ratios"], s["ratios_per_repetition"]
    rows = []
    for arm, label in (("old", "OLD run"), ("new", "NEW run")):
        a = s[arm]
        rows.append(
            [
                label,
                f"**{a['wall_s']:.2f}** ({_values(a['walls'])})",
                a["cpu_s"],
                f"**{r[f'{arm}_vs_limit']:.2f}** ({_values(per[f'{arm}_vs_limit'])})",
                r[f"{arm}_cpu_vs_limit_cpu"],
                (
                    f"**{r['new_vs_old']:.2f}** ({_values(per['new_vs_old'])}); "
                    f"CPU {r['new_cpu_vs_old_cpu']:.2f} ({_values(per['new_cpu_vs_old_cpu'])})"
                    if arm == "new"
                    else "-"
                ),
                f"{a['scratch_peak_mb']:,.0f} (**{r[f'{arm}_scratch_vs_used']:.2f}** x used)",
                a["peak_rss_worker_max_mb"],
            ]
        )
    lim = s["limit"]
    rows.append(
        [
            f"I/O limit = read {lim['read_s']:.2f} + write {lim['write_s']:.2f}",
            f"**{lim['wall_s']:.2f}** ({_values(lim['walls'])})",
            lim["cpu_s"],
            1,
            1,
            "-",
            "-",
            lim["peak_rss_worker_mb"],
        ]
    )
    headers = [
        "",
        "wall s (reps)",
        "CPU s",
        "x I/O limit (per rep)",
        "CPU x limit CPU",
        "NEW/OLD per pair",
        "scratch peak MB",
        "peak RSS worker MB",
    ]
    identical = sum(s["identical"])
    loads = ", ".join(
        "/".join(f"{rep['load_average'][arm]:.1f}" for arm in rep["order"])
        for rep in level["repetitions"]
    )
    tail = (
        f"Outputs OLD = NEW byte-identical in {identical}/{len(s['identical'])} repetitions "
        f"(every run equal to the first: {all(s['identical_to_first_run'])}). Order per "
        f"repetition: {'; '.join('/'.join(rep['order']) for rep in level['repetitions'])}; "
        f"load average before each: {loads}."
    )
    return "\n\n".join([head, table(headers, rows), tail])


def markdown(results: dict[str, Any]) -> str:
    """Every level's table and the targets."""
    sources = results["sources"]
    parts = [f"# run with reuse: OLD {sources['old']} vs NEW {sources['new']}"]
    for level in results["levels"]:
        if "summary" in level:
            parts.append(level_markdown(level))
        for profile in level.get("profiles", []):
            spots = ", ".join(
                f"{h['label'].strip()} {h['share']:.0%}" for h in profile["hot_spots"][1:]
            )
            parts.append(
                f"Profile of {profile['arm'].upper()} at {level['name']}, `run --workers 1` "
                f"({profile['profiler']}, {profile['profiled_s']:.1f} s in run_plan): {spots}"
            )
    rows = []
    for level in results["levels"]:
        for name, met in level.get("summary", {}).get("targets", {}).items():
            rows.append([level["name"], name, "yes" if met else "**no**"])
    if rows:
        parts.append(table(["level", "target", "met"], rows))
    return "\n\n".join(parts) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reuse",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--old", default=None, help="src directory or git revision")
    parser.add_argument("--new", default=None, help="src directory or git revision")
    parser.add_argument(
        "--levels", default=DEFAULT_LEVELS, help="TARGET:ENTRIES_PER_FILE, comma-separated"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-batch", type=int, default=50, help="events per batch type")
    parser.add_argument("--pileup", default="all")
    parser.add_argument("--out", type=Path, default=Path("bench-data"))
    parser.add_argument(
        "--name",
        default=None,
        help="results: <out>/results/<name>.json and .md (default: reuse; reuse-profile with "
        "--repeat 0)",
    )
    parser.add_argument(
        "--profile", default="", help="ARM:TARGET,... e.g. new:50 (run --workers 1 profiled)"
    )
    args = parser.parse_args(argv)
    if args.name is None:
        args.name = "reuse" if args.repeat > 0 else "reuse-profile"
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs the benchmark; writes and returns the results."""
    args = parse_args(argv)
    out = args.out.resolve()
    started = time.perf_counter()
    sources = {"old": resolve_src(args.old, out), "new": resolve_src(args.new, out)}
    if sources["old"] is not None:
        sys.path.insert(0, str(sources["old"]))  # catalog look-ups with OLD's code
    base = PlanSettings(pileup=args.pileup, per_batch=args.per_batch)
    results: dict[str, Any] = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "sources": {k: str(v) for k, v in sources.items()},
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    with code(sources["old"]):
        prepared = [prepare(level, out, args.workers, base) for level in parse_levels(args.levels)]
    reps: list[list[dict[str, Any]]] = [[] for _ in prepared]
    for index in range(args.repeat):
        for level_reps, level in zip(reps, prepared, strict=True):
            level_reps.append(repetition(index, level, sources, args.workers))
            print(
                f"{level.level.name} rep{index}: "
                + ", ".join(f"{k} {v:.2f}" for k, v in level_reps[-1]["ratios"].items()),
                flush=True,
            )
    results["levels"] = []
    for level, level_reps in zip(prepared, reps, strict=True):
        entry: dict[str, Any] = {"name": level.level.name, "target": level.level.target}
        entry["described"] = level.described
        if level_reps:
            entry["repetitions"] = level_reps
            entry["summary"] = summarise(level, level_reps)
        entry["profiles"] = []
        for item in filter(None, args.profile.split(",")):
            arm, target = item.split(":")
            if float(target) == level.level.target:
                with code(sources[arm]):
                    profile = profile_run(level.root / "planned", level.root / f"profile-{arm}")
                entry["profiles"].append({"arm": arm, **profile})
        results["levels"].append(entry)
    results["elapsed_s"] = time.perf_counter() - started
    directory = out / "results"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{args.name}.json").write_text(json.dumps(results, indent=2, default=str))
    text = markdown(results)
    (directory / f"{args.name}.md").write_text(text)
    print(text)
    return results


if __name__ == "__main__":
    main()
