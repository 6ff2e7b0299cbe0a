"""The local process engine: real worker processes that fail, die, eat memory and are left.

Workers are forked from the fork server (on Linux), so the functions they run live in this
module, which they import by name.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from balanced_batches.engines import make_engine, worker_server
from balanced_batches.engines.processes import ProcessEngine, RemoteTraceback, WorkerDied
from faults_util import alive


def square(value: int) -> int:
    return value * value


def slow_square(value: int) -> int:
    time.sleep(0.05 * (value % 3))  # completion order differs from item order
    return value * value


def fail_on_three(value: int) -> int:
    if value == 3:
        raise ValueError("three is not allowed")
    return value


def die_the_first_time(marker: str) -> str:
    """Kills its worker the first time it sees `marker`, returns it the next time."""
    if not Path(marker).exists():
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return marker


def die(_: int) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def hold_memory(megabytes: int) -> int:
    block = np.ones(megabytes * 2**20, dtype=np.uint8)  # every page touched
    time.sleep(5)
    return int(block[-1])


def identity(_: int) -> tuple[int, int]:
    return os.getpid(), os.getppid()


def sleep_unless_zero(value: int) -> int:
    if value:
        time.sleep(60)
    return value


def return_after(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def return_a_lambda(_: int) -> object:
    return lambda: None


class NeedsTwoArguments(Exception):
    """Pickles, but cannot be unpickled: its __init__ wants what its args do not hold."""

    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first} and {second}")


def raise_needs_two(_: int) -> None:
    raise NeedsTwoArguments("this", "that")


def hold_memory_or_pass(megabytes: int) -> int:
    if megabytes:
        return hold_memory(megabytes)
    time.sleep(0.03)
    return 0


def blas_threads(_: int) -> tuple[int, str | None]:
    return os.getppid(), os.environ.get("OMP_NUM_THREADS")


def write_pid_and_sleep(path: str) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(60)


def wait_until_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    """The pids still alive after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {pid for pid in pids if alive(pid)}


@pytest.fixture
def engine() -> Iterator[ProcessEngine]:
    engine = make_engine(2)
    assert isinstance(engine, ProcessEngine)
    yield engine
    engine.close()


def test_every_result_comes_back_once_in_completion_order(engine: ProcessEngine) -> None:
    results = list(engine.map(slow_square, list(range(30))))
    assert sorted(results) == [value * value for value in range(30)]
    assert list(engine.map(square, [])) == []
    assert list(engine.map(square, [7])) == [49]  # the same workers serve a second map


def test_results_come_back_as_they_finish_not_in_item_order(engine: ProcessEngine) -> None:
    assert list(engine.map(return_after, [0.5, 0.0])) == [0.0, 0.5]


def test_work_is_spread_over_the_workers(engine: ProcessEngine) -> None:
    processes = set(engine.map(identity, list(range(20))))
    assert len({pid for pid, _ in processes}) == 2
    assert os.getpid() not in {pid for pid, _ in processes}


def test_a_task_exception_is_raised_here_with_the_workers_traceback(
    engine: ProcessEngine,
) -> None:
    with pytest.raises(ValueError, match="three is not allowed") as raised:
        list(engine.map(fail_on_three, list(range(6))))
    assert isinstance(raised.value.__cause__, RemoteTraceback)
    assert "fail_on_three" in str(raised.value.__cause__)
    assert sorted(engine.map(square, [1, 2])) == [1, 4]  # the engine still works


def test_what_cannot_travel_back_is_an_error_naming_it(engine: ProcessEngine) -> None:
    with pytest.raises(Exception, match="pickle"):
        list(engine.map(return_a_lambda, [0]))
    with pytest.raises(RuntimeError, match="NeedsTwoArguments: this and that"):
        list(engine.map(raise_needs_two, [0]))
    assert list(engine.map(square, [2])) == [4]


def test_a_worker_that_dies_while_idle_is_replaced_without_a_word(
    engine: ProcessEngine, caplog: pytest.LogCaptureFixture
) -> None:
    workers = {pid for pid, _ in engine.map(identity, [0, 1, 2, 3])}
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    # reaped, not only dead: until its fork server reaps it, a killed worker's end of the
    # pipe may still accept a message (seen under load), which then reads as a death on it
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, "the killed workers were never reaped"
        time.sleep(0.02)
    with caplog.at_level(logging.WARNING, logger="balanced_batches"):
        after = {pid for pid, _ in engine.map(identity, [0, 1, 2, 3])}
    assert len(after) == 2 and after.isdisjoint(workers)
    assert not [r for r in caplog.records if "died" in r.getMessage()]


