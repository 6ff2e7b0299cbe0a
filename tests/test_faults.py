"""Faults: kill -9 at any moment, two commands at once, bad inputs and configuration, a full
disk, a pathological input, outputs damaged after writing.

Every test asserts the exact outcome: the one-line message and exit code, the catalog state
(`status`, or `Catalog`), and the output files byte for byte against an uninterrupted run of
the same plan and seed made in another working directory (the session's `reference`).
Processes are real where the fault needs one (SIGKILL, a file-size limit, a second process
holding the lock); everything else runs in this process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot

from balanced_batches.catalog import CATALOG_NAME, LOCK_NAME, Catalog, FileRecord
from balanced_batches.shards import Part, all_parts, parts_of_read_unit
from conftest import (
    BINNING,
    CAMPAIGN,
    EXECUTABLE,
    PROCESS_TYPES,
    TREE,
    Dataset,
    Production,
    active_types,
    assert_same_outputs,
    cli,
    copy_dataset,
    count_args,
    expected_counts_json,
    read_output,
    read_selection_columns,
    reference_plan_args,
    region_of_rows,
    tree_digest,
)
from faults_util import (
    LOG_LINE,
    TIMEOUT,
    KillPoint,
    cli_error,
    command_line,
    error_line,
    file_size_limit,
    flat,
    forked_workers,
    group_members,
    kill_group,
    leftovers,
    output_digests,
    parent_of,
    peak_rss_of,
    plan_scratch,
    process_error,
    restore_stat,
    run_acting_when,
    run_command,
    run_killed_after,
    run_killed_at,
    run_watched,
    sha256_of,
)

KILL_SEED = 20_240_611  # the seed of every random kill moment: failures are reproducible
REFERENCE_FILES = ("batch0.root", "batch1.root", "batch2.root")


# -- helpers ------------------------------------------------------------------------------------


def units(workdir: Path) -> list[tuple[str, int, str, int, str | None]]:
    """(kind, index, status, attempts, error) of every unit in the catalog."""
    catalog = Catalog.open(workdir)
    try:
        return [(r.kind, r.unit, r.status, r.attempts, r.error) for r in catalog.unit_rows()]
    finally:
        catalog.close()


def files(workdir: Path) -> list[FileRecord]:
    """The catalog's input files, in list order."""
    catalog = Catalog.open(workdir)
    try:
        return catalog.files()
    finally:
        catalog.close()


def recorded_outputs(workdir: Path) -> dict[int, list[dict[str, Any]]]:
    """Outputs of every write unit the catalog records as done."""
    catalog = Catalog.open(workdir)
    try:
        return {unit: r["outputs"] for unit, r in catalog.unit_results("write").items()}
    finally:
        catalog.close()


def status_counts(stdout: str, kind: str) -> tuple[int, int, int]:
    """(pending, done, failed) of one row of the `status` jobs table (none left running or
    interrupted)."""
    cells = r"\s*│\s*(\d+)" * 5
    match = re.search(rf"{kind}{cells}", stdout)
    assert match, stdout
    assert int(match[2]) == int(match[3]) == 0, stdout
    return int(match[1]), int(match[4]), int(match[5])


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Polls a condition every 10 ms."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def finished_line(outdir: Path) -> str:
    """What `run` prints when it made the reference plan (3 batches x 588 regions x 2)."""
    return f"3 files, 3528 entries in {outdir}"


def run_args(workdir: Path, workers: int = 1) -> list[object]:
    """`run` with a given number of workers (1: in-process engine, more: worker processes)."""
    return ["run", "--workdir", workdir, "--workers", workers]


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_digests(reference: Production) -> dict[str, str]:
    """sha256 of every output of the uninterrupted reference production."""
    digests = output_digests(reference.outdir)
    assert tuple(digests) == REFERENCE_FILES
    return digests


@pytest.fixture
def planned(counted_copy: Path) -> Path:
    """A private working directory holding the reference plan, nothing run yet."""
    cli(*reference_plan_args(counted_copy))
    return counted_copy


