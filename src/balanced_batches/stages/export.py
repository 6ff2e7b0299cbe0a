"""The `export-jobs` stage: the plan as HTCondor jobs (a DAG of two queues) or Slurm jobs (two
arrays), the planned outputs claimed as this tool's to write.

Each job runs `balanced-batches make --spec spec.json --job I` with only the job
specification at hand (`spec.json`, `plan.npz`, `job.sh`), is idempotent, and leaves
a result record that `balanced-batches status` folds into the catalog. Read jobs run
in any order; write jobs after all of them. Intermediate parts (scratch), result
records and outputs must be on storage every job reaches: a shared file system, or an XRootD
server (`execution.scratch: root://...`, `--output-directory root://...`), for jobs on
grid worker nodes that see nothing of the submit machine.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..catalog import Catalog
from ..config import BatchConfig, ProjectConfig
from ..errors import CatalogError, ConfigError, InputFileError
from ..io.files import is_url
from ..io.trees import branch_layout, opened_tree
from ..rows import layout_from_json, layout_to_json
from ..scratch import records_at, scratch_at
from .plan import load_plan
from .run import PARTS_DELETED, claim_outputs, planned_outputs, reopen_lost_outputs
from .units import (
    Branches,
    JobSpec,
    merge_layout,
    output_branches,
    spec_from_catalog,
    stored_layout,
)

SYSTEMS = ("htcondor", "slurm")

TRANSFERRED = ("spec.json", "plan.npz", "job.sh")


@dataclass(frozen=True)
class ExportedJobs:
    """What `export-jobs` wrote."""

    directory: Path
    read_jobs: list[int]
    write_jobs: list[int]
    submit_command: str


def default_command() -> str:
    """This installation's way to run balanced-batches (the same path must exist on the nodes)."""
    return f"{shlex.quote(sys.executable)} -m balanced_batches"


def job_script(batch: BatchConfig) -> str:
    """The executable of every job: site set-up, then one unit of the plan."""
    command = batch.command or default_command()
    lines = [
        "#!/bin/bash",
        "# one unit of a balanced-batches plan: job.sh JOB_NUMBER",
        "set -euo pipefail",
        *batch.token_setup(),
        *batch.setup,
        f'exec {command} make --spec spec.json --job "$1"',
    ]
    return "\n".join(lines) + "\n"


def htcondor_submit(batch: BatchConfig, jobs_file: str, logs: Path) -> str:
    """A submit description queueing one job per line of `jobs_file`."""
    lines = [
        "universe = vanilla",
        "executable = job.sh",
        "arguments = $(job)",
        "transfer_executable = true",
        "should_transfer_files = YES",
        "when_to_transfer_output = ON_EXIT",
        f"transfer_input_files = {TRANSFERRED[0]}, {TRANSFERRED[1]}",
        f"output = {logs}/job-$(job).out",
        f"error = {logs}/job-$(job).err",
        f"log = {logs}/condor.log",
        f"request_cpus = {batch.cores}",
        f"request_memory = {batch.memory_mb}",
        f"request_disk = {batch.disk_mb * 1024}",
        f"+MaxRuntime = {batch.walltime_seconds}",
        *batch.credential_submit_lines(),
        *batch.extra_lines,
        f"queue job from {jobs_file}",
    ]
    return "\n".join(lines) + "\n"


def slurm_array(batch: BatchConfig, jobs_file: str, count: int, directory: Path) -> str:
    """An sbatch array script running the jobs listed in `jobs_file`, one per array task."""
    lines = [
        "#!/bin/bash",
        f"#SBATCH --array=0-{count - 1}",
        f"#SBATCH --cpus-per-task={batch.cores}",
        f"#SBATCH --mem={batch.memory_mb}M",
        f"#SBATCH --time={batch.walltime}",
        f"#SBATCH --output={directory}/records/logs/job-%A-%a.out",
        *(line if line.startswith("#SBATCH") else f"#SBATCH {line}" for line in batch.extra_lines),
        "set -euo pipefail",
        f'job=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {directory}/{jobs_file})',
        "sandbox=$(mktemp -d)",
        f'cp {" ".join(f"{directory}/{name}" for name in TRANSFERRED)} "$sandbox"',
        'cd "$sandbox"',
        'bash job.sh "$job"',
    ]
    return "\n".join(lines) + "\n"


