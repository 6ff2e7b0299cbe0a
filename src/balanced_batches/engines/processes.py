"""Local worker processes without a scheduler: the engine for work on this machine.

Each worker is a process that takes one item at a time over a pipe. On 2 cores a local Dask
cluster cost `count` 22 % of its time and `run` 9 % (BENCHMARKS.md): its scheduler and
nannies share the cores with the work, and its workers start later. What the nannies gave
is kept here:

- a worker that dies (killed, crashed, out of memory) is replaced and its item given again,
  up to `MAX_DEATHS` times per item; then the map fails with a message naming the item;
- a worker whose resident memory exceeds its share of the machine (as Dask's default:
  95 % of the memory / workers) is stopped, and counts as dead.

Workers fork from the server of `worker_server` (spawned elsewhere than on Linux), ignore
Ctrl-C (the command stops them), and freeze their long-lived objects (`heap`).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import multiprocessing
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar

from ..errors import BalancedBatchesError
from . import worker_server
from .heap import freeze_long_lived

T = TypeVar("T")
R = TypeVar("R")

MAX_DEATHS = 3  # as Dask's distributed.scheduler.allowed-failures
MEMORY_FRACTION = 0.95  # as Dask's distributed.worker.memory.terminate
MEMORY_CHECK_S = 0.5
STOP_TIMEOUT_S = 5.0
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>

log = logging.getLogger(__name__)


class WorkerDied(BalancedBatchesError):
    """A worker process died again and again on the same item."""


class RemoteTraceback(Exception):
    """Where in the worker a task's exception was raised (set as its `__cause__`)."""

    def __str__(self) -> str:
        return str(self.args[0])


def total_memory() -> int:
    """This machine's memory, or less if the cgroup the process runs in has a lower limit."""
    import psutil

    total = int(psutil.virtual_memory().total)
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            total = min(total, int(limit))
    return total


def memory_limit(workers: int) -> int:
    """Resident bytes a worker may use before it is stopped."""
    return int(MEMORY_FRACTION * total_memory() / max(1, workers))


def _die_with_parent() -> None:
    """On Linux, has the kernel kill this worker when the process it was forked from ends:
    the fork server, which ends with the command. A command killed outright (by a batch
    system, or out of memory) then leaves no worker writing behind it."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _serve(connection: Connection) -> None:
    """A worker: runs `(function, item)` messages until told to stop (None) or orphaned."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the command's to handle
    freeze_long_lived()
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return
        if message is None:
            return
        function, item = message
        reply: tuple[bool, Any, str | None]
        try:
            reply = (True, function(item), None)
        except Exception as err:
            reply = (False, err, traceback.format_exc())
        try:
            connection.send(reply)
        except OSError:
            return  # the command is gone
        except Exception as err:  # an unpicklable result or exception
            connection.send((False, RuntimeError(f"cannot send back: {err}"), reply[2]))


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    connection: Connection
    item: int | None = None  # index of the item it works on
    stopped_for: str | None = None  # why it was killed, if it was

    def death(self) -> str:
        """Why the process ended, once it has."""
        self.process.join(STOP_TIMEOUT_S)
        code = self.process.exitcode
        if self.stopped_for is not None:
            return self.stopped_for
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            return f"killed by {name}{hint}"
        return f"exited with code {code}"


