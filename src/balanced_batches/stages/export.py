"""The `export-jobs` stage: the plan as HTCondor or Slurm jobs (submit files by
`engines.batch`), the planned outputs claimed as this tool's to write."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..catalog import Catalog
from ..config import ProjectConfig
from ..engines.batch import ExportedJobs, export_jobs, fold_records
from ..io.outputs import output_directory
from ..io.trees import branch_layout, opened_tree
from ..jobs import spec_from_catalog
from .make import output_names
from .plan import load_plan
from .run import claim_outputs, reopen_lost_outputs


def export_plan(
    catalog: Catalog,
    config: ProjectConfig,
    workdir: Path,
    directory: Path,
    system: str,
    *,
    only_missing: bool = False,
    overwrite: bool = False,
) -> ExportedJobs:
    """Writes the job specification and submit files of the stored plan into `directory`;
    `only_missing`: only the jobs whose units are not done (result records folded in first)."""
    plan = load_plan(catalog)
    records = directory / "records"
    spec = spec_from_catalog(catalog, plan, config, workdir)
    if only_missing:
        if records.is_dir():
            fold_records(catalog, records)
        reopen_lost_outputs(catalog, Path(spec.scratch))
    if spec.layout is None:
        first = spec.files[int(plan.read_files[0])].path
        with opened_tree(first, config.inputs.tree) as tree:
            spec = dataclasses.replace(spec, layout=branch_layout(tree, first))
    spec = dataclasses.replace(spec, records=str(records))
    names = output_names(config.output.name, config.output.format, plan.n_output_files)
    claim_outputs(catalog, output_directory(config.output.directory), names, config, overwrite)
    pending = None
    if only_missing:
        n_reads = len(plan.read_files)
        states = catalog.unit_states("read")
        pending = {unit for unit in range(n_reads) if states.get(unit) != "done"}
        states = catalog.unit_states("write")
        pending |= {n_reads + unit for unit, state in states.items() if state != "done"}
    exported = export_jobs(spec, system, directory, pending)
    catalog.set_meta("export", {"directory": str(directory), "records": str(records)})
    return exported