def test_a_worker_that_dies_is_replaced_and_its_item_given_again(
    engine: ProcessEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    markers = [str(tmp_path / f"item{i}") for i in range(4)]
    with caplog.at_level(logging.WARNING, logger="balanced_batches"):
        results = list(engine.map(die_the_first_time, markers))
    assert sorted(results) == markers
    deaths = [r for r in caplog.records if "a worker died" in r.getMessage()]
    assert len(deaths) == 4
    assert all("killed by SIGKILL" in r.getMessage() for r in deaths)


def test_an_item_that_kills_every_worker_fails_the_map_naming_it(engine: ProcessEngine) -> None:
    with pytest.raises(WorkerDied, match=r"died 4 times on item 1 of 1 \(die\).*SIGKILL"):
        list(engine.map(die, [0]))
    assert list(engine.map(square, [3])) == [9]


def test_a_worker_over_its_memory_limit_is_stopped() -> None:
    engine = ProcessEngine(1, memory_bytes=200 * 2**20)
    try:
        started = time.monotonic()
        with pytest.raises(WorkerDied, match=r"over its limit of 200 MB"):
            list(engine.map(hold_memory, [400]))
        assert time.monotonic() - started < 4 * 5  # stopped, not left to finish
        assert list(engine.map(hold_memory, [10])) == [1]  # within the limit
    finally:
        engine.close()


def test_memory_is_watched_while_other_workers_keep_finishing_items() -> None:
    engine = ProcessEngine(2, memory_bytes=200 * 2**20)
    finished: list[int] = []
    try:
        with pytest.raises(WorkerDied, match=r"over its limit of 200 MB"):
            for result in engine.map(hold_memory_or_pass, [400] + [0] * 300):
                finished.append(result)
    finally:
        engine.close()
    assert len(finished) < 250  # stopped while the quick items still flowed


def test_a_worker_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """The command is killed outright (not its group): the worker sees it end and exits,
    where it would otherwise sleep on for a minute (its fork server outlives the command
    while the worker holds the server's pipe)."""
    pid_file = tmp_path / "worker.pid"
    script = tmp_path / "owner.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from balanced_batches.engines import make_engine\n"
        "from test_processes import write_pid_and_sleep\n"
        "if __name__ == '__main__':\n"
        f"    list(make_engine(2).map(write_pid_and_sleep, [{str(pid_file)!r}]))\n"
    )
    owner = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert owner.poll() is None and time.monotonic() < deadline, "no worker started"
            time.sleep(0.05)
        worker = int(pid_file.read_text())
        assert alive(worker)
    finally:
        owner.kill()
        owner.wait()
    assert wait_until_gone({worker}, timeout=5) == set()


# A main script without an `if __name__ == "__main__":` guard, as a notebook-style user script
# is written: workers that ran it again would each run its pipeline again (and print).
MAIN_SCRIPT = """
from balanced_batches.engines import make_engine

print("main script ran")
for method in ("fork server", "spawn"):
    if method == "spawn":
        from balanced_batches.engines import worker_server
        worker_server.available = lambda: False
    engine = make_engine(2, run_main_script=False)
    try:
        print(sorted(engine.map(abs, [-1, -2, -3, -4])))
    finally:
        engine.close()
print(__file__.endswith("command.py"))
"""


def test_workers_do_not_run_the_main_script_again_and_it_keeps_its_file(tmp_path: Path) -> None:
    script = tmp_path / "command.py"
    script.write_text(MAIN_SCRIPT)
    finished = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 0, finished.stderr
    lines = ["main script ran", "[1, 2, 3, 4]", "[1, 2, 3, 4]", "True"]
    assert finished.stdout.splitlines() == lines


def test_without_a_fork_server_workers_are_spawned_with_the_same_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_server, "available", lambda: False)
    engine = ProcessEngine(2)
    try:
        results = list(engine.map(blas_threads, [0, 1]))
    finally:
        engine.close()
    expected = worker_server.worker_environment()["OMP_NUM_THREADS"]
    assert results == [(os.getpid(), expected)] * 2


def test_one_map_at_a_time_a_paused_map_learns_another_one_ran(engine: ProcessEngine) -> None:
    first = engine.map(slow_square, list(range(10)))
    next(first)  # paused with work in flight
    assert sorted(engine.map(square, [1, 2])) == [1, 4]
    with pytest.raises(RuntimeError, match="another map started"):
        list(first)


def test_work_left_behind_is_stopped_and_close_ends_every_worker(engine: ProcessEngine) -> None:
    workers = {pid for pid, _ in engine.map(identity, [0, 1, 2, 3])}
    results = engine.map(sleep_unless_zero, [0, 1, 2])
    assert next(results) == 0  # its worker already has item 2: both sleep now
    results.close()  # the caller gives up on the rest: the busy workers are stopped
    assert wait_until_gone(workers) == set()
    after = {pid for pid, _ in engine.map(identity, [0, 1])}
    assert len(after) == 2 and after.isdisjoint(workers)  # new workers took their place
    engine.close()
    assert wait_until_gone(after) == set()