@dataclass(frozen=True)
class Timing:
    """How long an uninterrupted `run` takes, and when its first intermediate part appears."""

    duration: float
    working: float  # start-up (imports, workers) is over: read units are writing parts

    def moments(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` seeded moments spread over the time work is under way."""
        return self.working + rng.uniform(0.0, 1.0, n) * (self.duration - self.working)


@pytest.fixture(scope="module")
def run_timing(
    tmp_path_factory: pytest.TempPathFactory, counted: Path, reference_digests: dict[str, str]
) -> Callable[[int], Timing]:
    """An uninterrupted `run` of the reference plan as a process, timed, per number of workers.

    Each timing run is made in its own working directory and must give the reference bytes.
    """
    measured: dict[int, Timing] = {}

    def timing(workers: int) -> Timing:
        if workers not in measured:
            workdir = tmp_path_factory.mktemp(f"timed{workers}") / "work"
            shutil.copytree(counted, workdir)
            cli(*reference_plan_args(workdir))
            outcome, working = run_watched(
                EXECUTABLE,
                run_args(workdir, workers),
                lambda: bool(all_parts(plan_scratch(workdir))),
            )
            assert outcome.returncode == 0, outcome.stderr
            assert output_digests(workdir / "batches") == reference_digests
            measured[workers] = Timing(outcome.seconds, working)
        return measured[workers]

    return timing


def assert_consistent_after_kill(workdir: Path, reference: dict[str, str], label: str) -> None:
    """What a SIGKILL may leave: no complete-looking partial file, no claim beyond the disk."""
    outdir = workdir / "batches"
    finals = output_digests(outdir)
    assert set(finals) <= set(reference), label
    for name, digest in finals.items():
        assert digest == reference[name], f"{label}: {name} is under its final name but partial"
    for unit, outputs in recorded_outputs(workdir).items():
        for output in outputs:
            path = Path(output["path"])
            assert path.is_file(), f"{label}: write unit {unit} is done but {path} is missing"
            assert sha256_of(path) == reference[path.name], f"{label}: {path} differs"
    for part in all_parts(plan_scratch(workdir)):
        Part(part)  # a part under its final name is complete (it checks its size)


def assert_resumes(
    workdir: Path, args: list[object], reference: dict[str, str], label: str = ""
) -> None:
    """The same command again completes with the reference bytes and leaves nothing behind."""
    outcome = run_command(EXECUTABLE, args)
    assert outcome.returncode == 0, f"{label}: the resumed run failed\n{outcome.stderr}"
    outdir = workdir / "batches"
    assert outcome.stdout.splitlines()[-1] == finished_line(outdir), label
    assert output_digests(outdir) == reference, label
    assert leftovers(outdir) == [], label
    assert not (workdir / "scratch").exists(), label
    assert {status for _, _, status, _, _ in units(workdir)} == {"done"}, label


# -- 1. kill -9 of run and count ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("workers", "kills"),
    [
        pytest.param(1, 2, id="in-process-2-moments"),
        pytest.param(2, 1, id="workers-1-moment"),
        pytest.param(1, 12, id="in-process-12-moments", marks=pytest.mark.slow),
        pytest.param(2, 6, id="workers-6-moments", marks=pytest.mark.slow),
    ],
)
def test_run_killed_at_random_moments_resumes_to_byte_identical_outputs(
    tmp_path: Path,
    planned: Path,
    reference_digests: dict[str, str],
    run_timing: Callable[[int], Timing],
    workers: int,
    kills: int,
) -> None:
    """For every seeded moment t: `run` SIGKILLed (with its workers) at t, then run again."""
    timing = run_timing(workers)
    rng = np.random.default_rng([KILL_SEED, workers, kills])
    pristine = Path(shutil.copytree(planned, tmp_path / "pristine"))
    for moment in timing.moments(rng, kills):
        label = f"--workers {workers}, killed after {moment:.2f} s of {timing}"
        shutil.rmtree(planned)
        shutil.copytree(pristine, planned)
        args = run_args(planned, workers)
        outcome = run_killed_after(EXECUTABLE, args, float(moment))
        assert outcome.killed or outcome.returncode == 0, f"{label}\n{outcome.stderr}"
        assert group_members(outcome.pid) == [], f"{label}: processes survived the kill"
        assert_consistent_after_kill(planned, reference_digests, label)
        assert_resumes(planned, args, reference_digests, label)


@pytest.mark.slow
def test_run_killed_again_and_again_while_resuming_ends_with_identical_outputs(
    planned: Path, reference_digests: dict[str, str], run_timing: Callable[[int], Timing]
) -> None:
    """Every resumed run is killed too, at seeded moments, before one is let finish."""
    timing = run_timing(1)
    rng = np.random.default_rng([KILL_SEED, 99])
    args = run_args(planned)
    for moment in timing.moments(rng, 8):
        outcome = run_killed_after(EXECUTABLE, args, float(moment))
        assert outcome.killed or outcome.returncode == 0, outcome.stderr
        assert_consistent_after_kill(planned, reference_digests, f"killed after {moment:.2f} s")
    assert_resumes(planned, args, reference_digests)


KILL_POINTS: dict[str, Callable[[Path], KillPoint]] = {
    # a read unit has sent its third intermediate part (the write units' inputs are partial)
    "reading-after-3rd-part": lambda outdir: KillPoint("balanced_batches.shards:write_part", nth=3),
    # uproot has written the rows of the first output into its temporary file, not closed it
    "inside-the-1st-output": lambda outdir: KillPoint(
        "uproot.writing.writable:WritableTree.extend", nth=1
    ),
    # batch1.root has just been renamed to its final name; its unit is not yet recorded
    "output-renamed-not-recorded": lambda outdir: KillPoint(
        "os:replace", nth=1, needles=(str(outdir / "batch1.root"),)
    ),
    # the second write unit's success is about to be recorded
    "recording-2nd-write": lambda outdir: KillPoint(
        "balanced_batches.catalog:Catalog.set_unit", nth=2, when="before", needles=("'write'",)
    ),
}


@pytest.mark.parametrize("point", KILL_POINTS.values(), ids=KILL_POINTS.keys())
def test_run_killed_at_a_chosen_step_resumes_to_byte_identical_outputs(
    planned: Path, reference_digests: dict[str, str], point: Callable[[Path], KillPoint]
) -> None:
    outdir = planned / "batches"
    kill = point(outdir)
    outcome = run_killed_at(kill, run_args(planned))
    assert outcome.killed, f"the kill point was never reached:\n{outcome.stderr}"
    if kill.target.endswith("WritableTree.extend"):
        # the partial file exists, only under a temporary name
        assert output_digests(outdir) == {}
        partial = [p for p in planned.rglob("batch0.root") if p != outdir / "batch0.root"]
        assert len(partial) == 1 and partial[0].stat().st_size > 0, partial
    if kill.target == "os:replace":
        assert tuple(output_digests(outdir)) == REFERENCE_FILES[:2]
        # the others were handed out when the run was killed
        assert [s for k, _, s, _, _ in units(planned) if k == "write"] == [
            "done",
            "running",
            "running",
        ]
    assert_consistent_after_kill(planned, reference_digests, kill.target)
    assert_resumes(planned, run_args(planned), reference_digests)


def test_run_killed_while_reopening_a_lost_output_resumes(
    planned: Path, reference_digests: dict[str, str]
) -> None:
    """A run that remakes a deleted output marks the read units pending one by one; killed
    between two of them, the next run must still read every input the lost file needs."""
    cli(*run_args(planned))
    lost = planned / "batches" / "batch1.root"
    lost.unlink()
    point = KillPoint(
        "balanced_batches.catalog:Catalog.set_unit", nth=3, needles=("'read'", "'pending'")
    )
    outcome = run_killed_at(point, run_args(planned))
    assert outcome.killed, outcome.stderr
    assert_consistent_after_kill(planned, reference_digests, "killed while reopening")
    assert_resumes(planned, run_args(planned), reference_digests)


@pytest.fixture(scope="module")
def count_timing(
    tmp_path_factory: pytest.TempPathFactory, dataset: Dataset, counted: Path
) -> Timing:
    """An uninterrupted `count` as a process, timed (work starts when the catalog appears)."""
    workdir = tmp_path_factory.mktemp("timed-count") / "work"
    outcome, working = run_watched(
        EXECUTABLE,
        count_args(workdir, dataset.file_list),
        lambda: (workdir / CATALOG_NAME).exists(),
    )
    assert outcome.returncode == 0, outcome.stderr
    assert (workdir / "counts.json").read_bytes() == (counted / "counts.json").read_bytes()
    return Timing(outcome.seconds, working)


COUNT_KILLS = [
    pytest.param(0, id="random-moment-0"),
    pytest.param(1, id="random-moment-1"),
    pytest.param(KillPoint("balanced_batches.catalog:Catalog.record_count", nth=5), id="5th-file"),
    *(pytest.param(i, id=f"random-moment-{i}", marks=pytest.mark.slow) for i in range(2, 10)),
]


@pytest.mark.parametrize("kill", COUNT_KILLS)
def test_count_killed_then_counted_again_writes_the_uninterrupted_counts_json(
    tmp_path: Path, dataset: Dataset, counted: Path, count_timing: Timing, kill: int | KillPoint
) -> None:
    workdir = tmp_path / "work"
    args = count_args(workdir, dataset.file_list)
    if isinstance(kill, KillPoint):
        outcome = run_killed_at(kill, args)
        assert outcome.killed, outcome.stderr
    else:
        moment = float(count_timing.moments(np.random.default_rng([KILL_SEED, kill]), 1)[0])
        outcome = run_killed_after(EXECUTABLE, args, moment)
        assert outcome.killed or outcome.returncode == 0, outcome.stderr
    again = run_command(EXECUTABLE, args)
    assert again.returncode == 0, again.stderr
    assert (workdir / "counts.json").read_bytes() == (counted / "counts.json").read_bytes()
    assert [f.status for f in files(workdir)] == ["counted"] * len(dataset.paths)


def test_ctrl_c_stops_run_and_its_workers_with_one_line_and_the_run_resumes(
    planned: Path, reference_digests: dict[str, str]
) -> None:
    """Ctrl-C in a terminal reaches the command's whole process group, workers included."""
    args = run_args(planned, workers=2)
    outcome, left_running = run_acting_when(
        EXECUTABLE,
        args,
        lambda: bool(all_parts(plan_scratch(planned))),
        lambda pid: os.killpg(pid, signal.SIGINT),
    )
    assert outcome.returncode == 130, outcome.stderr
    lines = outcome.stderr.splitlines()
    assert lines[-1] == "interrupted: rerun the same command to resume", outcome.stderr
    assert all(LOG_LINE.match(line) for line in lines[:-1]), outcome.stderr
    assert left_running == []
    assert_consistent_after_kill(planned, reference_digests, "interrupted")
    assert_resumes(planned, args, reference_digests)


def test_a_worker_killed_during_run_is_replaced_and_the_run_ends_identical(
    planned: Path, reference_digests: dict[str, str]
) -> None:
    """The system kills one worker (out of memory, say) while read units are under way."""

    def kill_a_worker(command: int) -> None:
        workers = forked_workers(command)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)

    outcome, _ = run_acting_when(
        EXECUTABLE,
        run_args(planned, workers=2),
        lambda: bool(all_parts(plan_scratch(planned))),
        kill_a_worker,
    )
    assert outcome.returncode == 0, outcome.stderr
    assert "a worker died on item" in outcome.stderr
    assert "killed by SIGKILL" in outcome.stderr
    assert output_digests(planned / "batches") == reference_digests
    assert leftovers(planned / "batches") == []
    assert {status for _, _, status, _, _ in units(planned)} == {"done"}


def test_a_run_killed_alone_takes_its_workers_with_it(
    planned: Path, reference_digests: dict[str, str]
) -> None:
    """Only the command is killed (not its group): its fork server and workers end too."""
    workers: list[int] = []

    def kill_the_command(command: int) -> None:
        workers.extend(forked_workers(command))
        os.kill(command, signal.SIGKILL)

    args = run_args(planned, workers=2)
    outcome, _ = run_acting_when(
        EXECUTABLE, args, lambda: bool(all_parts(plan_scratch(planned))), kill_the_command
    )
    assert outcome.killed
    assert len(workers) == 2
    wait_for(lambda: not any(parent_of(pid) for pid in workers), "the workers to end", 10)
    assert_consistent_after_kill(planned, reference_digests, "command killed alone")
    assert_resumes(planned, args, reference_digests)


# -- 2. two commands on one working directory ---------------------------------------------------


def test_commands_refuse_a_working_directory_in_use_while_the_run_completes(
    planned: Path, dataset: Dataset, reference_digests: dict[str, str]
) -> None:
    """The first run is paused (SIGSTOP) while it holds the lock, so the others meet it."""
    first = subprocess.Popen(
        command_line(EXECUTABLE, run_args(planned)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    holder = f"balanced-batches pid {first.pid}"
    lock = planned / LOCK_NAME
    try:
        wait_for(lambda: lock.read_text() == holder or first.poll() is not None, "the lock")
        assert first.poll() is None, "the first run ended before it could be paused"
        os.killpg(first.pid, signal.SIGSTOP)
        before = tree_digest(planned)
        expected = (
            f"error: {planned} is in use by {holder}; wait for it to finish (or stop it) and retry"
        )
        for args in (
            run_args(planned),
            count_args(planned, dataset.file_list),
            reference_plan_args(planned, batches=2),
        ):
            assert process_error(run_command(EXECUTABLE, args)) == expected, args[0]
        assert process_error(run_command(EXECUTABLE, ["check", "--workdir", planned])) == (
            f"error: {planned} is in use by {holder}: check the outputs once it has finished"
        )
        status = run_command(EXECUTABLE, ["status", "--workdir", planned])
        assert status.returncode == 0, status.stderr  # reading the catalog needs no lock
        assert tree_digest(planned) == before, "a refused command changed the working directory"
        os.killpg(first.pid, signal.SIGCONT)
        stdout, stderr = first.communicate(timeout=TIMEOUT)
    finally:
        if first.poll() is None:
            kill_group(first.pid)
            first.communicate()
    assert first.returncode == 0, stderr
    assert stdout.splitlines()[-1] == finished_line(planned / "batches")
    assert output_digests(planned / "batches") == reference_digests
    assert lock.read_text() == ""


def test_make_jobs_share_the_working_directory_and_keep_out_commands_that_need_it_alone(
    planned: Path,
) -> None:
    """`make --job` runs beside other jobs (batch systems start many at once), but not beside
    `run` or `plan`, which would change the plan or the parts under it."""
    from balanced_batches.catalog import JOBS_NOTE, workdir_lock

    lock = planned / LOCK_NAME
    with workdir_lock(planned, shared=True):  # a job running now
        for args in (run_args(planned), reference_plan_args(planned, batches=2)):
            assert f"is in use by {JOBS_NOTE};" in process_error(run_command(EXECUTABLE, args))
        job = run_command(EXECUTABLE, ["make", "--workdir", planned, "--job", 0])
        assert job.returncode == 0, job.stderr
        assert job.stdout.startswith("read unit 0: ")
        assert lock.read_text() == JOBS_NOTE  # the job that ended left the note to the other
    assert lock.read_text() == ""  # the last job out clears it
    with workdir_lock(planned):  # a run
        job = run_command(EXECUTABLE, ["make", "--workdir", planned, "--job", 1])
        assert f"is in use by balanced-batches pid {os.getpid()};" in process_error(job)
    states = Catalog.open(planned).unit_states("read")
    assert {unit for unit, state in states.items() if state == "done"} == {0}


# -- 3. job bookkeeping -------------------------------------------------------------------------


def test_a_failing_read_unit_is_listed_with_reason_and_attempts_then_only_it_is_redone(
    tmp_path: Path, dataset: Dataset, reference: Production
) -> None:
    file_list, paths = copy_dataset(dataset, tmp_path / "data")
    workdir = tmp_path / "work"
    cli(*count_args(workdir, file_list))
    cli(*reference_plan_args(workdir))
    victim = Path(paths[4])
    counted_stat = victim.stat()
    os.utime(victim, ns=(counted_stat.st_atime_ns, counted_stat.st_mtime_ns + 10**9))

    reason = (
        f"{victim}: changed since it was counted (size or modification time); "
        "run 'count' and 'plan' again"
    )
    result = cli(*run_args(workdir), "--keep-scratch", expect=None)
    result_stderr = result.stderr
    assert error_line(result.exit_code, result.stdout, result_stderr) == f"error: {reason}"
    rows = units(workdir)
    failed = [row for row in rows if row[2] == "failed"]
    assert len(failed) == 1
    kind, unit, _, attempts, error = failed[0]
    # another attempt would fail the same way: it is not retried (execution.retries = 2)
    assert (kind, attempts, error) == ("read", 1, reason)
    assert "retrying" not in flat(result_stderr)
    assert [row[2:] for row in rows if row[0] == "read" and row[1] != unit] == [
        ("done", 0, None)
    ] * 11
    assert [row[2:] for row in rows if row[0] == "write"] == [("pending", 0, None)] * 3
    status = cli("status", "--workdir", workdir).stdout
    assert status_counts(status, "read") == (0, 11, 1)
    assert status_counts(status, "write") == (3, 0, 0)
    assert f"failed read unit {unit} (1 attempts): {reason}" in flat(status)

    scratch = plan_scratch(workdir)
    kept = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in all_parts(scratch)}
    assert kept and not any(f"/r{unit:06d}-" in str(p) for p in kept)
    restore_stat(victim, counted_stat)
    result = cli(*run_args(workdir), "--keep-scratch")
    assert "reading inputs: 1 done" in result.stderr  # only the failed unit read its file again
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in kept} == kept
    assert parts_of_read_unit(scratch, unit)
    assert {row[2] for row in units(workdir)} == {"done"}
    assert_same_outputs(reference, Production(workdir))


def test_an_input_damaged_after_counting_fails_its_read_unit_with_one_line(
    tmp_path: Path, dataset: Dataset
) -> None:
    """Bytes of a basket the selection does not read go bad on disk (same size and mtime)."""
    file_list, paths = copy_dataset(dataset, tmp_path / "data")
    workdir = tmp_path / "work"
    cli(*count_args(workdir, file_list))
    cli(*reference_plan_args(workdir))
    victim = Path(paths[2])
    counted_stat = victim.stat()
    damage_basket(victim, "pfCand_pt")
    restore_stat(victim, counted_stat)

    line = process_error(run_command(EXECUTABLE, run_args(workdir)))
    assert re.fullmatch(f"error: {re.escape(str(victim))}: (cannot read|damaged|corrupt).*", line)
    failed = [row for row in units(workdir) if row[2] == "failed"]
    assert [(kind, attempts, error) for kind, _, _, attempts, error in failed] == [
        ("read", 1, line.removeprefix("error: "))  # a damaged file stays damaged: no retries
    ]


# -- 4. bad inputs ------------------------------------------------------------------------------


def bad_input_path(root: Path, name: str) -> Path:
    """A file name that matches process DY at pile-up PU200, so that it would be used."""
    path = root / CAMPAIGN / "crab_output" / "DYToLL_M-50_bad" / "crab_DYToLL_PU200" / "0000"
    path.mkdir(parents=True, exist_ok=True)
    return path / name


def write_missing(path: Path, source: str) -> None:
    """Nothing: the listed file does not exist."""


def write_zero_bytes(path: Path, source: str) -> None:
    path.write_bytes(b"")


def write_truncated(path: Path, source: str) -> None:
    """The first half of a real input file."""
    data = Path(source).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_garbage(path: Path, source: str) -> None:
    """Random bytes under a .root name."""
    path.write_bytes(np.random.default_rng(1).bytes(8192))


def write_ttree(path: Path, columns: dict[str, Any], name: str = TREE) -> None:
    """A TTree (`file[name] = columns` would make an RNTuple in this uproot version)."""
    types = {
        key: values.dtype if isinstance(values, np.ndarray) else values.type.content
        for key, values in columns.items()
    }
    with uproot.recreate(path) as handle:
        tree = handle.mktree(name, types)
        if len(next(iter(columns.values()))):
            tree.extend(columns)


def write_other_tree(path: Path, source: str) -> None:
    """The selection branches, in a tree called `events`."""
    write_ttree(path, read_selection_columns(source), "events")


def write_rntuple(path: Path, source: str) -> None:
    """The selection branches in an RNTuple called `taus`, not a TTree."""
    with uproot.recreate(path) as handle:
        handle[TREE] = read_selection_columns(source)


def write_without_kind(path: Path, source: str) -> None:
    """Tree `taus` without genLepton_kind."""
    columns = read_selection_columns(source)
    del columns["genLepton_kind"]
    write_ttree(path, columns)


def write_empty_tree(path: Path, source: str) -> None:
    """Tree `taus` with every selection branch and no entry."""
    write_ttree(path, {name: values[:0] for name, values in read_selection_columns(source).items()})


def write_jagged_pt(path: Path, source: str) -> None:
    """tau_pt as a jagged array (two values per candidate)."""
    columns: dict[str, Any] = read_selection_columns(source)
    pt = columns["tau_pt"]
    columns["tau_pt"] = ak.unflatten(np.repeat(pt, 2), np.full(len(pt), 2))
    write_ttree(path, columns)


def damage_basket(path: Path, branch_name: str) -> None:
    """Zeroes the magic number of the compressed frame of a branch's first basket (same size)."""
    with uproot.open(path) as handle:
        branch = handle[TREE][branch_name]
        start = int(branch.member("fBasketSeek")[0]) + branch.basket_key(0).fKeylen
    with path.open("r+b") as handle:
        handle.seek(start + 9)  # after ROOT's 9-byte compression header
        handle.write(bytes(4))


def write_damaged_basket(path: Path, source: str) -> None:
    """A real input whose first tau_pt basket no longer decompresses."""
    shutil.copyfile(source, path)
    damage_basket(path, "tau_pt")


NO_BRANCH = "tree lacks branch\\(es\\) the selection needs: genLepton_kind"
BAD_INPUTS = {
    "missing": (write_missing, "file not found"),
    "zero-bytes": (write_zero_bytes, "empty file \\(0 bytes\\)"),
    "truncated": (write_truncated, "(not a readable ROOT file|cannot read|truncated)\\b.*"),
    "garbage": (write_garbage, "not a readable ROOT file \\(.+\\)"),
    "no-tree-taus": (write_other_tree, "no tree 'taus' in file"),
    "taus-is-an-rntuple": (write_rntuple, "'taus' is not a TTree"),
    "no-genLepton_kind": (write_without_kind, NO_BRANCH),
    "empty-tree": (write_empty_tree, "tree 'taus' has no entries"),
    "jagged-tau_pt": (
        write_jagged_pt,
        "branch 'tau_pt' holds several values per candidate; selections need one",
    ),
    "damaged-basket": (write_damaged_basket, "(cannot read|damaged|corrupt)\\b.*"),
}


def bad_input_list(tmp_path: Path, dataset: Dataset, kind: str) -> tuple[Path, Path, list[str]]:
    """A file list of two good DY PU200 inputs with the bad file between them."""
    write, _ = BAD_INPUTS[kind]
    good = [dataset.paths[0], dataset.paths[1]]
    bad = bad_input_path(tmp_path / "inputs", f"{kind}.root")
    write(bad, good[0])
    file_list = tmp_path / "flist.txt"
    file_list.write_text(f"{good[0]}\n{bad}\n{good[1]}\n")
    return file_list, bad, good


def assert_reason(reason: str, bad: Path, kind: str) -> None:
    """One line: the bad file's path, then the expected problem."""
    assert "\n" not in reason
    assert re.fullmatch(re.escape(str(bad)) + ": " + BAD_INPUTS[kind][1], reason), reason


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_stops_count_with_one_line_and_plan_refuses(
    tmp_path: Path, dataset: Dataset, kind: str
) -> None:
    file_list, bad, good = bad_input_list(tmp_path, dataset, kind)
    workdir = tmp_path / "work"
    line = cli_error(*count_args(workdir, file_list))
    reason = line.removeprefix("error: ")
    assert_reason(reason, bad, kind)
    assert not (workdir / "counts.json").exists()
    assert [(f.path, f.status, f.error) for f in files(workdir)] == [
        (good[0], "counted", None),
        (str(bad), "bad", reason),
        (good[1], "counted", None),
    ]
    assert cli_error(*reference_plan_args(workdir)) == (
        f"error: 1 input files could not be counted (first: {reason}); fix them and run 'count' "
        "again, or count with --on-bad-file skip to plan without them"
    )
    assert "no plan" in cli_error("run", "--workdir", workdir)


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_is_skipped_recorded_shown_and_left_out_of_the_plan(
    tmp_path: Path, dataset: Dataset, kind: str
) -> None:
    file_list, bad, good = bad_input_list(tmp_path, dataset, kind)
    workdir = tmp_path / "work"
    result = cli(*count_args(workdir, file_list), "--on-bad-file", "skip")
    assert result.stdout == (
        "counted 2 files, 0 unchanged, 1 unreadable, 0 matching no process; "
        f"{workdir / 'counts.json'}\n"
    )
    records = files(workdir)
    assert [(f.path, f.status) for f in records] == [
        (good[0], "counted"),
        (str(bad), "bad"),
        (good[1], "counted"),
    ]
    reason = records[1].error
    assert reason is not None
    assert_reason(reason, bad, kind)
    assert json.loads((workdir / "counts.json").read_text()) == expected_counts_json(good)

    summary = cli("summary", "--workdir", workdir, "--pileup", "PU200").stdout
    assert f"skipped {reason}" in flat(summary)
    status = cli("status", "--workdir", workdir).stdout
    assert "input files: 2 counted, 1 bad" in status
    assert f"bad {reason}" in flat(status)
    planned = cli(*reference_plan_args(workdir, batches=1)).stdout
    assert planned.splitlines()[0].endswith("; 2 read jobs + 1 write jobs"), planned


def test_a_bad_file_whose_name_holds_square_brackets_is_shown_verbatim(
    tmp_path: Path, dataset: Dataset
) -> None:
    """`summary` and `status` print paths and reasons as text, not as console markup."""
    bad = bad_input_path(tmp_path / "inputs", "eventTuple_[/v2].root")
    file_list = tmp_path / "flist.txt"
    file_list.write_text(f"{dataset.paths[0]}\n{bad}\n")
    workdir = tmp_path / "work"
    cli(*count_args(workdir, file_list), "--on-bad-file", "skip")
    reason = f"{bad}: file not found"
    assert [f.error for f in files(workdir)] == [None, reason]
    for args in (["status"], ["summary", "--pileup", "PU200"]):
        result = cli(*args, "--workdir", workdir, expect=None)
        assert result.exit_code == 0, f"{args[0]}: {result.exception!r}"
        assert reason in flat(result.stdout)


def test_duplicate_paths_are_counted_once_with_a_warning(tmp_path: Path, dataset: Dataset) -> None:
    first, second = dataset.paths[0], dataset.paths[1]
    file_list = tmp_path / "flist.txt"
    file_list.write_text(f"{first}\n{second}\n{first}\n")
    workdir = tmp_path / "work"
    result = cli(*count_args(workdir, file_list))
    assert result.stdout.startswith("counted 2 files, 0 unchanged, 0 unreadable, 0 matching no")
    assert (
        "WARNING balanced_batches.inputs: 1 duplicate paths in the input list are counted once"
        in result.stderr.splitlines()
    )
    assert [f.path for f in files(workdir)] == [first, second]
    assert json.loads((workdir / "counts.json").read_text()) == expected_counts_json(
        [first, second]
    )


def test_a_file_matching_no_process_is_reported_and_not_counted(
    tmp_path: Path, dataset: Dataset
) -> None:
    stray = tmp_path / CAMPAIGN / "crab_output" / "Unknown_Sample" / "crab_Unknown_PU200" / "f.root"
    stray.parent.mkdir(parents=True)
    shutil.copyfile(dataset.paths[0], stray)
    good = [dataset.paths[0], dataset.paths[1]]
    file_list = tmp_path / "flist.txt"
    file_list.write_text(f"{good[0]}\n{stray}\n{good[1]}\n")
    workdir = tmp_path / "work"
    result = cli(*count_args(workdir, file_list))
    assert ", 1 matching no process;" in result.stdout
    assert (
        f"WARNING balanced_batches.stages.count: {stray} matches no process: not used"
        in result.stderr.splitlines()
    )
    assert json.loads((workdir / "counts.json").read_text()) == expected_counts_json(good)
    summary = cli("summary", "--workdir", workdir, "--pileup", "PU200").stdout
    assert f"matches no process {stray}" in flat(summary)
    planned = cli(*reference_plan_args(workdir, batches=1)).stdout
    assert planned.splitlines()[0].endswith("; 2 read jobs + 1 write jobs"), planned


def test_a_file_matching_several_processes_goes_to_the_first_with_a_warning(
    tmp_path: Path, dataset: Dataset
) -> None:
    both = tmp_path / CAMPAIGN / "crab_output" / "DYToLL_TTTo2L2Nu" / "crab_x_PU200" / "f.root"
    both.parent.mkdir(parents=True)
    shutil.copyfile(dataset.paths[0], both)
    file_list = tmp_path / "flist.txt"
    file_list.write_text(f"{dataset.paths[0]}\n{both}\n")
    workdir = tmp_path / "work"
    result = cli(*count_args(workdir, file_list))
    name = f"{CAMPAIGN}/DYToLL_TTTo2L2Nu/crab_x_PU200/f.root"
    assert (
        f"WARNING balanced_batches.inputs: {name} matches processes DY, TTTo2L2Nu: "
        "the first is used" in result.stderr.splitlines()
    )
    counts = json.loads((workdir / "counts.json").read_text())
    assert counts[name]["process"] == "DY"
    assert counts == expected_counts_json([dataset.paths[0], str(both)])


def test_an_input_rewritten_after_counting_is_refused_by_run_and_recounted_by_count(
    tmp_path: Path, dataset: Dataset
) -> None:
    file_list, paths = copy_dataset(dataset, tmp_path / "data")
    workdir = tmp_path / "work"
    cli(*count_args(workdir, file_list))
    cli(*reference_plan_args(workdir))
    shutil.copyfile(paths[1], paths[0])  # other candidates, a new modification time
    assert cli_error(*run_args(workdir)) == (
        f"error: {paths[0]}: changed since it was counted (size or modification time); "
        "run 'count' and 'plan' again"
    )
    result = cli(*count_args(workdir, file_list))
    assert result.stdout.startswith("counted 1 files, 11 unchanged, 0 unreadable")
    assert (
        "WARNING balanced_batches.stages.count: counts change: the stored plan is dropped, "
        "run 'plan' again" in result.stderr.splitlines()
    )
    assert json.loads((workdir / "counts.json").read_text()) == expected_counts_json(paths)
    assert cli_error(*run_args(workdir)) == (
        "error: no plan in this working directory; run 'balanced-batches plan' first"
    )


# -- 5. bad configuration -----------------------------------------------------------------------


PROJECT_ERRORS = {
    "malformed-yaml": (
        "plan:\n  pileup: [PU200\n",
        r"{file}: malformed YAML at line 3, column 1: .+",
    ),
    "unknown-key": (
        "plan:\n  pileup: PU200\n  bogus_key: 3\n",
        r"{file}: key 'plan\.bogus_key' = 3: Extra inputs are not permitted",
    ),
    "non-increasing-bins": (
        "binning:\n  pt: [[20.0, 60.0, 5.0], [40.0, 100.0, 10.0]]\n  abseta: [[0.0, 2.4, 0.6]]\n",
        r"{file}: key 'binning\.pt' = \[\[20\.0, 60\.0, 5\.0\], \[40\.0, 100\.0, 10\.0\]\]: "
        r"bin edges are not increasing: \[20\.0, .*, 55\.0, 40\.0, .*\]",
    ),
    "empty-bins": (
        "binning:\n  pt: []\n  abseta: [[0.0, 2.4, 0.6]]\n",
        r"{file}: key 'binning\.pt' = \[\]: needs at least one \[start, stop, step\] triple",
    ),
    "negative-step": (
        "binning:\n  pt: [[20.0, 60.0, -5.0]]\n  abseta: [[0.0, 2.4, 0.6]]\n",
        r"{file}: key 'binning\.pt' = \[\[20\.0, 60\.0, -5\.0\]\]: "
        r"step must be positive in \[20\.0, 60\.0, -5\.0\]",
    ),
    "zero-step": (
        "binning:\n  pt: [[20.0, 60.0, 5.0]]\n  abseta: [[0.0, 2.4, 0.0]]\n",
        r"{file}: key 'binning\.abseta' = \[\[0\.0, 2\.4, 0\.0\]\]: "
        r"step must be positive in \[0\.0, 2\.4, 0\.0\]",
    ),
    "unknown-active-type": (
        "processes:\n  DY:\n    regex: DYToLL\n    active_types: [genuine, tau]\n",
        r"{file}: key .*processes\.DY\.active_types.*'tau'.*",
    ),
    "regex-does-not-compile": (
        "processes:\n  DY:\n    regex: 'DYTo(LL'\n    active_types: [genuine]\n",
        r"{file}: key 'processes\.DY\.regex' = 'DYTo\(LL': regular expression does not compile: "
        r"missing \), unterminated subpattern at position 4",
    ),
}


@pytest.mark.parametrize("case", PROJECT_ERRORS)
def test_a_bad_project_yaml_is_one_line_naming_file_key_and_value_and_writes_nothing(
    tmp_path: Path, counted_copy: Path, dataset: Dataset, case: str
) -> None:
    text, expected = PROJECT_ERRORS[case]
    project = tmp_path / "project.yaml"
    project.write_text(text)
    before = tree_digest(counted_copy)
    line = cli_error(
        "count",
        "--workdir",
        counted_copy,
        "--config",
        project,
        "--input-file-list",
        dataset.file_list,
    )
    assert re.fullmatch("error: " + expected.format(file=re.escape(str(project))), line), line
    assert tree_digest(counted_copy) == before


PROCESS_TYPES_ERRORS = {
    "unknown-active-type": (
        "DY:\n    active_types: ['genuine', 'tau']\n    regex: 'DYToLL'\n",
        r"{file}: key .*DY.*active_types.*'tau'.*",
    ),
    "regex-does-not-compile": (
        "DY:\n    active_types: ['genuine']\n    regex: 'DYTo(LL'\n",
        r"{file}: key 'DY\.regex' = 'DYTo\(LL': regular expression does not compile: "
        r"missing \), unterminated subpattern at position 4",
    ),
}


@pytest.mark.parametrize("case", PROCESS_TYPES_ERRORS)
def test_a_bad_original_process_types_yaml_is_one_line_naming_it_and_writes_nothing(
    tmp_path: Path, counted_copy: Path, dataset: Dataset, case: str
) -> None:
    text, expected = PROCESS_TYPES_ERRORS[case]
    types = tmp_path / "process_types.yaml"
    types.write_text(text)
    args = [
        types if arg == PROCESS_TYPES else arg
        for arg in count_args(counted_copy, dataset.file_list)
    ]
    before = tree_digest(counted_copy)
    line = cli_error(*args)
    assert re.fullmatch("error: " + expected.format(file=re.escape(str(types))), line), line
    assert tree_digest(counted_copy) == before


def test_bad_plan_options_are_one_line_naming_key_and_value_and_write_nothing(
    tmp_path: Path, counted_copy: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    unwritable = blocker / "batches"
    plan = ["plan", "--workdir", counted_copy, "--pileup", "PU200"]
    cases = {
        "zero-per-batch": (
            [*plan, "--events-per-batch-type", 0],
            "error: command line: key 'plan.events_per_batch_type' = 0: "
            "Input should be greater than 0",
        ),
        "unwritable-output": (
            [*plan, "--events-per-batch-type", 2, "--output-directory", unwritable],
            f"error: output.directory = '{unwritable}': not writable (Not a directory)",
        ),
        "max-reuse-leaves-no-batch": (
            [*plan, "--events-per-batch-type", 2, "--max-reuse", 1],
            "error: --max-reuse 1 leaves zero batches: the sparsest active region has 1 "
            "candidates, fewer than events per batch type 2 / 1",
        ),
    }
    before = tree_digest(counted_copy)
    for name, (args, expected) in cases.items():
        assert cli_error(*args) == expected, name
        assert tree_digest(counted_copy) == before, name
    assert not unwritable.exists()


# -- 6. resources -------------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: room for one output file of the reference plan, not for two."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}); RLIMIT_FSIZE covers it")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("limit", ["tmpfs", "file-size-limit"])
def test_a_full_disk_while_writing_outputs_is_one_line_and_a_later_run_completes(
    request: pytest.FixtureRequest,
    counted_copy: Path,
    reference_digests: dict[str, str],
    limit: str,
) -> None:
    if limit == "tmpfs":
        outdir = request.getfixturevalue("small_tmpfs") / "batches"
        preexec = None
        problem = "No space left on device"
    else:
        outdir = counted_copy / "batches"
        # an output file is ~1.35 MB; intermediate parts are as large, so they are made first
        preexec = file_size_limit(800_000)
        problem = "File too large"
    cli(*reference_plan_args(counted_copy), "--output-directory", outdir)
    if preexec is not None:
        reads = [row[1] for row in units(counted_copy) if row[0] == "read"]
        for job in reads:
            cli("make", "--workdir", counted_copy, "--job", job)
    if limit == "tmpfs":
        # the estimate sees that 3 files of ~1.35 MB cannot fit: refused before any work
        refused = process_error(run_command(EXECUTABLE, run_args(counted_copy)))
        assert re.fullmatch(
            f"error: not enough free space: output files in {re.escape(str(outdir))} need about "
            r"[\d.]+ MB, the disk has [\d.]+ MB free; .* or pass --no-space-check to go on anyway",
            refused,
        ), refused
        assert {row[2] for row in units(counted_copy)} == {"pending"}
    outcome = run_command(
        EXECUTABLE, [*run_args(counted_copy), "--no-space-check"], preexec_fn=preexec
    )
    line = process_error(outcome)
    assert re.fullmatch(
        f"error: cannot write output files into {re.escape(str(outdir))}: {problem}"
        r"( \(and [12] more failed write units\))?",
        line,
    ), line
    written = output_digests(outdir)
    assert all(reference_digests[name] == digest for name, digest in written.items())
    assert len(written) == (1 if limit == "tmpfs" else 0)
    assert leftovers(outdir) == []
    reason = line.removeprefix("error: ").split(" (and ")[0]
    writes = [row[2:] for row in units(counted_copy) if row[0] == "write"]
    assert sorted(writes) == sorted(
        # a full disk stays full for now: no retries within the run
        [("done", 0, None)] * len(written) + [("failed", 1, reason)] * (3 - len(written))
    )
    assert {row[2] for row in units(counted_copy) if row[0] == "read"} == {"done"}

    if limit == "tmpfs":
        subprocess.run(["mount", "-o", "remount,size=64m", str(outdir.parent)], check=True)
    again = run_command(EXECUTABLE, run_args(counted_copy))
    assert again.returncode == 0, again.stderr
    assert output_digests(outdir) == reference_digests
    assert leftovers(outdir) == []


PF_CANDIDATES = 100_000
PEAK_RSS_LIMIT = 1.5 * 2**30


def write_with_huge_candidate(source: str, target: Path, entry: int) -> None:
    """A copy of an input file in which one candidate has PF_CANDIDATES PF candidates.

    Written like the generator writes: scalars, and one record per counted group
    (`pfCand`, `ele`, `muon`) that uproot stores as `pfCand_*[npfCand]` branches.
    """
    with uproot.open(source) as handle:
        tree = handle[TREE]
        counters = {
            branch.name: branch.member("fLeaves")[0].member("fLeafCount").member("fName")
            for branch in tree.values()
            if isinstance(branch.interpretation, uproot.AsJagged)
        }
        arrays = tree.arrays()
    groups: dict[str, dict[str, ak.Array]] = {}
    for name, counter in counters.items():
        outer = counter.removeprefix("n")
        groups.setdefault(outer, {})[name.removeprefix(outer + "_")] = arrays[name]
    branches: dict[str, Any] = {
        name: arrays[name]
        for name in arrays.fields
        if name not in counters and name not in {f"n{outer}" for outer in groups}
    }
    rng = np.random.default_rng(5)
    pf: dict[str, ak.Array] = {}
    for inner, values in groups["pfCand"].items():
        dtype = ak.to_numpy(ak.flatten(values)).dtype
        huge = ak.unflatten(rng.uniform(0, 50, PF_CANDIDATES).astype(dtype), [PF_CANDIDATES])
        pf[inner] = ak.concatenate([values[:entry], huge, values[entry + 1 :]])
    groups["pfCand"] = pf
    for outer, fields in groups.items():
        branches[outer] = ak.zip(fields)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_ttree(target, branches)


def test_a_candidate_with_1e5_pf_candidates_goes_through_with_bounded_memory(
    tmp_path: Path, dataset: Dataset
) -> None:
    source = dataset.paths[0]  # DY, PU200: every type is active
    regions = region_of_rows(read_selection_columns(source), BINNING)
    entry = int(np.flatnonzero(regions != "")[0])
    target = (
        tmp_path / CAMPAIGN / "crab_output" / "DYToLL_M-50_huge" / "crab_DYToLL_PU200" / "h.root"
    )
    write_with_huge_candidate(source, target, entry)
    file_list = tmp_path / "flist.txt"
    file_list.write_text(f"{target}\n")
    workdir = tmp_path / "work"

    peaks = {}
    outcome, peaks["count"] = peak_rss_of(EXECUTABLE, count_args(workdir, file_list))
    assert outcome.returncode == 0, outcome.stderr
    counts = json.loads((workdir / "counts.json").read_text())
    largest = max(
        n for k, n in next(iter(counts.values())).items() if k.split("_")[0] in active_types("DY")
    )
    # as many batches as the largest region has candidates: every candidate is used
    plan = [
        "plan",
        "--workdir",
        workdir,
        "--pileup",
        "PU200",
        "--events-per-batch-type",
        1,
        "--batches",
        largest,
        "--batches-per-file",
        largest,
    ]
    outcome, peaks["plan"] = peak_rss_of(EXECUTABLE, plan)
    assert outcome.returncode == 0, outcome.stderr
    outcome, peaks["run"] = peak_rss_of(EXECUTABLE, run_args(workdir))
    assert outcome.returncode == 0, outcome.stderr
    assert all(peak < PEAK_RSS_LIMIT for peak in peaks.values()), peaks

    rows = read_output(workdir / "batches" / "batch0.root")
    huge = ak.to_numpy(ak.num(rows["pfCand_pt"])) == PF_CANDIDATES
    assert huge.any()
    assert set(ak.to_numpy(rows["bb_source_entry"][huge])) == {entry}


# -- 7. verification of results -----------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, counted: Path) -> Production:
    """A private finished production of the reference plan (tests damage and restore it)."""
    workdir = Path(shutil.copytree(counted, tmp_path_factory.mktemp("made") / "work"))
    cli(*reference_plan_args(workdir))
    cli(*run_args(workdir))
    return Production(workdir)


def overwrite_middle(path: Path) -> None:
    """Flips 16 bytes in the middle of the file (same size)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    """Keeps the first half of the file."""
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


DAMAGES: dict[str, Callable[[Path], None]] = {
    "overwritten-in-the-middle": overwrite_middle,
    "truncated": truncate,
    "deleted": Path.unlink,
}


@pytest.fixture
def damaged(made: Production, request: pytest.FixtureRequest) -> Iterator[Path]:
    """batch1.root of `made`, damaged as the test's `damage` parameter says, restored after."""
    path = made.outdir / "batch1.root"
    original = path.read_bytes()
    DAMAGES[request.param](path)
    try:
        yield path
    finally:
        path.write_bytes(original)


@pytest.mark.parametrize("damaged", DAMAGES, indirect=True)
def test_check_flags_an_output_changed_after_writing(made: Production, damaged: Path) -> None:
    result = cli("check", "--workdir", made.workdir, "--sample", 0, expect=1)
    # progress goes to the log (level-prefixed lines); problems are the indented lines
    lines = [line for line in result.stderr.splitlines() if not line.startswith("INFO ")]
    problems = lines[:-1]
    assert problems, result.stderr
    for problem in problems:
        assert problem.startswith(f"  {damaged}: "), f"not one line naming the file: {problem!r}"
    assert lines[-1] == f"check failed: {len(problems)} problems"
    if damaged.exists():
        assert f"  {damaged}: changed after it was written (size or adler32)" in problems
    else:
        assert problems == [f"  {damaged}: missing"]


@pytest.mark.parametrize("damaged", DAMAGES, indirect=True)
def test_run_again_remakes_a_lost_or_damaged_output_and_check_passes(
    made: Production, damaged: Path, reference_digests: dict[str, str]
) -> None:
    others = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in made.outputs() if p != damaged}
    result = cli(*run_args(made.workdir))
    assert result.stdout.splitlines()[-1] == finished_line(made.outdir)
    assert output_digests(made.outdir) == reference_digests, "the damaged output was not remade"
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in others} == others
    assert (
        "all outputs match the plan"
        in cli("check", "--workdir", made.workdir, "--sample", 0).stdout
    )
