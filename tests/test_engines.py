"""Where the work runs does not change the outputs: in process, local worker processes, a local
Dask cluster, a remote Dask cluster.

The remote cluster is a real `dask scheduler` and `dask worker` started on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client

from balanced_batches.catalog import Catalog
from balanced_batches.config import ProjectConfig
from balanced_batches.engines import InProcessEngine, SilentReporter, make_engine, worker_server
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
    python_output,
    reference_plan_args,
)
from faults_util import alive

DASK = Path(sys.executable).parent / "dask"


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
    names = ("count_files", "read_input", "write_outputs")
    return {name: after.get(name, 0) - before.get(name, 0) for name in names}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a Dask scheduler with two single-threaded worker processes."""
    logs = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rsplit(":", 1)[1]
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str, log: str) -> None:
        with (logs / log).open("wb") as out:
            processes.append(
                subprocess.Popen([str(DASK), *args], stdout=out, stderr=subprocess.STDOUT)
            )

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard", log="s.log")
        start(
            "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard", log="w.log"
        )
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        try:
            with Client(address, timeout="5s") as client:
                client.shutdown()
        except OSError:
            pass  # the scheduler never came up or is gone already
        for process in reversed(processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.terminate()
                process.wait(timeout=20)


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
    expected = {"count_files": 12, "read_input": 12, "write_outputs": 3}
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
    expected = {"count_files": 12, "read_input": 12, "write_outputs": 3}
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


def frozen_heap_and_parent(_: int) -> tuple[bool, int]:
    """Whether this worker froze its long-lived objects, and its parent pid."""
    import gc

    return gc.get_freeze_count() > 0, os.getppid()


def test_a_local_dask_cluster_forks_its_workers_and_freezes_their_long_lived_objects() -> None:
    engine = DaskEngine(workers=2, worker_modules=WORKER_MODULES["count"])
    try:
        results = list(engine.map(frozen_heap_and_parent, [0, 1, 2, 3]))
        server = worker_server.server_pid()
    finally:
        engine.close()
    assert all(frozen for frozen, _ in results)
    if worker_server.available():
        assert {parent for _, parent in results} == {server}
        assert server is not None and not alive(server)


LIGHT_IMPORTS = """
import importlib, sys
import balanced_batches.__main__, balanced_batches.display, balanced_batches.engines.worker_server
from balanced_batches.stages import WORKER_MODULES
for module in WORKER_MODULES["count"]:
    importlib.import_module(module)
heavy = ("balanced_batches.config", "pydantic", "dask", "distributed", "typer")
print(sorted(name for name in heavy if name in sys.modules))
"""

COUNT_COMMAND_IMPORTS = """
import sys
import balanced_batches.cli, balanced_batches.stages.count
print(sorted(name for name in ("uproot", "awkward", "dask") if name in sys.modules))
"""


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(LIGHT_IMPORTS, id="workers-and-entry-point"),
        pytest.param(COUNT_COMMAND_IMPORTS, id="count-command"),
    ],
)
def test_what_runs_before_counts_first_file_imports_nothing_it_does_not_need(script: str) -> None:
    """On `count`'s critical path (BENCHMARKS.md, count): what its fork server preloads and
    what the entry point imports before it starts the server stay free of the configuration
    models and Dask; the command's own process, which only stats files and writes JSON, does
    not import uproot or awkward."""
    assert python_output("-c", script) == "[]"


COUNT_UNIT_IMPORTS = """
import importlib, sys
from balanced_batches.regions import RegionSpace, Selection
from balanced_batches.expressions import parse_expression
from balanced_batches.stages import WORKER_MODULES
for module in WORKER_MODULES["count"]:
    importlib.import_module(module)
from balanced_batches.stages.count_units import CountTask, count_file
preloaded = set(sys.modules)
expression = lambda text: parse_expression(text, "test")
selection = Selection(
    RegionSpace(("any",), (0.0,), (0.0,)), (expression("tau_pt > 0"),),
    expression("tau_pt"), expression("abs(tau_eta)"),
)
result = count_file(CountTask(0, sys.argv[1], "taus", selection))
assert result.error is None, result.error
print(sorted({name.split(".")[0] for name in set(sys.modules) - preloaded} - {"balanced_batches"}))
"""


def test_count_workers_start_with_every_library_a_count_unit_needs(dataset: Dataset) -> None:
    """A library a count unit imports on its first file (uproot: 0.2 s) would be imported by
    every worker, after the start; the fork server imports it once, before."""
    assert python_output("-c", COUNT_UNIT_IMPORTS, dataset.paths[0]) == "[]"


# Run in a fresh interpreter: this test module has imported distributed and the pipeline
# already, which would hide a server started without the workers' environment or its modules.
FORKED_WORKERS = """
import json, os, sys
from balanced_batches.engines import make_engine, worker_server

def state(_):
    import os, sys
    return {"parent": os.getppid(), "preloaded": "balanced_batches.report_html" in sys.modules}

if __name__ == "__main__":
    engine = make_engine(2, worker_modules=("balanced_batches.report_html",))
    server = worker_server.server_pid()
    environ = dict(
        item.split("=", 1)
        for item in open(f"/proc/{server}/environ").read().split("\\0") if "=" in item
    )
    states = list(engine.map(state, [0, 1, 2, 3]))
    engine.close()
    print(json.dumps({"server": server, "environ": environ, "states": states}))
"""


def _forked_workers(tmp_path: Path, **environment: str) -> dict[str, Any]:
    script = tmp_path / "forked_workers.py"
    script.write_text(FORKED_WORKERS)
    finished = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **environment},
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    result: dict[str, Any] = json.loads(finished.stdout.splitlines()[-1])
    return result


@pytest.mark.skipif(not worker_server.available(), reason="no fork server on this platform")
def test_local_workers_are_forked_ready_and_their_server_stops_with_the_engine(
    tmp_path: Path,
) -> None:
    """Local workers come from a fork server that imported the modules asked for; the server
    starts with the workers' environment (one BLAS thread, no MALLOC_TRIM_THRESHOLD_), and
    with this process's settings as they are when the engine starts; closing the engine
    stops it."""
    for setting in ("first", "second"):  # a setting changed between two runs reaches workers
        result = _forked_workers(tmp_path, BB_TEST_SETTING=setting)
        assert {state["parent"] for state in result["states"]} == {result["server"]}
        assert all(state["preloaded"] for state in result["states"])
        environ = result["environ"]
        assert environ["BB_TEST_SETTING"] == setting
        assert environ["OMP_NUM_THREADS"] == environ["OPENBLAS_NUM_THREADS"] == "1"
        assert "MALLOC_TRIM_THRESHOLD_" not in environ
        assert not alive(result["server"])


@pytest.mark.skipif(not worker_server.available(), reason="no fork server on this platform")
def test_a_fork_server_started_early_is_stopped_when_the_work_runs_in_process() -> None:
    """`count` and `run` start the fork server before reading their configuration; if the
    configuration then asks for one worker, nothing is left running."""
    try:
        assert worker_server.start(WORKER_MODULES["count"])
        server = worker_server.server_pid()
        assert server is not None and alive(server)
        assert isinstance(make_engine(1), InProcessEngine)
        assert worker_server.server_pid() is None
        assert not alive(server)
    finally:
        worker_server.stop()
