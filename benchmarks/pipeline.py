"""The measured stages: `count`, `plan` and `run` of the CLI, and the I/O-limit commands.

Each function runs one command in a subprocess through :func:`monitor.measure` and returns a
JSON-ready record: wall and CPU time, peak RSS per process, bytes uproot requested from the
files the stage reads relative to their size, and stage-specific sizes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .datasets import BINNING, CAMPAIGN, CLI, PROCESS_TYPES
from .monitor import Measurement, directory_size, measure, python_command

MB = 2.0**20


@dataclass(frozen=True)
class PlanSettings:
    """How the benchmark plans: the original production's options plus a fixed batch count."""

    pileup: str = "PU200"
    per_batch: int = 15
    batches: int | None = None
    batches_per_file: int = 1
    compression: str = "zstd:5"
    seed: int = 12345


@dataclass(frozen=True)
class PlanFacts:
    """What a stored plan reads and writes (looked up in the catalog with the library)."""

    n_batches: int
    n_streams: int
    per_batch: int
    n_output_files: int
    read_paths: list[str]
    read_entries: int
    read_bytes: int

    @property
    def output_rows(self) -> int:
        """Rows `run` writes."""
        return self.n_batches * self.n_streams * self.per_batch


def plan_facts(workdir: Path) -> PlanFacts:
    """The stored plan of a working directory."""
    from balanced_batches.catalog import Catalog
    from balanced_batches.stages.plan import load_plan

    catalog = Catalog.open(workdir)
    try:
        plan = load_plan(catalog)
        records = {record.id: record for record in catalog.files()}
    finally:
        catalog.close()
    read = [records[int(i)] for i in plan.read_files]
    return PlanFacts(
        n_batches=plan.n_batches,
        n_streams=plan.n_streams,
        per_batch=plan.per_batch,
        n_output_files=plan.n_output_files,
        read_paths=[record.path for record in read],
        read_entries=sum(record.entries or 0 for record in read),
        read_bytes=sum(record.size or 0 for record in read),
    )


def _summary(measurement: Measurement, paths: list[str] | None) -> dict[str, Any]:
    record: dict[str, Any] = measurement.as_dict()
    record.pop("stdout")
    record.pop("command")
    if paths is not None:
        size = sum(Path(p).stat().st_size for p in paths)
        wanted = set(paths)
        traced = sum(n for name, n in measurement.traced_bytes.items() if name in wanted)
        record["input_files"] = len(paths)
        record["input_bytes"] = size
        record["traced_input_bytes"] = traced
        record["bytes_read_ratio"] = traced / size if size else None
        record["mb_per_s"] = size / MB / measurement.wall_s
    return record


def count_stage(
    workdir: Path,
    file_list: Path,
    workers: int,
    paths: list[str],
    binning: Path = BINNING,
    entries: int | None = None,
) -> dict[str, Any]:
    """`balanced-batches count` of every listed file (`entries`: how many they hold)."""
    measurement = measure(
        [
            CLI,
            "count",
            "--workdir",
            str(workdir),
            "--prod-campaign",
            CAMPAIGN,
            "--process-types",
            str(PROCESS_TYPES),
            "--pt-abseta-bins",
            str(binning),
            "--input-file-list",
            str(file_list),
            "--workers",
            str(workers),
        ]
    )
    record = _summary(measurement, paths)
    if entries is not None:
        record["entries"] = entries
        record["entries_per_s"] = entries / measurement.wall_s
    return record


def plan_stage(workdir: Path, settings: PlanSettings, output: Path) -> dict[str, Any]:
    """`balanced-batches plan`; records the plan's size and the catalog's."""
    command = [
        CLI, "plan", "--workdir", str(workdir), "--pileup", settings.pileup,
        "--events-per-batch-type", str(settings.per_batch), "--output-directory", str(output),
        "--batches-per-file", str(settings.batches_per_file),
        "--compression", settings.compression, "--seed", str(settings.seed),
    ]  # fmt: skip
    if settings.batches is not None:
        command += ["--batches", str(settings.batches)]
    record = _summary(measure(command), None)
    facts = plan_facts(workdir)
    record.update(
        batches=facts.n_batches,
        streams=facts.n_streams,
        output_files=facts.n_output_files,
        output_rows=facts.output_rows,
        catalog_mb=(workdir / "balanced-batches.sqlite").stat().st_size / MB,
    )
    return record


def run_stage(workdir: Path, workers: int, facts: PlanFacts, output: Path) -> dict[str, Any]:
    """`balanced-batches run`; the scratch directory is watched for its peak size."""
    measurement = measure(
        [CLI, "run", "--workdir", str(workdir), "--workers", str(workers)],
        watch=workdir / "scratch",
    )
    record = _summary(measurement, facts.read_paths)
    record.update(
        entries=facts.read_entries,
        entries_per_s=facts.read_entries / measurement.wall_s,
        output_rows=facts.output_rows,
        output_rows_per_s=facts.output_rows / measurement.wall_s,
        output_files=facts.n_output_files,
        output_mb=directory_size(output) / MB,
        scratch_peak_mb=measurement.watched_peak_bytes / MB,
    )
    return record


def _write_list(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def io_stage(
    mode: str,
    paths: list[str],
    scratch: Path,
    workers: int,
    *,
    branches: list[str] | None = None,
    rows: int = 0,
    output_files: int = 1,
    compression: str = "zstd:5",
    outputs: list[str] | None = None,
) -> dict[str, Any]:
    """One I/O-limit command (`read`, `select`, `write` or `rewrite`); `seconds` is the limit
    itself."""
    writes = mode in ("write", "rewrite")
    scratch.mkdir(parents=True, exist_ok=True)
    files = _write_list(scratch / f"{mode}-files.txt", paths)
    result = scratch / f"{mode}-result.json"
    arguments: list[object] = [mode, "--files", files, "--workers", workers, "--result", result]
    if branches:
        arguments += ["--branches", ",".join(branches)]
    if writes:
        arguments += ["--rows", rows, "--output-files", output_files]
        arguments += ["--compression", compression, "--directory", scratch / "write-out"]
        if outputs:
            arguments += ["--outputs", _write_list(scratch / "outputs.txt", outputs)]
    measurement = measure(python_command("benchmarks.iolimit", *arguments))
    record = _summary(measurement, None if writes else paths)
    inner = json.loads(result.read_text())
    record["seconds"] = inner.pop("seconds")
    record["detail"] = inner
    if not writes:
        record["entries_per_s"] = inner["entries"] / record["seconds"]
        record["mb_per_s"] = record["input_bytes"] / MB / record["seconds"]
    return record


def baseline_stage(*arguments: object) -> dict[str, Any]:
    """A start-up baseline of `benchmarks.monitor` (`imports`, `local-engine N`)."""
    return _summary(measure(python_command("benchmarks.monitor", *arguments)), None)


def selection_branches() -> list[str]:
    """Branches the standard region selection reads (from the library's own selection)."""
    from balanced_batches.config import Binning, ProjectConfig
    from balanced_batches.regions import build_selection

    binning = Binning(pt=[(20.0, 25.0, 5.0)], abseta=[(0.0, 2.4, 2.4)])
    return sorted(build_selection(ProjectConfig(binning=binning)).branches)
