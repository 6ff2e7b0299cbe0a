"""Local worker processes without a scheduler: the engine for work on this machine.

Each worker is a process that takes one item at a time over a pipe. On 2 cores a local Dask
cluster made `count` and `run` slower (BENCHMARKS.md): its scheduler and nannies share the
cores with the work, and its workers start later. What the nannies gave is kept:

- a worker that dies (killed, crashed, out of memory) is replaced and its item given again,
  up to `MAX_DEATHS` times per item; then the map fails with a message naming the item;
- a worker whose resident memory exceeds its share of the machine (as Dask's default:
  95 % of the memory / workers) is stopped, which counts as a death.

Workers fork from the server of `worker_server` (elsewhere than on Linux they are spawned),
ignore Ctrl-C (the command stops them), die with the command, and freeze their long-lived
objects (`heap`).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import os
import pickle
import select
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext, SpawnContext
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


def _exit_with(command: int) -> None:
    """Ends this worker as soon as `command`, the process that started it, ends: a command
    killed outright (by a batch system, or out of memory) then leaves no worker writing
    behind it. (The fork server outlives it while workers hold its pipe, so the kernel's
    parent-death signal would not do.)"""

    def watch() -> None:
        try:
            handle = os.pidfd_open(command)  # Linux >= 5.3: readable once it has ended
        except (AttributeError, OSError):
            while _running(command):
                time.sleep(1.0)
        else:
            ended = select.poll()
            ended.register(handle, select.POLLIN)
            ended.poll()
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-command", daemon=True).start()


def _running(pid: int) -> bool:
    """Whether process `pid` is still ours and alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process now holds that pid: ours has ended
    return True


def _serve(connection: Connection, command: int) -> None:
    """A worker: runs `(function, item)` messages until told to stop (None) or orphaned."""
    _exit_with(command)
    freeze_long_lived()
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return
        except Exception as err:  # e.g. the function's module cannot be imported here
            connection.send_bytes(pickle.dumps(_failure(err)))
            continue
        if message is None:
            return
        function, item = message
        try:
            data = pickle.dumps((True, function(item), None))
        except Exception as err:  # the task's, or its result cannot travel back
            data = pickle.dumps(_failure(err))
        try:
            connection.send_bytes(data)
        except OSError:
            return  # the command is gone


def _failure(err: Exception) -> tuple[bool, Any, str]:
    """The reply for a failed task: the exception if it survives pickling, else its text."""
    text = traceback.format_exc()
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        err = RuntimeError(f"{type(err).__name__}: {err}")
    return False, err, text


@dataclass(eq=False)
class _Worker:
    """A worker process, our end of its pipe, and what it is doing."""

    process: BaseProcess
    connection: Connection
    item: int | None = None  # index of the item it works on, for the current map
    served: int = 0  # items it has finished
    stopped_for: str | None = None  # why it was killed, if it was

    def death(self) -> str:
        """Why the process ended, once it has."""
        self.process.join(STOP_TIMEOUT_S)
        if self.stopped_for is not None:
            return self.stopped_for
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            return f"killed by {name}{hint}"
        return f"exited with code {code}"


