"""--cluster htcondor|slurm: dask-jobqueue job scripts request what the `batch` section says.

dask-jobqueue writes its job scripts without a batch system; submitting them needs one.
"""

from __future__ import annotations

from pathlib import Path

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


def test_htcondor_jobs_carry_the_grid_credentials_and_write_their_logs_where_asked(
    tmp_path: Path,
) -> None:
    batch = BATCH.model_copy(update={"x509_proxy": True, "oauth_services": ["wlcg", "cms"]})
    cluster = jobqueue_cluster("htcondor", batch, host="127.0.0.1", logs=tmp_path / "logs")
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "use_x509userproxy = true" in script
    assert "use_oauth_services = wlcg, cms" in script
    assert "export BEARER_TOKEN_FILE=" in script and "/wlcg.use" in script
    assert f"LogDirectory = {tmp_path / 'logs'}" in script
    assert "Output = $(LogDirectory)/worker-" in script
    assert (tmp_path / "logs").is_dir()
    # Slurm has no credentials to ask for
    slurm = job_script("slurm", batch)
    assert "BEARER_TOKEN_FILE" not in slurm


def test_a_machine_that_cannot_submit_jobs_gets_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from balanced_batches.engines import make_engine

    monkeypatch.setenv("PATH", str(tmp_path))
    for system, command in (("slurm", "sbatch"), ("htcondor", "condor_submit")):
        with pytest.raises(ConfigError, match=f"--cluster {system}: {command} is not on PATH"):
            make_engine(2, cluster=system, batch=BATCH)
