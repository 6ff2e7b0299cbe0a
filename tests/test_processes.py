"""The local process engine: real worker processes that fail, die, eat memory and are left.

Workers are forked from the fork server (on Linux), so the functions they run live in this
module, which they import by name.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from balanced_batches.engines import make_engine, worker_server
from balanced_batches.engines.processes import ProcessEngine, RemoteTraceback, WorkerDied


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


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


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


def test_work_is_spread_over_the_workers_forked_from_the_server(engine: ProcessEngine) -> None:
    processes = set(engine.map(identity, list(range(20))))
    assert len({pid for pid, _ in processes}) == 2
    if worker_server.available():
        assert {parent for _, parent in processes} == {worker_server.server_pid()}


def test_a_task_exception_is_raised_here_with_the_workers_traceback(
    engine: ProcessEngine,
) -> None:
    with pytest.raises(ValueError, match="three is not allowed") as raised:
        list(engine.map(fail_on_three, list(range(6))))
    assert isinstance(raised.value.__cause__, RemoteTraceback)
    assert "fail_on_three" in str(raised.value.__cause__)
    assert sorted(engine.map(square, [1, 2])) == [1, 4]  # the engine still works


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


def test_work_left_behind_is_stopped_and_close_ends_every_worker(engine: ProcessEngine) -> None:
    workers = {pid for pid, _ in engine.map(identity, [0, 1, 2, 3])}
    results = engine.map(sleep_unless_zero, [0, 1, 2])
    assert next(results) == 0  # one worker is idle again, the other sleeps on item 1
    results.close()  # the caller gives up on the rest: the busy worker is stopped
    survivors = wait_until_gone(workers, timeout=5)  # the idle one stays
    assert len(survivors) == 1
    after = {pid for pid, _ in engine.map(identity, [0, 1])}
    assert len(after) == 2 and after & workers == survivors  # a new worker took its place
    server = worker_server.server_pid()
    engine.close()
    assert wait_until_gone(after) == set()
    if server is not None:
        assert wait_until_gone({server}) == set()
