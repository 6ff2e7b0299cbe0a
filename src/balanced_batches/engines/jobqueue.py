"""Dask workers started as HTCondor or Slurm jobs through dask-jobqueue.

The resources and site lines come from the `batch` section of the configuration, the
same one `export-jobs` uses. Imported only when `--cluster` is given.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..config import BatchConfig
from ..errors import ConfigError

CLUSTERS = ("htcondor", "slurm")
# what dask-jobqueue calls to start a worker job: without it the job fails in the background
SUBMIT_COMMANDS = {"htcondor": "condor_submit", "slurm": "sbatch"}
# Worker processes start without Dask's MALLOC_TRIM_THRESHOLD_, as local ones do (see
# `worker_server.WORKER_ENVIRONMENT`): the job's nanny reads this before it starts its worker.
KEEP_ALLOCATOR_ADAPTIVE = (
    "export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON=\"{'MALLOC_TRIM_THRESHOLD_': None}\""
)


def _submit_lines(lines: list[str]) -> dict[str, str]:
    """`key = value` submit-file lines as the mapping HTCondorCluster takes."""
    pairs = {}
    for line in lines:
        key, equals, value = line.partition("=")
        if not equals:
            raise ConfigError(f"batch.extra_lines: {line!r} is not a 'key = value' submit line")
        pairs[key.strip()] = value.strip()
    return pairs


def require_submit_command(system: str) -> None:
    """A ConfigError unless this machine can submit jobs to `system` (dask-jobqueue would
    only log the failure and leave its caller waiting for workers)."""
    command = SUBMIT_COMMANDS.get(system)
    if command is not None and shutil.which(command) is None:
        raise ConfigError(
            f"--cluster {system}: {command} is not on PATH; run on a machine that submits "
            f"jobs to the {system} cluster, or use export-jobs"
        )


def jobqueue_cluster(
    system: str, batch: BatchConfig, host: str | None = None, logs: Path | None = None
) -> Any:
    """A dask-jobqueue cluster (not yet scaled) whose jobs request what `batch` says.

    HTCondor jobs also carry the grid credentials `batch` asks for, as exported jobs do. The
    workers' standard output and error go to `logs`: HTCondor brings them back there from
    worker nodes that share no file system with this machine; Slurm writes them there from
    the node, which must see it (as it must see the directory of its default `slurm-*.out`)."""
    if system not in CLUSTERS:
        raise ConfigError(f"--cluster = {system!r}: expected one of {', '.join(CLUSTERS)}")
    try:
        from dask_jobqueue.htcondor import HTCondorCluster
        from dask_jobqueue.slurm import SLURMCluster
    except ImportError as err:
        raise ConfigError(
            "--cluster needs dask-jobqueue: pip install 'balanced-batches[batch]'"
        ) from err
    token = batch.token_setup() if system == "htcondor" else []
    common: dict[str, Any] = {
        "cores": batch.cores,
        "processes": 1,
        "memory": f"{batch.memory_mb}MB",
        "job_script_prologue": [KEEP_ALLOCATOR_ADAPTIVE, *token, *batch.setup],
        "scheduler_options": {"host": host} if host else {},
        "log_directory": str(logs) if logs is not None else None,
    }
    if system == "slurm":
        directives = [line.removeprefix("#SBATCH").strip() for line in batch.extra_lines]
        return SLURMCluster(**common, walltime=batch.walltime, job_extra_directives=directives)
    extra = {"+MaxRuntime": str(batch.walltime_seconds)}
    extra.update(_submit_lines(batch.credential_submit_lines() + batch.extra_lines))
    return HTCondorCluster(**common, disk=f"{batch.disk_mb}MB", job_extra_directives=extra)
