"""A real single-node Slurm cluster on loopback runs exported job arrays and dask-jobqueue workers.

The cluster (munged, slurmctld, slurmd from the Debian packages `slurmctld slurmd slurm-client
munge`) is started once for the module in a scratch directory, with a slurm.conf that needs
neither cgroups nor systemd, and is always shut down afterwards. Without root the module is
skipped; without the binaries, or when munged or the node does not come up in time, it is skipped
too, or fails under BB_REQUIRE_SERVICES=1 (tests/services.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import (
    BINNING,
    EXECUTABLE,
    PROCESS_TYPES,
    Dataset,
    Production,
    assert_same_bytes,
    cli,
    count_args,
    reference_plan_args,
)
from services import impossible_here, unavailable

BINARIES = ("munged", "munge", "slurmctld", "slurmd", "sinfo", "squeue", "sbatch", "scontrol")

STARTUP_SECONDS = 20
JOBS_SECONDS = 120
MUNGE_RUN = Path("/run/munge")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def slurm_conf(scratch: Path, host: str) -> str:
    return "\n".join(
        [
            "ClusterName=bbtest",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={scratch}/state",
            f"SlurmdSpoolDir={scratch}/spool",
            f"SlurmctldPidFile={scratch}/slurmctld.pid",
            f"SlurmdPidFile={scratch}/slurmd.pid",
            f"SlurmctldLogFile={scratch}/slurmctld.log",
            f"SlurmdLogFile={scratch}/slurmd.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "ReturnToService=2",
            "MpiDefault=none",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=16000 State=UNKNOWN",
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def munge_works() -> bool:
    encoded = subprocess.run(["munge", "-n"], capture_output=True, check=False)
    if encoded.returncode != 0:
        return False
    decoded = subprocess.run(["unmunge"], input=encoded.stdout, capture_output=True, check=False)
    return decoded.returncode == 0


def start_munged() -> int | None:
    """Starts munged as user munge unless one already answers; the pid of the one we started."""
    if munge_works():
        return None
    MUNGE_RUN.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_RUN, "munge", "munge")
    MUNGE_RUN.chmod(0o755)
    started = subprocess.run(
        ["runuser", "-u", "munge", "--", "munged"], capture_output=True, text=True, check=False
    )
    if started.returncode != 0:
        unavailable(f"munged did not start: {started.stderr.strip()}")
    pidfile = MUNGE_RUN / "munged.pid"
    for _ in range(50):
        if pidfile.exists() and munge_works():
            return int(pidfile.read_text().split()[0])
        time.sleep(0.1)
    unavailable("munged started but munge -n | unmunge fails")


@dataclass(frozen=True)
class Slurm:
    """A running cluster: its scratch directory and the environment its commands need."""

    scratch: Path
    env: dict[str, str]

    def run(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, check=False, **kwargs
        )  # type: ignore[call-overload, no-any-return]

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.scratch.glob("*.log"))
        )

    def wait_until_idle(self, timeout: float, what: str, scan: Path | None = None) -> None:
        """Polls squeue until no job is left; fails on a job that can never start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            queue = self.run("squeue", "-h", "-o", "%i %T %r")
            assert queue.returncode == 0, queue.stderr
            if not queue.stdout.strip():
                return
            if "DependencyNeverSatisfied" in queue.stdout:
                self.run("scancel", "--user=root")
                pytest.fail(f"{what}: a dependency failed\n{queue.stdout}{job_logs(scan)}")
            time.sleep(0.5)
        queue = self.run("squeue", "-h", "-o", "%i %T %r").stdout
        self.run("scancel", "--user=root")
        pytest.fail(f"{what}: jobs left after {timeout} s\n{queue}{job_logs(scan)}{self.logs()}")