def export_jobs(
    spec: JobSpec, system: str, directory: Path, only: set[int] | None = None
) -> ExportedJobs:
    """Writes the job specification and submit files for `system` into `directory`."""
    if system not in SYSTEMS:
        raise ConfigError(f"--system = {system!r}: expected one of {', '.join(SYSTEMS)}")
    if spec.layout is None:
        raise CatalogError("the branch layout is unknown; export needs one counted input file")
    directory = directory.resolve()
    n_reads = len(spec.plan.read_files)
    all_jobs = range(n_reads + spec.plan.n_write_units)
    wanted = [job for job in all_jobs if only is None or job in only]
    reads = [job for job in wanted if job < n_reads]
    writes = [job for job in wanted if job >= n_reads]
    spec.save(directory)
    (directory / "job.sh").write_text(job_script(spec.config.batch))
    (directory / "job.sh").chmod(0o755)
    logs = directory / "records" / "logs"  # on the submit machine, whatever the records
    logs.mkdir(parents=True, exist_ok=True)
    (directory / "read-jobs.txt").write_text("".join(f"{job}\n" for job in reads))
    (directory / "write-jobs.txt").write_text("".join(f"{job}\n" for job in writes))
    batch = spec.config.batch
    if system == "htcondor":
        (directory / "read.sub").write_text(htcondor_submit(batch, "read-jobs.txt", logs))
        (directory / "write.sub").write_text(htcondor_submit(batch, "write-jobs.txt", logs))
        stages = [name for name, jobs in (("read", reads), ("write", writes)) if jobs]
        dag = [f"JOB {stage} {stage}.sub DIR {directory}" for stage in stages]
        if len(stages) == 2:
            dag.append("PARENT read CHILD write")
        (directory / "balanced-batches.dag").write_text("\n".join(dag) + "\n")
        command = f"condor_submit_dag {directory / 'balanced-batches.dag'}"
    else:
        script = ["#!/bin/bash", "set -euo pipefail", f"cd {directory}"]
        if reads:
            (directory / "read.sbatch").write_text(
                slurm_array(batch, "read-jobs.txt", len(reads), directory)
            )
            script.append("reads=$(sbatch --parsable read.sbatch)")
        if writes:
            (directory / "write.sbatch").write_text(
                slurm_array(batch, "write-jobs.txt", len(writes), directory)
            )
            after = " --dependency=afterok:$reads" if reads else ""
            script.append(f"sbatch{after} write.sbatch")
        (directory / "submit.sh").write_text("\n".join(script) + "\n")
        (directory / "submit.sh").chmod(0o755)
        command = f"bash {directory / 'submit.sh'}"
    return ExportedJobs(directory, reads, writes, command)


def fold_records(catalog: Catalog, records: str | Path, config: ProjectConfig) -> int:
    """Takes batch jobs' result records (a directory or a root:// URL) into the catalog;
    returns how many were new. A read job's input must have the stored layout's branches, as
    far as the outputs of `config` keep them."""
    kept = output_branches(config)
    states = {kind: catalog.unit_states(kind) for kind in ("read", "write")}
    folded = 0
    where = records_at(str(records))
    for name in where.names(""):
        if not (name.startswith("job-") and name.endswith(".json")):
            continue
        record = where.get_json(name)
        if record is None:
            continue
        kind, unit, status = record["kind"], int(record["unit"]), record["status"]
        if states[kind].get(unit) == status == "done":
            continue
        if kind == "read" and status == "done":
            error = _fold_layout(catalog, record, kept)
            if error is not None:  # an input unlike the others: its job counts as failed
                status, record = "failed", {**record, "error": error}
        result = None
        if status == "done":
            result = (
                {"rows": record["rows"], "parts": record["parts"]}
                if kind == "read"
                else {"outputs": record["outputs"]}
            )
            if kind == "write":
                written = [(o["path"], o["size"]) for o in record["outputs"]]
                catalog.record_written("output", written)
        catalog.set_unit(kind, unit, status, error=record.get("error"), result=result)
        folded += 1
    return folded


def _fold_layout(catalog: Catalog, record: dict[str, Any], kept: Branches) -> str | None:
    """Stores the branch layout a read job found (`merge_layout`); the reason it cannot be,
    if the input's `kept` branches differ from the stored layout's."""
    stored = stored_layout(catalog)
    where = record.get("path", f"read job {record['job']}")  # older records name no file
    try:
        merged = merge_layout(stored, layout_from_json(record["layout"]), where, kept)
    except InputFileError as err:
        return str(err)
    if merged != stored:
        catalog.set_meta("layout", layout_to_json(merged))
    return None


def export_plan(
    catalog: Catalog,
    config: ProjectConfig,
    workdir: Path,
    directory: Path,
    system: str,
    *,
    only_missing: bool = False,
    overwrite: bool = False,
    keep_scratch: bool = False,
) -> ExportedJobs:
    """Writes the job specification and submit files of the stored plan into `directory`;
    `only_missing`: only the jobs whose units are not done (result records folded in first).

    With a remote scratch directory the jobs leave their result records beside their parts
    (`<scratch>/records`), so that no job needs the submit machine's disks; otherwise in
    `<directory>/records`. The last write job deletes the intermediate parts unless
    `keep_scratch`."""
    plan = load_plan(catalog)
    spec = spec_from_catalog(catalog, plan, config, workdir)
    remote = is_url(spec.scratch)
    records = f"{spec.scratch.rstrip('/')}/records" if remote else str(directory / "records")
    if only_missing:
        fold_records(catalog, records, config)
        reopen_lost_outputs(catalog, scratch_at(spec.scratch))
        if any(state != "done" for state in catalog.unit_states("read").values()):
            records_at(records).remove_json(PARTS_DELETED)  # the read jobs must run again
    if spec.layout is None:
        first = spec.files[int(plan.read_files[0])].path
        with opened_tree(first, config.inputs.tree) as tree:
            spec = dataclasses.replace(spec, layout=branch_layout(tree))
    spec = dataclasses.replace(spec, records=records, keep_scratch=keep_scratch)
    claim_outputs(catalog, planned_outputs(spec), config, overwrite)
    pending = None
    if only_missing:
        n_reads = len(plan.read_files)
        states = catalog.unit_states("read")
        pending = {unit for unit in range(n_reads) if states.get(unit) != "done"}
        states = catalog.unit_states("write")
        pending |= {n_reads + unit for unit, state in states.items() if state != "done"}
    exported = export_jobs(spec, system, directory, pending)
    catalog.set_meta("export", {"directory": str(directory), "records": records})
    return exported