class ProcessEngine:
    """Runs a function over items on `workers` local processes; results come back in
    completion order, a task's exception is raised in the caller. One map at a time: a
    new map stops the work an abandoned one left running."""

    def __init__(
        self,
        workers: int,
        worker_modules: Sequence[str] = (),
        memory_bytes: int | None = None,
        *,
        run_main_script: bool = True,
    ) -> None:
        """`worker_modules` are imported once, before workers fork (see `worker_server`);
        `memory_bytes` is each worker's limit (default: `memory_limit`). Workers run the main
        script again, as multiprocessing's do, so that functions defined there can be mapped;
        with `run_main_script=False` (the pipeline's own functions only) they do not, and a
        script without an `if __name__ == "__main__":` guard works too."""
        self._size = max(1, workers)
        self._run_main_script = run_main_script
        self._forked = worker_server.acquire(worker_modules)
        self._context: ForkServerContext | SpawnContext = (
            multiprocessing.get_context(worker_server.METHOD)
            if self._forked
            else multiprocessing.get_context("spawn")
        )
        self._memory_bytes = memory_bytes or memory_limit(self._size)
        self._workers: list[_Worker] = []
        self._next_memory_check = 0.0
        self._current_map: object = None

    def map(self, function: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """Yields `function(item)` for every item, in completion order."""
        owner = self._current_map = object()
        self._stop(self._busy())  # left by an abandoned map
        waiting = collections.deque(range(len(items)))
        deaths: collections.Counter[int] = collections.Counter()
        name = getattr(function, "__name__", "work")
        try:
            while waiting or self._busy():
                self._give(function, items, waiting)
                for worker in self._with_news():
                    index = worker.item
                    assert index is not None
                    reply = self._receive(worker)
                    if reply is None:
                        self._died(worker, name, index, len(items), deaths)
                        waiting.appendleft(index)
                        continue
                    worker.item = None
                    worker.served += 1
                    ok, value, remote = reply
                    if not ok:
                        raise value from RemoteTraceback(remote)
                    self._give(function, items, waiting)  # before the caller's turn
                    yield value
                    if self._current_map is not owner:  # it stopped our busy workers
                        raise RuntimeError("another map started while this one was paused")
        finally:
            if self._current_map is owner:  # abandoned or failed: their work is not wanted
                self._stop(self._busy())

    def close(self) -> None:
        """Stops the workers, then ends its lease of the fork server they came from."""
        self._stop(self._workers)
        if self._forked:
            self._forked = False
            worker_server.release()

    def _busy(self) -> list[_Worker]:
        """Workers with an item (of the current map: a new map stops the others' first)."""
        return [worker for worker in self._workers if worker.item is not None]

    def _give(
        self, function: Callable[[T], R], items: Sequence[T], waiting: collections.deque[int]
    ) -> None:
        """Hands waiting items to idle workers, starting workers up to the engine's size."""
        while waiting:
            worker = self._idle_worker()
            if worker is None:
                return
            worker.item = waiting.popleft()
            try:
                worker.connection.send((function, items[worker.item]))
            except (BrokenPipeError, ConnectionResetError):
                waiting.appendleft(worker.item)
                worker.item = None
                reason = worker.death()
                self._stop([worker])  # died while idle: nothing of ours was lost
                if worker.served == 0:
                    raise WorkerDied(f"a new worker process died at once: {reason}") from None

    def _idle_worker(self) -> _Worker | None:
        """An idle worker, a new one while there are fewer than the engine's size, or None."""
        for worker in self._workers:
            if worker.item is None:
                return worker
        return self._start() if len(self._workers) < self._size else None

    def _start(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(theirs, os.getpid()), daemon=True, name="balanced-batches-worker"
        )
        # a forked worker has the server's environment, and ignores Ctrl-C as it does; around
        # a fork server's start this would also ignore Ctrl-C here while it imports
        spawning = contextlib.nullcontext() if self._forked else worker_server.starting_workers()
        hidden = (
            contextlib.nullcontext()
            if self._run_main_script
            else worker_server.main_script_hidden()
        )
        with spawning, hidden:
            process.start()
        theirs.close()  # so that our end reads EOF when the worker dies
        worker = _Worker(process, ours)
        self._workers.append(worker)
        return worker

    def _with_news(self) -> list[_Worker]:
        """Busy workers with a result, or dead, once there is one; meanwhile (and at least
        every MEMORY_CHECK_S) stops workers over their memory limit."""
        busy = self._busy()
        handles: list[Any] = [w.connection for w in busy] + [w.process.sentinel for w in busy]
        while busy:
            now = time.monotonic()
            if now >= self._next_memory_check:
                self._enforce_memory_limit(busy)
                self._next_memory_check = now + MEMORY_CHECK_S
            ready = set(wait(handles, timeout=max(0.0, self._next_memory_check - now)))
            news = [w for w in busy if w.connection in ready or w.process.sentinel in ready]
            if news:
                return news
        return []

    @staticmethod
    def _receive(worker: _Worker) -> tuple[bool, Any, str | None] | None:
        """The worker's reply, or None if it died (a dead worker's pipe may lack the EOF
        when another process holds its end, so it is read only if it holds data)."""
        try:
            if not worker.connection.poll():
                return None  # news from its sentinel alone: it died
            data = worker.connection.recv_bytes()
        except (EOFError, OSError):
            return None
        try:
            reply: tuple[bool, Any, str | None] = pickle.loads(data)
        except Exception as err:
            return False, RuntimeError(f"cannot read the worker's reply: {err}"), None
        return reply

    def _enforce_memory_limit(self, busy: list[_Worker]) -> None:
        """Kills the workers whose resident memory is over the limit (a death, see map)."""
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
        self, worker: _Worker, name: str, index: int, n_items: int, deaths: collections.Counter[int]
    ) -> None:
        """Buries a worker that died on item `index`; fails once the item killed too many."""
        reason = worker.death()
        worker.item = None
        self._stop([worker])
        deaths[index] += 1
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
            worker.process.close()
            worker.item = None
        self._workers = [worker for worker in self._workers if worker not in workers]