def job_logs(directory: Path | None) -> str:
    if directory is None:
        return ""
    return "\n".join(
        f"--- {path}\n{path.read_text(errors='replace')[-2000:]}"
        for path in sorted(directory.rglob("*.out")) + sorted(directory.rglob("*.err"))
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def slurm() -> Iterator[Slurm]:
    """munged + slurmctld + slurmd on 127.0.0.1, up until the node is idle; always shut down."""
    if os.geteuid() != 0:
        impossible_here("a real Slurm node runs jobs as root here: the tests need root")
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        unavailable(
            f"Slurm/munge missing ({', '.join(missing)}): "
            "apt-get install slurmctld slurmd slurm-client munge"
        )
    munged = start_munged()  # before the scratch directory, which a skip would leave behind
    scratch = Path(tempfile.mkdtemp(prefix="slurm-"))
    scratch.chmod(0o755)
    for name in ("state", "spool"):
        (scratch / name).mkdir()
    host = socket.gethostname().split(".")[0]
    conf = scratch / "slurm.conf"
    conf.write_text(slurm_conf(scratch, host))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    daemons: list[subprocess.Popen[bytes]] = []
    cluster = Slurm(scratch, env)
    try:
        # in the foreground (-D), so that these very processes can be stopped if need be
        for command in (["slurmctld", "-D", "-c", "-i"], ["slurmd", "-D"]):
            with (scratch / f"{command[0]}.stdout").open("wb") as out:
                daemons.append(
                    subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
                )
        deadline = time.monotonic() + STARTUP_SECONDS
        state = ""
        while time.monotonic() < deadline:
            if any(daemon.poll() is not None for daemon in daemons):
                break
            info = cluster.run("sinfo", "-h", "-N", "-o", "%N %t")
            state = info.stdout.strip() or info.stderr.strip()
            if info.returncode == 0 and state == f"{host} idle":
                break
            time.sleep(0.3)
        else:
            unavailable(
                f"Slurm node not idle within {STARTUP_SECONDS} s (sinfo: {state!r})\n"
                f"{cluster.logs()}"
            )
        if any(daemon.poll() is not None for daemon in daemons):
            unavailable(f"a Slurm daemon exited during start-up\n{cluster.logs()}")
        yield cluster
    finally:
        cluster.run("scancel", "--user=root")
        cluster.run("scontrol", "shutdown")
        for daemon in daemons:
            stop(daemon)
        if munged is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(munged, signal.SIGTERM)
        shutil.rmtree(scratch, ignore_errors=True)


def test_exported_arrays_run_on_slurm_and_reproduce_run(
    slurm: Slurm, tmp_path: Path, dataset: Dataset, reference: Production
) -> None:
    workdir = tmp_path / "work"
    cli(*count_args(workdir, dataset.file_list))
    cli(*reference_plan_args(workdir))
    production = Production(workdir)
    jobs = tmp_path / "jobs"
    cli("export-jobs", "--workdir", workdir, "--system", "slurm", "--directory", jobs)
    submitted = slurm.run("bash", str(jobs / "submit.sh"), cwd=jobs)
    assert submitted.returncode == 0, f"{submitted.stdout}\n{submitted.stderr}"
    slurm.wait_until_idle(JOBS_SECONDS, "submit.sh", scan=tmp_path)
    assert_same_bytes(production.outputs(), reference)
    status = cli("status", "--workdir", workdir).stdout
    assert "batch-job records" in status, status
    assert "failed" not in status.split("jobs")[-1].split("\n", 3)[-1], status
    cli("check", "--workdir", workdir)


def test_exported_arrays_with_parts_and_records_on_an_xrootd_server(
    slurm: Slurm, tmp_path: Path, dataset: Dataset, reference: Production
) -> None:
    """Slurm exports with a remote scratch: the jobs keep their parts and write-once records
    on the server, `status` folds the records in from there, and the outputs are the
    reference's."""
    from xrootd_server import running_server

    with running_server() as server:
        workdir = planned_for_slurm_workers(
            tmp_path, dataset, execution={"scratch": f"{server.url}/slurm-export-scratch"}
        )
        jobs = tmp_path / "jobs"
        cli("export-jobs", "--workdir", workdir, "--system", "slurm", "--directory", jobs)
        submitted = slurm.run("bash", str(jobs / "submit.sh"), cwd=jobs)
        assert submitted.returncode == 0, f"{submitted.stdout}\n{submitted.stderr}"
        slurm.wait_until_idle(JOBS_SECONDS, "submit.sh", scan=tmp_path)
        assert_same_bytes(Production(workdir).outputs(), reference)
        status = cli("status", "--workdir", workdir).stdout
        assert "batch-job records from root://" in status, status
        assert "failed" not in status.split("jobs")[-1].split("\n", 3)[-1], status
        cli("check", "--workdir", workdir)


def planned_for_slurm_workers(
    tmp_path: Path, dataset: Dataset, execution: dict[str, str] | None = None
) -> Path:
    """A working directory counted and planned like the reference, whose Dask workers are
    small Slurm jobs (`execution`: more of the project's execution settings)."""
    project = tmp_path / "project.yaml"
    settings: dict[str, object] = {
        "processes": str(PROCESS_TYPES),
        "binning": str(BINNING),
        "inputs": {"file_list": str(dataset.file_list), "campaign": "prod_Phase2_v2"},
        "batch": {"cores": 1, "memory_mb": 1000, "walltime": "00:10:00"},
    }
    if execution is not None:
        settings["execution"] = execution
    project.write_text(yaml.safe_dump(settings))
    workdir = tmp_path / "work"
    cli("count", "--workdir", workdir, "--config", project, "--workers", 1)
    cli(*reference_plan_args(workdir))
    return workdir


def test_run_with_slurm_workers_reproduces_run(
    slurm: Slurm, tmp_path: Path, dataset: Dataset, reference: Production
) -> None:
    pytest.importorskip("dask_jobqueue")
    workdir = planned_for_slurm_workers(tmp_path, dataset)
    command = [EXECUTABLE, "run", "--workdir", workdir, "--cluster", "slurm", "--workers", 2]
    try:
        finished = slurm.run(*map(str, command), cwd=tmp_path, timeout=JOBS_SECONDS)
    except subprocess.TimeoutExpired as err:
        queue = slurm.run("squeue", "-h", "-o", "%i %j %T %r").stdout
        pytest.fail(
            f"run --cluster slurm did not finish in {JOBS_SECONDS} s (workers unable to reach "
            f"the scheduler?)\nsqueue: {queue}\n{err.stdout!r}\n{err.stderr!r}\n"
            f"{job_logs(tmp_path)}"
        )
    assert finished.returncode == 0, f"{finished.stdout}\n{finished.stderr}\n{job_logs(tmp_path)}"
    slurm.wait_until_idle(30, "dask workers after run", scan=tmp_path)
    # the work was done by Dask workers that ran as Slurm jobs (their logs: cluster-logs/)
    worker_logs = list((workdir / "cluster-logs").glob("*.err"))
    assert worker_logs, "no Slurm job ran a Dask worker"
    texts = [path.read_text(errors="replace") for path in worker_logs]
    assert any("Start worker" in text for text in texts), "\n".join(texts)
    assert_same_bytes(Production(workdir).outputs(), reference)


PRINT_JOB_WORKER_ENVIRONMENT = """
import json, os, sys
from distributed import Client
from balanced_batches.config import BatchConfig
from balanced_batches.engines.jobqueue import jobqueue_cluster

def environment():
    import os
    return {key: os.environ.get(key) for key in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}

cluster = jobqueue_cluster("slurm", BatchConfig(cores=1, memory_mb=1000, walltime="00:05:00"))
cluster.scale(jobs=1)
with Client(cluster) as client:
    client.wait_for_workers(1, timeout=100)
    print(json.dumps(client.submit(environment).result()))
cluster.close()
"""


def test_slurm_dask_workers_start_with_the_local_workers_environment(
    slurm: Slurm, tmp_path: Path
) -> None:
    """Workers that dask-jobqueue starts get Dask's worker environment without
    MALLOC_TRIM_THRESHOLD_, which local workers do not get either (see
    engines/worker_server.py)."""
    pytest.importorskip("dask_jobqueue")
    finished = slurm.run(
        sys.executable,
        "-c",
        PRINT_JOB_WORKER_ENVIRONMENT,
        cwd=tmp_path,
        timeout=JOBS_SECONDS,
    )
    assert finished.returncode == 0, f"{finished.stdout}\n{finished.stderr}\n{job_logs(tmp_path)}"
    assert json.loads(finished.stdout.splitlines()[-1]) == {
        "MALLOC_TRIM_THRESHOLD_": None,
        "OMP_NUM_THREADS": "1",
    }
    slurm.wait_until_idle(30, "the dask worker", scan=tmp_path)


def test_slurm_workers_with_parts_on_an_xrootd_server(
    slurm: Slurm, tmp_path: Path, dataset: Dataset, reference: Production
) -> None:
    """`run --cluster slurm` (dask-jobqueue workers as Slurm jobs) with the intermediate parts on
    an XRootD server: the reference's outputs, and nothing left on the server."""
    pytest.importorskip("dask_jobqueue")
    from xrootd_server import running_server

    with running_server() as server:
        scratch = {"scratch": f"{server.url}/slurm-scratch"}
        workdir = planned_for_slurm_workers(tmp_path, dataset, execution=scratch)
        command = [EXECUTABLE, "run", "--workdir", workdir, "--cluster", "slurm", "--workers", 2]
        finished = slurm.run(*map(str, command), cwd=tmp_path, timeout=JOBS_SECONDS)
        assert finished.returncode == 0, f"{finished.stderr}\n{job_logs(tmp_path)}"
        slurm.wait_until_idle(30, "dask workers after run", scan=tmp_path)
        assert_same_bytes(Production(workdir).outputs(), reference)
        assert list((server.export / "slurm-scratch").iterdir()) == []


WARN_WITHOUT_WORKERS = """
import logging, sys, time
from pathlib import Path
from balanced_batches.config import BatchConfig
from balanced_batches.engines import dask, make_engine

logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
dask.WORKERS_AWAITED_S = 3.0
batch = BatchConfig(cores=1, memory_mb=1000, walltime="00:05:00", setup=["exit 3"])
engine = make_engine(1, cluster="slurm", batch=batch, cluster_logs=Path("logs"))
time.sleep(8)
engine.close()
"""


def test_slurm_worker_jobs_that_fail_at_their_start_get_a_warning_naming_their_logs(
    slurm: Slurm, tmp_path: Path
) -> None:
    """A worker job whose set-up fails never joins: after a while a warning says so and
    where its logs are, instead of a silent wait."""
    pytest.importorskip("dask_jobqueue")
    finished = slurm.run(
        sys.executable, "-c", WARN_WITHOUT_WORKERS, cwd=tmp_path, timeout=JOBS_SECONDS
    )
    assert finished.returncode == 0, f"{finished.stdout}\n{finished.stderr}"
    assert "no Dask worker has joined in 3 s" in finished.stdout, finished.stdout
    assert "their logs: logs" in finished.stdout, finished.stdout
    assert list((tmp_path / "logs").glob("*.err")), "the failed job left no log"
    slurm.wait_until_idle(30, "the failed dask worker job", scan=tmp_path)
