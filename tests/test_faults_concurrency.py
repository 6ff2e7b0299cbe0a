"""Faults: two commands on one working directory.

`run`, `count`, `plan` and `check` refuse a working directory another command holds, in one line
naming the holder, and change nothing in it; `status` only reads, so it goes on. `make --job`
runs beside other jobs (batch systems start many at once) but not beside `run` or `plan`.

Every test asserts the exact message, that a refused command left the working directory as it
was, and the catalog state; where the holding run goes on, its outputs byte for byte against the
session's `reference`. The holder is a real process (paused with SIGSTOP while it holds the
lock) or the lock taken in this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from balanced_batches.catalog import LOCK_NAME, Catalog
from conftest import EXECUTABLE, Dataset, count_args, reference_plan_args, tree_digest
from faults_util import (
    TIMEOUT,
    command_line,
    finished_line,
    kill_group,
    output_digests,
    process_error,
    run_args,
    run_command,
    wait_for,
)

# -- two commands on one working directory ------------------------------------------------------


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
