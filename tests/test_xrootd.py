"""Remote storage against a real XRootD server on 127.0.0.1: inputs and outputs over root://.

The server (tests/xrootd_server.py) exports a directory holding a tiny generated
dataset. Runs over root:// must give the counts and outputs of a run on the local
paths; outputs written to the server must carry the server's adler32; a server
stopped in the middle of a run must give a one-line error naming it, quickly, and
a later run must finish the job with identical outputs. Without the xrootd binary or its user
the tests that need the server are skipped, or fail under BB_REQUIRE_SERVICES=1
(tests/services.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uproot

from balanced_batches.catalog import Catalog
from balanced_batches.io import outputs, stores
from balanced_batches.shards import all_parts
from conftest import (
    EXECUTABLE,
    TREE,
    assert_same_arrays,
    cli,
    count_args,
    project_yaml,
    read_output,
    reference_plan_args,
)
from faults_util import copy_workdir, output_digests, plan_scratch, run_exported_jobs
from services import unavailable
from xrootd_server import XRootDServer, free_port, running_server

# a dead server must fail fast: one connection attempt, 2 s window (default: ~15 s and more)
FAST_FAILURE = {
    "XRD_CONNECTIONRETRY": "1",
    "XRD_CONNECTIONWINDOW": "2",
    "BALANCED_BATCHES_REMOTE_RETRIES": "1",
}
FAILURE_DEADLINE_S = 30.0


def bb(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`balanced-batches ARGS` in a subprocess (the XRootD client reads XRD_* at start)."""
    return subprocess.run(
        [str(EXECUTABLE), *map(str, args)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """The result, after checking that the command succeeded."""
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result


def server_adler32(server: XRootDServer, path: str) -> str:
    """The server's checksum, asked with the xrdfs tool (not with the package)."""
    answer = subprocess.run(
        ["xrdfs", server.host, "query", "checksum", path],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    assert answer[0] == "adler32", answer
    return answer[1]


def adler32(path: Path) -> str:
    """adler32 of a local file, as 8 hex digits."""
    return f"{zlib.adler32(path.read_bytes()) & 0xFFFFFFFF:08x}"


def outputs_of(directory: Path) -> dict[str, Path]:
    """Output ROOT files of a directory by name."""
    return {path.name: path for path in sorted(directory.glob("batch*.root"))}


@pytest.fixture(scope="module")
def server() -> Iterator[XRootDServer]:
    """A running server, stopped and deleted after the module."""
    with running_server() as instance:
        yield instance


@pytest.fixture(scope="module")
def file_list(server: XRootDServer) -> Path:
    """A tiny dataset inside the server's export; its list holds local paths."""
    data = server.export / "data"
    cli("generate", data, "--max-samples", 4, "--entries-per-file", 200, "--workers", 1)
    return data / "flist.txt"


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, file_list: Path) -> Path:
    """The reference: count, plan and run on the local paths."""
    workdir = tmp_path_factory.mktemp("local")
    cli(*count_args(workdir, file_list))
    cli(*reference_plan_args(workdir))
    cli("run", "--workdir", workdir, "--workers", 1)
    return workdir


@pytest.fixture(scope="module")
def remote_counted(
    tmp_path_factory: pytest.TempPathFactory, server: XRootDServer, file_list: Path
) -> Path:
    """`count` with every path turned into a root:// URL by --replace-file-prefix."""
    workdir = tmp_path_factory.mktemp("remote")
    prefix = f"{server.export}@{server.url}"  # /export/x -> root://127.0.0.1:PORT//x
    ok(bb(*count_args(workdir, file_list), "--replace-file-prefix", prefix))
    return workdir


def test_remote_inputs_give_the_local_counts_and_outputs(
    server: XRootDServer, local_run: Path, remote_counted: Path, tmp_path: Path
) -> None:
    local = json.loads((local_run / "counts.json").read_text())
    remote = json.loads((remote_counted / "counts.json").read_text())
    assert sorted(remote) == sorted(local)
    for name, entry in remote.items():
        assert entry["path"].startswith(f"root://{server.host}//"), entry["path"]
        assert {k: v for k, v in entry.items() if k != "path"} == {
            k: v for k, v in local[name].items() if k != "path"
        }, name

    workdir = copy_workdir(remote_counted, tmp_path / "work")
    ok(bb(*reference_plan_args(workdir)))
    ok(bb("run", "--workdir", workdir, "--workers", 1))
    expected, made = outputs_of(local_run / "batches"), outputs_of(workdir / "batches")
    assert sorted(made) == sorted(expected) and made
    for name, path in made.items():
        assert_same_arrays(read_output(path), read_output(expected[name]), name)


def test_outputs_written_to_the_server(
    server: XRootDServer, local_run: Path, tmp_path: Path
) -> None:
    workdir = copy_workdir(local_run, tmp_path / "work")
    directory = f"{server.url}/out"
    ok(bb(*reference_plan_args(workdir), "--output-directory", directory))
    ok(bb("run", "--workdir", workdir, "--workers", 2))
    ok(bb("check", "--workdir", workdir))

    expected = outputs_of(local_run / "batches")
    on_server = server.export / "out"
    assert sorted(p.name for p in on_server.iterdir()) == sorted(
        [*expected, "provenance.json", "statistics.json"]
    )
    catalog = _recorded_outputs(workdir)
    for name, local in expected.items():
        url = f"{directory}/{name}"
        with uproot.open(url, timeout=10) as handle:
            assert_same_arrays(handle[TREE].arrays(), read_output(local), name)
        # same inputs and plan: the very same bytes as the local run, and the server agrees
        assert server_adler32(server, f"/out/{name}") == adler32(local) == catalog[url]["adler32"]
        assert catalog[url]["size"] == local.stat().st_size


def test_server_stopped_mid_run(
    server: XRootDServer, local_run: Path, remote_counted: Path, tmp_path: Path
) -> None:
    workdir = copy_workdir(remote_counted, tmp_path / "work")
    directory = f"{server.url}/stopped"
    ok(bb(*reference_plan_args(workdir), "--output-directory", directory))
    env = {**os.environ, **FAST_FAILURE}
    command = [str(EXECUTABLE), "run", "--workdir", str(workdir), "--workers", "1"]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as run:
        # stop the server once the first input file has been read
        while not all_parts(plan_scratch(workdir)) and run.poll() is None:
            time.sleep(0.005)
        server.stop()
        stopped = time.monotonic()
        _, stderr = run.communicate(timeout=120)
        elapsed = time.monotonic() - stopped
    try:
        errors = [line for line in stderr.decode().splitlines() if line.startswith("error:")]
        assert run.returncode == 2, stderr.decode()
        assert len(errors) == 1 and server.host in errors[0], stderr.decode()
        assert "Traceback" not in stderr.decode()
        assert elapsed < FAILURE_DEADLINE_S
        # whatever reached its final name is complete
        expected = outputs_of(local_run / "batches")
        for name, path in outputs_of(server.export / "stopped").items():
            assert_same_arrays(read_output(path), read_output(expected[name]), name)
    finally:
        server.start()

    ok(bb("run", "--workdir", workdir, "--workers", 1))
    ok(bb("check", "--workdir", workdir))
    made = outputs_of(server.export / "stopped")
    assert sorted(made) == sorted(expected)
    for name, path in made.items():
        assert_same_arrays(read_output(path), read_output(expected[name]), name)
    assert not list((server.export / "stopped").glob("*.part*"))


def test_unreachable_server_and_missing_file_are_one_line_errors(
    server: XRootDServer, local_run: Path, tmp_path: Path
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    listing = tmp_path / "flist.txt"
    listing.write_text(f"root://{dead}//data/DYToLL_PU200/a.root\n")
    started = time.monotonic()
    result = bb(*count_args(tmp_path / "dead", listing), env=FAST_FAILURE)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith("error:")
    assert f"server root://{dead}" in result.stderr.splitlines()[-1]
    assert time.monotonic() - started < FAILURE_DEADLINE_S

    listing.write_text(f"{server.url}/data/DYToLL_PU200/missing.root\n")
    result = bb(*count_args(tmp_path / "missing", listing))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].endswith("missing.root: file not found")

    workdir = copy_workdir(local_run, tmp_path / "plan")
    started = time.monotonic()
    result = bb(
        *reference_plan_args(workdir), "--output-directory", f"root://{dead}//out", env=FAST_FAILURE
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: output.directory")
    assert f"server root://{dead}" in result.stderr.splitlines()[-1]
    assert time.monotonic() - started < FAILURE_DEADLINE_S


def _recorded_outputs(workdir: Path) -> dict[str, dict[str, Any]]:
    """Output records of the catalog's finished write units, by path."""
    catalog = Catalog.open(workdir)
    try:
        results = catalog.unit_results("write").values()
    finally:
        catalog.close()
    return {output["path"]: output for result in results for output in result["outputs"]}


def test_copy_verified_retries_a_corrupted_copy_and_never_shows_a_partial_one(
    server: XRootDServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / "batch9.root"
    local.write_bytes(os.urandom(3_000_000))
    corrupted = tmp_path / "corrupted"
    corrupted.write_bytes(local.read_bytes()[:-1] + b"?")  # same size, another adler32
    upload = stores.XRootDStore.upload
    uploads: list[str] = []

    def corrupting_once(self: stores.XRootDStore, source: Path, url: str) -> None:
        uploads.append(url)
        upload(self, corrupted if len(uploads) == 1 else source, url)

    monkeypatch.setattr(stores.XRootDStore, "upload", corrupting_once)
    url = f"{server.url}/verified/batch9.root"
    published = outputs.copy_verified(local, url)
    # the corrupted first copy is retried (a transient error on a loaded machine may add one)
    # every attempt of one copy to the same partial name of its own
    assert len(uploads) >= 2 and len(set(uploads)) == 1
    assert uploads[0].startswith(url + ".part-")
    assert published == outputs.Published(url, local.stat().st_size, adler32(local))
    assert server_adler32(server, "/verified/batch9.root") == adler32(local)

    def always_corrupting(self: stores.XRootDStore, source: Path, url: str) -> None:
        upload(self, corrupted, url)

    monkeypatch.setattr(stores.XRootDStore, "upload", always_corrupting)
    with pytest.raises(stores.TransferError, match=r"after 2 attempts \(adler32 "):
        outputs.copy_verified(
            local, f"{server.url}/verified/batch10.root", stores.RemoteSettings(retries=1)
        )
    assert sorted(p.name for p in (server.export / "verified").iterdir()) == ["batch9.root"]


def test_two_jobs_that_publish_the_same_file_at_once_both_succeed(
    server: XRootDServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every write job publishes `provenance.json`: a second copy that runs whole while the
    first one is between its upload and its rename must not take the first one's partial copy
    away (they once shared `NAME.part`, and the first copy's check found nothing there)."""
    url = f"{server.url}/shared/provenance.json"
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text('{"job": 1}')
    second.write_text('{"job": 2}')
    upload = stores.XRootDStore.upload
    interleaved: list[str] = []

    def the_other_job_meanwhile(self: stores.XRootDStore, source: Path, target: str) -> None:
        upload(self, source, target)
        if not interleaved:
            interleaved.append(target)
            outputs.copy_verified(second, url)  # the other job, start to end

    monkeypatch.setattr(stores.XRootDStore, "upload", the_other_job_meanwhile)
    assert outputs.copy_verified(first, url).path == url
    assert interleaved
    assert (server.export / "shared" / "provenance.json").read_text() == '{"job": 1}'
    assert sorted(p.name for p in (server.export / "shared").iterdir()) == ["provenance.json"]


def test_any_fsspec_url_is_a_remote_output_directory(tmp_path: Path) -> None:
    import fsspec

    local = tmp_path / "staging" / "batch0.parquet"
    local.parent.mkdir()
    local.write_bytes(os.urandom(100_000))
    directory = outputs.output_directory("memory://bb-test/out", tmp_path / "staging")
    assert directory.prepare(["batch0.parquet"]) == 0
    size, checksum = local.stat().st_size, adler32(local)
    published = directory.publish(local)  # the staged file is removed once copied
    assert published == outputs.Published("memory://bb-test/out/batch0.parquet", size, checksum)
    assert not local.exists()
    assert directory.size(published.path) == size
    assert directory.checksum(published.path) == checksum  # read back: memory:// has none
    assert directory.listdir() == [published.path]
    memory = fsspec.filesystem("memory")
    assert memory.ls("/bb-test/out", detail=False) == ["/bb-test/out/batch0.parquet"]
    directory.remove(published.path)
    assert directory.size(published.path) is None


# -- intermediate parts on the server (execution.scratch: root://) ------------------------------


def remote_scratch_plan(
    server: XRootDServer, local_run: Path, tmp_path: Path, name: str, *more: object
) -> Path:
    """A copy of the reference's counts, planned with its scratch directory on the server."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    workdir = copy_workdir(local_run, tmp_path / "work")
    root = f"{server.url}/{name}"
    config = project_yaml(tmp_path / "project.yaml", f"execution: {{scratch: '{root}'}}")
    ok(bb(*reference_plan_args(workdir), "--config", config, *more))
    return workdir


def test_parts_on_the_server_give_the_same_outputs(
    server: XRootDServer, local_run: Path, tmp_path: Path
) -> None:
    """Read units upload one verified pack each; write units read them back by byte ranges:
    the outputs are byte for byte those of a run with local parts, and the plan's scratch
    directory is gone from the server afterwards (kept with --keep-scratch)."""
    workdir = remote_scratch_plan(server, local_run, tmp_path, "scratch-a")
    ok(bb("run", "--workdir", workdir, "--workers", 2, "--keep-scratch"))
    assert output_digests(workdir / "batches") == output_digests(local_run / "batches")
    ok(bb("check", "--workdir", workdir))
    on_server = server.export / "scratch-a"
    (plan_directory,) = on_server.iterdir()
    assert plan_directory.name.startswith("balanced-batches-")
    packs = sorted(p.name for p in (plan_directory / "parts").iterdir())
    n_reads = len(json.loads((local_run / "counts.json").read_text()))
    assert len(packs) == n_reads and all(p.endswith(".pack") for p in packs), packs
    assert not (workdir / "scratch").exists()  # nothing local, beside staging
    statistics = sorted(p.name for p in (plan_directory / "statistics").iterdir())
    assert statistics and all(p.endswith(".json") for p in statistics)

    # a rerun of a read job finds its pack there with the same checksum: nothing is rewritten
    before = {p.name: p.stat().st_mtime_ns for p in (plan_directory / "parts").iterdir()}
    ok(bb("make", "--workdir", workdir, "--job", 0))
    after = {p.name: p.stat().st_mtime_ns for p in (plan_directory / "parts").iterdir()}
    assert after == before

    workdir_b = remote_scratch_plan(server, local_run, tmp_path / "b", "scratch-b")
    ok(bb("run", "--workdir", workdir_b, "--workers", 1))
    assert output_digests(workdir_b / "batches") == output_digests(local_run / "batches")
    assert list((server.export / "scratch-b").iterdir()) == []


def test_exported_jobs_run_in_a_sandbox_with_parts_and_outputs_on_the_server(
    server: XRootDServer, local_run: Path, tmp_path: Path
) -> None:
    """Each job runs in an empty directory of its own holding only the three transferred
    files, with intermediate parts, result records and outputs on the server: the outputs
    are the local run's, and `status` folds the records in from the server."""
    outputs = f"{server.url}/sandboxed-out"
    workdir = remote_scratch_plan(
        server, local_run, tmp_path, "scratch-c", "--output-directory", outputs
    )
    jobs = tmp_path / "jobs"
    ok(bb("export-jobs", "--workdir", workdir, "--system", "slurm", "--directory", jobs))
    listed = run_exported_jobs(jobs, tmp_path)
    made = outputs_of(server.export / "sandboxed-out")
    expected = outputs_of(local_run / "batches")
    assert sorted(made) == sorted(expected)
    for name, path in made.items():
        assert adler32(path) == adler32(expected[name]), name
    # the records wait on the server beside the parts, which the last write job deleted
    (plan_directory,) = (server.export / "scratch-c").iterdir()
    assert sorted(p.name for p in plan_directory.iterdir()) == ["records"]
    n_jobs = len(listed)
    assert len(list((plan_directory / "records").glob("job-*.json"))) == n_jobs
    status = ok(bb("status", "--workdir", workdir)).stdout
    assert f"took {n_jobs} batch-job records from root://" in status
    ok(bb("check", "--workdir", workdir))


def _namespace_sandbox_missing() -> str | None:
    """Why jobs cannot be run as another user in a mount namespace here, or None."""
    if os.geteuid() != 0:
        return "running jobs as another user in a mount namespace needs root"
    for tool in ("unshare", "runuser", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    return None


def test_jobs_run_as_another_user_where_the_working_directory_does_not_exist(
    server: XRootDServer, local_run: Path, remote_counted: Path, tmp_path: Path
) -> None:
    """Inputs, parts, records and outputs on the server; each job runs as `nobody` in an empty
    directory, in a mount namespace where the test's directories (working directory, jobs
    directory) are hidden and root's home is not readable: everything a job needs travels
    with it. A rerun of a finished job changes nothing."""
    missing = _namespace_sandbox_missing()
    if missing is not None:
        unavailable(missing)
    outputs = f"{server.url}/isolated-out"
    workdir = copy_workdir(remote_counted, tmp_path / "work")
    config = project_yaml(
        tmp_path / "project.yaml", f"execution: {{scratch: '{server.url}/isolated-scratch'}}"
    )
    ok(bb(*reference_plan_args(workdir), "--config", config, "--output-directory", outputs))
    jobs = tmp_path / "jobs"
    ok(bb("export-jobs", "--workdir", workdir, "--system", "slurm", "--directory", jobs))
    listed = [
        *(jobs / "read-jobs.txt").read_text().split(),
        *(jobs / "write-jobs.txt").read_text().split(),
    ]
    interpreter = Path(os.path.realpath(sys.executable))
    home = Path.home()
    hidden = tmp_path.parent  # the test's directories, and the working directory in them
    sandboxes = Path(tempfile.mkdtemp(prefix="bb-isolated-"))
    sandboxes.chmod(0o755)
    try:
        for job in [*listed, listed[0]]:  # the first job twice: the rerun finds it done
            sandbox = Path(tempfile.mkdtemp(dir=sandboxes))
            for name in ("spec.json", "plan.npz", "job.sh"):
                shutil.copy(jobs / name, sandbox / name)
            sandbox.chmod(0o755)
            for path in [sandbox, *sandbox.iterdir()]:
                os.chown(path, 65534, 65534)
            # root's home: only the interpreter's tree stays visible, through a bind mount
            keep = sandboxes / f"keep-{job}"
            keep.mkdir(exist_ok=True)
            tree = next((p for p in interpreter.parents if p.parent == home), None)
            script = ["set -e"]
            if tree is not None:
                script += [
                    f"mount --bind {tree} {keep}",
                    f"mount -t tmpfs -o mode=755 none {home}",
                    f"mkdir -p {tree}",
                    f"mount --bind {keep} {tree}",
                ]
            script += [
                f"mount -t tmpfs -o mode=700 none {hidden}",
                f"test ! -e {workdir}",
                f"cd {sandbox}",
                f"exec runuser -u nobody -- bash job.sh {job}",
            ]
            finished = subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "bash", "-c", "\n".join(script)],
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            assert finished.returncode == 0, f"job {job}:\n{finished.stdout}\n{finished.stderr}"
        assert "already done" in finished.stdout
    finally:
        shutil.rmtree(sandboxes, ignore_errors=True)
    made = outputs_of(server.export / "isolated-out")
    expected = outputs_of(local_run / "batches")
    assert sorted(made) == sorted(expected)
    for name, path in made.items():  # the same rows; provenance names the inputs' URLs
        assert_same_arrays(read_output(path), read_output(expected[name]), name)
    ok(bb("status", "--workdir", workdir))
    ok(bb("check", "--workdir", workdir))


def test_a_dask_cluster_runs_with_parts_on_the_server(
    server: XRootDServer, local_run: Path, tmp_path: Path, scheduler: str
) -> None:
    """Tasks on a Dask cluster's workers (what `--cluster htcondor|slurm` starts as batch jobs)
    reach a remote scratch directory as local workers do: the same outputs."""
    workdir = remote_scratch_plan(server, local_run, tmp_path, "scratch-dask")
    ok(bb("run", "--workdir", workdir, "--scheduler", scheduler))
    assert output_digests(workdir / "batches") == output_digests(local_run / "batches")
    assert list((server.export / "scratch-dask").iterdir()) == []