class ProcessEngine:
    """Runs a function over items on `workers` local processes; results come back in
    completion order, a task's exception is raised in the caller."""

    def __init__(
        self, workers: int, worker_modules: Sequence[str] = (), memory_bytes: int | None = None
    ) -> None:
        """`worker_modules` are imported once, before workers fork (see `worker_server`);
        `memory_bytes` is each worker's limit (default: `memory_limit`)."""
        self._size = max(1, workers)
        self._forked = worker_server.start(worker_modules)
        method = worker_server.METHOD if self._forked else "spawn"
        self._context: Any = multiprocessing.get_context(method)
        self._memory_bytes = memory_bytes or memory_limit(self._size)
        self._workers: list[_Worker] = []

    def map(self, function: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """Yields `function(item)` for every item, in completion order."""
        waiting = collections.deque(range(len(items)))
        deaths: collections.Counter[int] = collections.Counter()
        try:
            while waiting or self._busy():
                self._give(function, items, waiting)
                for worker in self._with_news():
                    index = worker.item
                    assert index is not None
                    try:
                        ok, value, remote = worker.connection.recv()
                    except (EOFError, OSError):
                        self._died(worker, function, index, len(items), deaths)
                        waiting.appendleft(index)
                        continue
                    worker.item = None
                    if not ok:
                        raise value from RemoteTraceback(remote)
                    yield value
        finally:
            self._stop(self._busy())  # abandoned or failed: their work is not wanted

    def close(self) -> None:
        """Stops the workers, then the fork server they came from."""
        self._stop(self._workers)
        if self._forked:
            worker_server.stop()

    def _busy(self) -> list[_Worker]:
        return [worker for worker in self._workers if worker.item is not None]

    def _give(self, function: Callable[[T], R], items: Sequence[T], waiting: Any) -> None:
        """Hands waiting items to idle workers, starting workers up to the engine's size."""
        while waiting:
            worker = self._idle_worker(len(waiting))
            if worker is None:
                return
            index = waiting[0]
            try:
                worker.connection.send((function, items[index]))
            except (BrokenPipeError, ConnectionResetError):
                self._stop([worker])  # died while idle: nothing of ours was lost
                continue
            worker.item = waiting.popleft()

    def _idle_worker(self, wanted: int) -> _Worker | None:
        for worker in self._workers:
            if worker.item is None:
                return worker
        if len(self._workers) >= self._size or wanted <= 0:
            return None
        return self._start()

    def _start(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(theirs,), daemon=True, name="balanced-batches-worker"
        )
        process.start()
        theirs.close()  # so that our end reads EOF when the worker dies
        worker = _Worker(process, ours)
        self._workers.append(worker)
        return worker

    def _with_news(self) -> list[_Worker]:
        """Busy workers with a result or dead, after waiting for one; polices memory."""
        busy = self._busy()
        if not busy:
            return []
        handles: list[Any] = [w.connection for w in busy] + [w.process.sentinel for w in busy]
        deadline = time.monotonic() + MEMORY_CHECK_S
        while True:
            ready = set(wait(handles, timeout=max(0.0, deadline - time.monotonic())))
            news = [w for w in busy if w.connection in ready or w.process.sentinel in ready]
            if news:
                return news
            self._enforce_memory_limit(busy)
            deadline = time.monotonic() + MEMORY_CHECK_S

    def _enforce_memory_limit(self, busy: list[_Worker]) -> None:
        import psutil

        for worker in busy:
            try:
                resident = psutil.Process(worker.process.pid).memory_info().rss
            except psutil.Error:
                continue  # gone: its death is seen by the next wait
            if resident > self._memory_bytes:
                worker.stopped_for = (
                    f"stopped at {resident / 2**20:.0f} MB, over its limit of "
                    f"{self._memory_bytes / 2**20:.0f} MB"
                )
                worker.process.kill()

    def _died(
        self,
        worker: _Worker,
        function: Callable[..., Any],
        index: int,
        n_items: int,
        deaths: collections.Counter[int],
    ) -> None:
        """Buries a worker that died on item `index`; fails once the item killed too many."""
        reason = worker.death()
        self._workers.remove(worker)
        worker.connection.close()
        deaths[index] += 1
        name = getattr(function, "__name__", "work")
        if deaths[index] > MAX_DEATHS:
            raise WorkerDied(
                f"a worker process died {deaths[index]} times on item {index + 1} of "
                f"{n_items} ({name}); the last time it was {reason}"
            )
        log.warning("a worker died on item %d (%s): %s; trying again", index + 1, name, reason)

    def _stop(self, workers: list[_Worker]) -> None:
        """Ends `workers`: idle ones are asked to stop, busy ones killed."""
        for worker in workers:
            if worker.item is None:
                with contextlib.suppress(OSError):
                    worker.connection.send(None)
            else:
                worker.process.kill()
        for worker in workers:
            worker.process.join(STOP_TIMEOUT_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.connection.close()
            worker.item = None
        self._workers = [worker for worker in self._workers if worker not in workers]
