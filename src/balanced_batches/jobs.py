"""The units of work of a plan, and the portable description a batch job receives.

A `JobSpec` holds everything the units need (configuration, plan, input files,
branch layout, scratch location) without the catalog: `run` builds it from the
catalog, `export-jobs` saves it next to submit files, and `make --spec` loads it on
a worker node. Units are enumerated in one place, `build_jobs`: job numbers count
the read units first, then the write units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .catalog import Catalog
from .config import ProjectConfig
from .errors import CatalogError
from .io.files import write_json
from .plan_model import Plan
from .regions import build_selection
from .rows import BranchLayout, layout_from_json, layout_to_json
from .shards import plan_scratch
from .stages.make import ReadTask, WriteTask, read_task, write_task

SPEC_NAME = "spec.json"
PLAN_ARRAYS_NAME = "plan.npz"


@dataclass(frozen=True)
class SourceFile:
    """An input file as counted."""

    path: str
    size: int | None
    mtime: float | None


@dataclass(frozen=True)
class JobSpec:
    """Everything the units of a plan need."""

    config: ProjectConfig
    plan: Plan
    files: dict[int, SourceFile]
    layout: BranchLayout | None
    scratch: str
    records: str | None = None  # where batch jobs leave their result records

    def provenance(self) -> dict[str, Any]:
        """What the provenance branches' integers mean (only what plan and seed decide)."""
        wanted = {int(i) for i in self.plan.read_files}
        return {
            "version": __version__,
            "process_keys": list(self.plan.process_keys),
            "regions": list(self.plan.region_names),
            "source_files": {str(i): f.path for i, f in self.files.items() if i in wanted},
            "seed": self.plan.seed,
            "events_per_batch_type": self.plan.per_batch,
            "batches": self.plan.n_batches,
            "batches_per_file": self.plan.batches_per_file,
        }

    def save(self, directory: Path) -> list[Path]:
        """Writes `spec.json` and `plan.npz` into a directory; returns both paths."""
        parameters, arrays = self.plan.to_arrays()
        spec = {
            "version": __version__,
            "config": self.config.model_dump(mode="json"),
            "plan": parameters,
            "files": {str(i): [f.path, f.size, f.mtime] for i, f in self.files.items()},
            "layout": None if self.layout is None else layout_to_json(self.layout),
            "scratch": self.scratch,
            "records": self.records,
        }
        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / SPEC_NAME, spec, sort_keys=False)  # types and processes: order
        with (directory / PLAN_ARRAYS_NAME).open("wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
        return [directory / SPEC_NAME, directory / PLAN_ARRAYS_NAME]

    @classmethod
    def load(cls, spec_path: Path) -> JobSpec:
        """Reads a spec saved by `save` (the arrays file lies beside it)."""
        try:
            spec = json.loads(spec_path.read_text())
            with np.load(spec_path.parent / PLAN_ARRAYS_NAME) as stored:
                arrays = {name: stored[name] for name in stored.files}
        except (OSError, ValueError) as err:
            raise CatalogError(f"{spec_path}: not a readable job specification ({err})") from err
        return cls(
            config=ProjectConfig.model_validate(spec["config"]),
            plan=Plan.from_arrays(spec["plan"], arrays),
            files={int(i): SourceFile(*entry) for i, entry in spec["files"].items()},
            layout=None if spec["layout"] is None else layout_from_json(spec["layout"]),
            scratch=spec["scratch"],
            records=spec.get("records"),
        )


def stored_layout(catalog: Catalog) -> BranchLayout | None:
    """The branch layout the read units found, if any ran."""
    stored = catalog.get_meta("layout")
    return None if stored is None else layout_from_json(stored)


def spec_from_catalog(
    catalog: Catalog, plan: Plan, config: ProjectConfig, workdir: Path
) -> JobSpec:
    """The job specification of the catalog's plan."""
    files = {
        record.id: SourceFile(record.path, record.size, record.mtime) for record in catalog.files()
    }
    scratch = plan_scratch(config, workdir, plan.id)
    return JobSpec(config, plan, files, stored_layout(catalog), str(scratch))


@dataclass(frozen=True)
class Jobs:
    """Every unit of work of a plan, in job order: read units first, then write units."""

    reads: list[ReadTask]
    writes: list[WriteTask] | None  # None until the branch layout is known


def build_jobs(spec: JobSpec) -> Jobs:
    """Enumerates the plan's units of work (the only place that does)."""
    scratch = Path(spec.scratch)
    selection = build_selection(spec.config)
    reads = []
    for unit, file_id in enumerate(spec.plan.read_files):
        source = spec.files[int(file_id)]
        stat = None if source.size is None else (source.size, source.mtime or 0.0)
        reads.append(read_task(spec.plan, unit, source.path, spec.config, scratch, stat, selection))
    if spec.layout is None:
        return Jobs(reads, None)
    provenance = json.dumps(spec.provenance())
    writes = [
        write_task(spec.plan, unit, spec.config, scratch, spec.layout, provenance)
        for unit in range(spec.plan.n_write_units)
    ]
    return Jobs(reads, writes)
