"""Faults: `run` and `count` killed at any moment, then run again.

Kills with SIGKILL at seeded random moments (failures are reproducible) and at chosen steps
(a part sent, an output half written, renamed but not recorded, being recorded), also while
resuming or while a lost output is being remade; Ctrl-C; one worker killed; the command killed
without its workers.

Every test asserts what the kill may leave (no partial file under a final name, no unit recorded
done whose output is missing or differs, no process still running) and that the same command
again ends with the output files byte for byte those of an uninterrupted run of the same plan and
seed made in another working directory (the session's `reference`), or with counts.json identical
to an uninterrupted `count`. The commands are real processes in their own session (faults_util).
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from balanced_batches.catalog import CATALOG_NAME, Catalog
from balanced_batches.shards import Part, all_parts
from conftest import EXECUTABLE, REFERENCE_FILES, Dataset, cli, count_args, reference_plan_args
from faults_util import (
    LOG_LINE,
    KillPoint,
    files,
    finished_line,
    forked_workers,
    group_members,
    leftovers,
    output_digests,
    parent_of,
    plan_scratch,
    run_acting_when,
    run_args,
    run_command,
    run_killed_after,
    run_killed_at,
    run_watched,
    sha256_of,
    units,
    wait_for,
)

KILL_SEED = 20_240_611  # the seed of every random kill moment: failures are reproducible


# -- helpers ------------------------------------------------------------------------------------


def recorded_outputs(workdir: Path) -> dict[int, list[dict[str, Any]]]:
    """Outputs of every write unit the catalog records as done."""
    catalog = Catalog.open(workdir)
    try:
        return {unit: r["outputs"] for unit, r in catalog.unit_results("write").items()}
    finally:
        catalog.close()


# -- fixtures -----------------------------------------------------------------------------------


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


# -- kill -9 of run and count -------------------------------------------------------------------


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
    # the rows of the first output are in its temporary file, which is not closed yet
    "inside-the-1st-output": lambda outdir: KillPoint(
        "balanced_batches.io.ttree_writer:TreeWriter.extend", nth=1
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
    if kill.target.endswith("TreeWriter.extend"):
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
