"""export-jobs: submit files that batch systems expand as planned, and jobs that reproduce `run`.

The jobs are run here the way HTCondor runs them: each in a fresh sandbox holding only the
transferred files, with the command line from the submit description.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from balanced_batches.config import BatchConfig
from balanced_batches.stages.export import htcondor_submit, job_script
from conftest import (
    BINNING,
    PROCESS_TYPES,
    Dataset,
    Production,
    assert_same_bytes,
    cli,
    count_args,
    reference_plan_args,
)

TRANSFERRED = ("spec.json", "plan.npz", "job.sh")


def planned(workdir: Path, dataset: Dataset) -> Production:
    """Counted and planned like the reference production, not run."""
    cli(*count_args(workdir, dataset.file_list))
    cli(*reference_plan_args(workdir))
    return Production(workdir)


def run_in_sandbox(jobs: Path, job: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """One job as HTCondor runs it: a new directory with only the transferred files."""
    sandbox = Path(os.path.join(tmp_path, f"sandbox-{job}-{len(list(tmp_path.iterdir()))}"))
    sandbox.mkdir()
    for name in TRANSFERRED:
        shutil.copy(jobs / name, sandbox / name)
    return subprocess.run(
        ["bash", "job.sh", str(job)], cwd=sandbox, capture_output=True, text=True, check=False
    )


def job_numbers(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


def test_htcondor_submit_expands_to_the_planned_jobs(
    tmp_path: Path, dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    htcondor2 = pytest.importorskip("htcondor2")
    workdir = tmp_path / "work"
    project = tmp_path / "project.yaml"
    project.write_text(
        yaml.safe_dump(
            {
                "processes": str(PROCESS_TYPES),
                "binning": str(BINNING),
                "inputs": {"file_list": str(dataset.file_list), "campaign": "prod_Phase2_v2"},
                "batch": {
                    "cores": 2,
                    "memory_mb": 3000,
                    "disk_mb": 5000,
                    "walltime": "02:30:00",
                    "extra_lines": ["accounting_group = cms.higgs", '+JobFlavour = "workday"'],
                },
            }
        )
    )
    cli("count", "--workdir", workdir, "--config", project, "--workers", 1)
    cli(*reference_plan_args(workdir))
    jobs = tmp_path / "jobs"
    result = cli("export-jobs", "--workdir", workdir, "--directory", jobs)
    assert "condor_submit_dag" in result.stdout
    monkeypatch.chdir(jobs)
    reads, writes = job_numbers(jobs / "read-jobs.txt"), job_numbers(jobs / "write-jobs.txt")
    assert reads == list(range(len(reads))) and writes[0] == len(reads)
    for name, expected in (("read.sub", reads), ("write.sub", writes)):
        submit = htcondor2.Submit((jobs / name).read_text())
        assert [int(item["job"]) for item in submit.itemdata()] == expected
        assert submit["request_cpus"] == "2"
        assert submit["request_memory"] == "3000"
        assert submit["request_disk"] == str(5000 * 1024)
        assert submit["MY.MaxRuntime"] == str(2 * 3600 + 30 * 60)
        assert submit["accounting_group"] == "cms.higgs"
        assert submit["executable"] == "job.sh"
        assert submit["arguments"] == "$(job)"
    dag = (jobs / "balanced-batches.dag").read_text()
    assert "PARENT read CHILD write" in dag


def test_jobs_in_sandboxes_reproduce_run_byte_for_byte(
    tmp_path: Path, dataset: Dataset, reference: Production
) -> None:
    production = planned(tmp_path / "work", dataset)
    jobs = tmp_path / "jobs"
    cli("export-jobs", "--workdir", production.workdir, "--directory", jobs)
    sandboxes = tmp_path / "sandboxes"
    sandboxes.mkdir()
    for job in job_numbers(jobs / "read-jobs.txt") + job_numbers(jobs / "write-jobs.txt"):
        finished = run_in_sandbox(jobs, job, sandboxes)
        assert finished.returncode == 0, finished.stderr
    made = production.outputs()
    assert_same_bytes(made, reference)
    # a rerun of a finished job changes nothing
    before = {p: p.stat().st_mtime_ns for p in made}
    again = run_in_sandbox(jobs, job_numbers(jobs / "write-jobs.txt")[0], sandboxes)
    assert again.returncode == 0 and "already done" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in made} == before
    # status folds the result records into the catalog
    status = cli("status", "--workdir", production.workdir).stdout
    assert "batch-job records" in status
    assert "failed" not in status.split("jobs")[-1].split("\n", 3)[-1]
    cli("check", "--workdir", production.workdir)
    # --only-missing: a lost output brings back exactly its write job
    made[0].unlink()
    cli("export-jobs", "--workdir", production.workdir, "--directory", jobs, "--only-missing")
    assert job_numbers(jobs / "read-jobs.txt") == []
    assert job_numbers(jobs / "write-jobs.txt") == [job_numbers(jobs / "write-jobs.txt")[0]]
    rerun = run_in_sandbox(jobs, job_numbers(jobs / "write-jobs.txt")[0], sandboxes)
    assert rerun.returncode == 0, rerun.stderr
    assert made[0].read_bytes() == reference.outputs()[0].read_bytes()


def test_slurm_arrays_reproduce_run(
    tmp_path: Path, dataset: Dataset, reference: Production
) -> None:
    production = planned(tmp_path / "work", dataset)
    jobs = tmp_path / "jobs"
    result = cli(
        "export-jobs", "--workdir", production.workdir, "--directory", jobs, "--system", "slurm"
    )
    assert "submit.sh" in result.stdout
    submit = (jobs / "submit.sh").read_text()
    assert "sbatch --parsable read.sbatch" in submit
    assert "--dependency=afterok:$reads write.sbatch" in submit
    for stage in ("read", "write"):
        script = jobs / f"{stage}.sbatch"
        tasks = len(job_numbers(jobs / f"{stage}-jobs.txt"))
        assert f"#SBATCH --array=0-{tasks - 1}" in script.read_text()
        for task in range(tasks):  # as slurmd runs an array task
            env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task)}
            finished = subprocess.run(
                ["bash", str(script)], env=env, capture_output=True, text=True, check=False
            )
            assert finished.returncode == 0, finished.stderr
    assert_same_bytes(production.outputs(), reference)


def test_export_rejects_an_unknown_system(tmp_path: Path, dataset: Dataset) -> None:
    production = planned(tmp_path / "work", dataset)
    result = cli("export-jobs", "--workdir", production.workdir, "--system", "pbs", expect=2)
    assert "htcondor, slurm" in result.stderr


def test_grid_credentials_reach_the_jobs(tmp_path: Path) -> None:
    """`batch.x509_proxy` and `batch.oauth_services` become HTCondor's credential commands,
    and a job finds the token HTCondor left in $_CONDOR_CREDS as BEARER_TOKEN_FILE."""
    htcondor2 = pytest.importorskip("htcondor2")
    batch = BatchConfig(
        x509_proxy=True, oauth_services=["wlcg", "cms"], command="printenv BEARER_TOKEN_FILE;"
    )
    submit = htcondor2.Submit(htcondor_submit(batch, "read-jobs.txt", tmp_path / "logs"))
    assert submit["use_x509userproxy"] == "true"
    assert submit["use_oauth_services"] == "wlcg, cms"
    script = tmp_path / "job.sh"
    script.write_text(job_script(batch))
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "wlcg.use").write_text("token")
    env = {"PATH": os.environ["PATH"], "_CONDOR_CREDS": str(creds)}
    shown = subprocess.run(
        ["bash", str(script), "3"], env=env, capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == str(creds / "wlcg.use")
    plain = BatchConfig(command="sh -c 'printenv BEARER_TOKEN_FILE || echo none'")
    script.write_text(job_script(plain))
    shown = subprocess.run(["bash", str(script), "3"], env=env, capture_output=True, text=True)
    assert shown.stdout.strip() == "none"
    assert "use_x509userproxy" not in htcondor_submit(plain, "x", tmp_path)
