"""Where work runs: in this process, on local worker processes, or on a Dask cluster.

An engine maps a function over work items and yields results as they finish.
Dask is imported only inside its engine.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from ..config import BatchConfig

T = TypeVar("T")
R = TypeVar("R")


class Engine(Protocol):
    """Runs a function over items; results arrive in completion order."""

    def map(self, function: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """Yields `function(item)` for every item."""
        ...

    def close(self) -> None:
        """Releases workers."""
        ...


class Reporter(Protocol):
    """Shows progress; the library never prints."""

    def track(self, results: Iterable[T], total: int, description: str) -> Iterator[T]:
        """Passes results through while showing progress."""
        ...


class SilentReporter:
    """Shows nothing."""

    def track(self, results: Iterable[T], total: int, description: str) -> Iterator[T]:
        """Passes results through."""
        yield from results


class InProcessEngine:
    """Runs everything here, one item after another (used for single jobs and tests)."""

    def map(self, function: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """Yields results in item order."""
        for item in items:
            yield function(item)

    def close(self) -> None:
        """Nothing to release."""


class ExecutorEngine:
    """Runs work on a caller's `concurrent.futures.Executor` (which the caller closes)."""

    def __init__(self, executor: concurrent.futures.Executor) -> None:
        self.executor = executor

    def map(self, function: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """Yields results in completion order."""
        futures = [self.executor.submit(function, item) for item in items]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        """Leaves the executor to its owner."""


def make_engine(
    workers: int | None,
    scheduler: str | None = None,
    cluster: str | None = None,
    batch: BatchConfig | None = None,
    worker_modules: tuple[str, ...] = (),
    run_main_script: bool = True,
    cluster_logs: Path | None = None,
) -> Engine:
    """An engine: an existing Dask cluster by address, workers as HTCondor/Slurm jobs
    (`cluster`, resources from `batch`), local worker processes for >1 worker, else
    in-process. (A local Dask cluster, with its dashboard: `dask.DaskEngine(workers=N)`.)

    Local workers have `worker_modules` imported before they start (see `worker_server`);
    with `run_main_script=False` they do not run the main script again (see `ProcessEngine`).
    The workers of a `cluster` write their logs to `cluster_logs`.
    """
    if scheduler is None and cluster is None:
        if (workers or 1) <= 1:
            return InProcessEngine()
        from .processes import ProcessEngine

        return ProcessEngine(workers or 1, worker_modules, run_main_script=run_main_script)
    from .dask import DaskEngine

    if cluster is not None:
        from ..config import BatchConfig
        from .jobqueue import jobqueue_cluster, require_submit_command

        require_submit_command(cluster)
        jobs = jobqueue_cluster(cluster, batch or BatchConfig(), logs=cluster_logs)
        return DaskEngine(
            workers=workers, cluster=jobs, worker_modules=worker_modules, logs=cluster_logs
        )
    return DaskEngine(workers=workers, scheduler=scheduler)


@contextlib.contextmanager
def local_workers_ahead(
    workers: int | None,
    scheduler: str | None = None,
    cluster: str | None = None,
    worker_modules: tuple[str, ...] = (),
) -> Iterator[None]:
    """Within: the server that local workers fork from is started now, unless the work goes
    to a Dask cluster or one worker, so that its imports (`worker_modules`) overlap what the
    caller does before it makes its engine: reading a configuration, opening a catalog.
    `workers=None` (one per core, or the configuration's number) counts as local workers."""
    from . import worker_server

    local = scheduler is None and cluster is None and workers != 1
    with worker_server.lease(worker_modules) if local else contextlib.nullcontext():
        yield
