"""Where the work runs does not change the outputs: in process, local worker processes, a local
Dask cluster, a remote Dask cluster.

The remote cluster is a real `dask scheduler` and `dask worker` started on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from distributed import Client

from balanced_batches.catalog import Catalog
from balanced_batches.config import ProjectConfig
from balanced_batches.engines import (
    InProcessEngine,
    SilentReporter,
    local_workers_ahead,
    make_engine,
)
from balanced_batches.engines.dask import DaskEngine
from balanced_batches.stages import WORKER_MODULES
from balanced_batches.stages.count import count_inputs
from balanced_batches.stages.plan import load_plan, plan_batches
from balanced_batches.stages.run import run_plan
from conftest import (
    Dataset,
    Production,
    assert_same_outputs,
    assert_same_provenance,
    cli,
    count_args,
    reference_plan_args,
)
from faults_util import descendants, new_descendants_after


def counts_of(workdir: Path) -> object:
    return json.loads((workdir / "counts.json").read_text())


def finished_tasks(address: str) -> dict[str, int]:
    """Tasks the scheduler has seen finish, by task prefix (the function's name)."""

    def finished(dask_scheduler: object) -> dict[str, int]:
        prefixes = dask_scheduler.task_prefixes  # type: ignore[attr-defined]
        return {name: prefix.state_counts["memory"] for name, prefix in prefixes.items()}

    with Client(address, timeout="10s") as client:
        counts: dict[str, int] = client.run_on_scheduler(finished)
    return counts


def ran_remotely(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """How many tasks of each of the pipeline's functions the cluster ran in between."""
    names = ("count_or_probe", "read_input", "write_outputs")
    return {name: after.get(name, 0) - before.get(name, 0) for name in names}


def test_local_workers_give_the_in_process_outputs(
    tmp_path: Path, dataset: Dataset, reference: Production
) -> None:
    workdir = tmp_path / "work"
    args = count_args(workdir, dataset.file_list)
    args[args.index("--workers") + 1] = 2
    cli(*args)
    assert counts_of(workdir) == counts_of(reference.workdir)
    cli(*reference_plan_args(workdir))
    cli("run", "--workdir", workdir, "--workers", 2)
    local = Production(workdir)
    assert_same_outputs(reference, local)
    assert_same_provenance(reference, local)
    assert not (workdir / "scratch").exists()


def test_one_plan_gives_byte_identical_files_on_every_engine(
    tmp_path: Path, dataset: Dataset
) -> None:
    workdir = tmp_path / "work"
    cli(*count_args(workdir, dataset.file_list))
    cli(*reference_plan_args(workdir, batches=2))
    # a copy of the working directory holds the same plan, whose outputs go to the same place
    twin = Path(shutil.copytree(workdir, tmp_path / "twin"))
    cli("run", "--workdir", twin, "--workers", 1)
    outputs = Production(workdir).outputs()
    assert [p.name for p in outputs] == ["batch0.root", "batch1.root"]
    first = {path.name: path.read_bytes() for path in outputs}
    shutil.rmtree(Production(workdir).outdir)
    cli("run", "--workdir", workdir, "--workers", 2)
    second = {path.name: path.read_bytes() for path in Production(workdir).outputs()}
    assert second.keys() == first.keys()
    for name, data in first.items():
        assert second[name] == data, name


def test_remote_cluster_through_the_cli(
    tmp_path: Path, dataset: Dataset, reference: Production, scheduler: str
) -> None:
    workdir = tmp_path / "work"
    before = finished_tasks(scheduler)
    args = count_args(workdir, dataset.file_list)
    cli(*args[: args.index("--workers")], "--scheduler", scheduler)
    assert counts_of(workdir) == counts_of(reference.workdir)
    cli(*reference_plan_args(workdir))
    cli("run", "--workdir", workdir, "--scheduler", scheduler)
    # 12 files counted one a task, and the probe of the selection beside them
    expected = {"count_or_probe": 13, "read_input": 12, "write_outputs": 3}
    assert ran_remotely(before, finished_tasks(scheduler)) == expected
    remote = Production(workdir)
    assert_same_outputs(reference, remote)
    assert_same_provenance(reference, remote)
    check = cli("check", "--workdir", workdir, "--sample", 100)
    assert "all outputs match the plan" in check.stdout


def test_remote_cluster_through_the_library(
    tmp_path: Path, dataset: Dataset, reference: Production, scheduler: str
) -> None:
    # the configuration the reference production stored, pointed at this working directory
    stored = Catalog.open(reference.workdir)
    settings = ProjectConfig.model_validate(stored.get_meta("plan_config"))
    stored.close()
    workdir = tmp_path / "work"
    output = settings.output.model_copy(update={"directory": str(workdir / "batches")})
    settings = settings.model_copy(update={"output": output})
    catalog = Catalog.open(workdir, create=True)
    before = finished_tasks(scheduler)
    engine = make_engine(None, scheduler=scheduler)
    try:
        outcome = count_inputs(catalog, settings, engine, workdir, SilentReporter())
        assert (outcome.counted, outcome.unchanged, outcome.failed) == (12, 0, [])
        plan_batches(catalog, settings, workdir)
        result = run_plan(catalog, load_plan(catalog), settings, engine, workdir, SilentReporter())
    finally:
        engine.close()
        catalog.close()
    # 12 files counted one a task, and the probe of the selection beside them
    expected = {"count_or_probe": 13, "read_input": 12, "write_outputs": 3}
    assert ran_remotely(before, finished_tasks(scheduler)) == expected
    assert counts_of(workdir) == counts_of(reference.workdir)
    assert [Path(o["path"]).name for o in result.outputs] == [p.name for p in reference.outputs()]
    remote = Production(workdir)
    assert_same_outputs(reference, remote)
    assert_same_provenance(reference, remote)
    # closing the engine leaves somebody else's cluster running
    with Client(scheduler, timeout="10s") as client:
        deadline = time.monotonic() + 10
        while len(client.scheduler_info()["workers"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(client.scheduler_info()["workers"]) == 2


def worker_setting(_: int) -> tuple[int, str | None]:
    """This worker's pid and its one-thread setting for numerical libraries."""
    return os.getpid(), os.environ.get("OMP_NUM_THREADS")


def test_a_local_dask_cluster_runs_on_its_workers_and_leaves_no_process_behind() -> None:
    before = descendants(os.getpid())
    engine = DaskEngine(workers=2, worker_modules=WORKER_MODULES["count"])
    try:
        results = list(engine.map(worker_setting, [0, 1, 2, 3]))
    finally:
        engine.close()
    assert os.getpid() not in {pid for pid, _ in results}
    assert {setting for _, setting in results} == {"1"}
    assert new_descendants_after(before) == set()


# Run in a fresh interpreter: this test module has imported distributed and the pipeline
# already, which would hide a server started without the workers' environment.
FORKED_WORKERS = """
import json, os
from balanced_batches.engines import make_engine

def environment(_):
    import os
    return {key: os.environ.get(key) for key in ("BB_TEST_SETTING", "OMP_NUM_THREADS",
                                                 "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_",
                                                 "MALLOC_MMAP_THRESHOLD_")}

if __name__ == "__main__":
    for setting in ("first", "second"):
        os.environ["BB_TEST_SETTING"] = setting
        engine = make_engine(2)
        print(json.dumps(list(engine.map(environment, [0, 1, 2, 3]))))
        engine.close()
"""


def test_local_workers_start_with_the_workers_environment_as_it_is_when_the_engine_starts(
    tmp_path: Path,
) -> None:
    """One thread per numerical library, glibc's heap thresholds set together
    (`worker_server`), and this process's settings as they are when each engine starts: a
    setting changed between two engines reaches the second one's workers."""
    script = tmp_path / "forked_workers.py"
    script.write_text(FORKED_WORKERS)
    finished = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert finished.returncode == 0, finished.stderr
    for line, setting in zip(finished.stdout.splitlines(), ("first", "second"), strict=True):
        for environ in json.loads(line):
            assert environ["BB_TEST_SETTING"] == setting
            assert environ["OMP_NUM_THREADS"] == environ["OPENBLAS_NUM_THREADS"] == "1"
            assert environ["MALLOC_MMAP_THRESHOLD_"] == str(32 * 2**20)
            assert environ["MALLOC_TRIM_THRESHOLD_"] == str(256 * 2**20)


def test_workers_started_ahead_serve_the_engine_and_nothing_is_left_running() -> None:
    """`count` and `run` start what local workers fork from before reading their
    configuration; whether the configuration then asks for local workers or for one, nothing
    of it runs once the command is done."""
    before = descendants(os.getpid())
    with local_workers_ahead(None, worker_modules=WORKER_MODULES["count"]):
        engine = make_engine(2)
        try:
            assert sorted(engine.map(abs, [-1, -2, -3])) == [1, 2, 3]
        finally:
            engine.close()
    assert new_descendants_after(before) == set()
    with local_workers_ahead(None, worker_modules=WORKER_MODULES["count"]):
        engine = make_engine(1)
        assert isinstance(engine, InProcessEngine)
        assert list(engine.map(abs, [-1])) == [1]
    assert new_descendants_after(before) == set()
