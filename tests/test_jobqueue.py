"""--cluster htcondor|slurm: dask-jobqueue job scripts request what the `batch` section says.

dask-jobqueue writes its job scripts without a batch system; submitting them needs one.
"""

from __future__ import annotations

import pytest

from balanced_batches.config import BatchConfig
from balanced_batches.engines.jobqueue import jobqueue_cluster
from balanced_batches.errors import ConfigError

pytest.importorskip("dask_jobqueue")

BATCH = BatchConfig(
    cores=2,
    memory_mb=3000,
    disk_mb=7000,
    walltime="01:30:00",
    setup=["source /cvmfs/sft.cern.ch/lcg/views/setup.sh"],
)


def job_script(system: str, batch: BatchConfig) -> str:
    cluster = jobqueue_cluster(system, batch, host="127.0.0.1")
    try:
        script: str = cluster.job_script()
    finally:
        cluster.close()
    return script


def test_slurm_job_script_has_the_configured_resources() -> None:
    batch = BATCH.model_copy(update={"extra_lines": ["#SBATCH --account=cms", "--partition=short"]})
    script = job_script("slurm", batch)
    assert "#SBATCH --cpus-per-task=2" in script
    assert "#SBATCH --mem=3G" in script  # dask-jobqueue rounds to whole GB
    assert "#SBATCH -t 01:30:00" in script
    assert "#SBATCH --account=cms" in script
    assert "#SBATCH --partition=short" in script
    assert "source /cvmfs/sft.cern.ch/lcg/views/setup.sh" in script
    assert "dask_worker tcp://127.0.0.1:" in script


def test_htcondor_job_script_has_the_configured_resources() -> None:
    batch = BATCH.model_copy(update={"extra_lines": ["accounting_group = cms.higgs"]})
    script = job_script("htcondor", batch)
    assert "MY.DaskWorkerCores = 2" in script
    assert "MY.DaskWorkerMemory = 3000000000" in script
    assert "MY.DaskWorkerDisk = 7000000000" in script
    assert "+MaxRuntime = 5400" in script
    assert "accounting_group = cms.higgs" in script
    assert "source /cvmfs/sft.cern.ch/lcg/views/setup.sh" in script


def test_unknown_cluster_and_bad_submit_lines_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="htcondor, slurm"):
        jobqueue_cluster("pbs", BATCH)
    with pytest.raises(ConfigError, match="key = value"):
        jobqueue_cluster("htcondor", BATCH.model_copy(update={"extra_lines": ["no equals"]}))
