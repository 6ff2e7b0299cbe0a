"""Dask distributed: a local cluster by default, or any cluster by scheduler address."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import dask
from distributed import Client, LocalCluster, WorkerPlugin, as_completed

from ..errors import EngineError
from . import worker_server
from .heap import freeze_long_lived

_STARTER = ThreadPoolExecutor(1, thread_name_prefix="balanced-batches-cluster")
T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class FrozenHeap(WorkerPlugin):
    """Imports the pipeline's modules on a worker that has started, then freezes its
    long-lived objects (see `heap`); the scheduler also runs it on workers that join, or
    are restarted, later."""

    name = "balanced-batches-frozen-heap"

    def __init__(self, modules: tuple[str, ...]) -> None:
        self.modules = modules

    def setup(self, worker: Any) -> None:
        """Runs on the worker, after its start-up."""
        del worker
        for module in self.modules:  # a worker forked from `worker_server` has them already
            importlib.import_module(module)
        freeze_long_lived()


CONNECT_TIMEOUT_S = 5.0
WORKERS_AWAITED_S = 120.0


def connect(address: str) -> Any:
    """A client of the Dask scheduler at `address`; an EngineError naming the address when
    it cannot be reached (within seconds, not Dask's 30 s)."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        if parts.scheme in ("tcp", "tls") and parts.hostname and parts.port:
            socket.create_connection((parts.hostname, parts.port), CONNECT_TIMEOUT_S).close()
        return Client(address, timeout=f"{2 * CONNECT_TIMEOUT_S:.0f}s")
    except Exception as err:  # refused, timed out, or something else answered there
        reason = getattr(err, "strerror", None) or type(err).__name__
        if not getattr(err, "strerror", None) and str(err).strip():
            reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:120]}"
        raise EngineError(
            f"--scheduler {address}: cannot reach a Dask scheduler ({reason})"
        ) from None


class DaskEngine:
    """Submits one task per item; yields results as workers finish them."""

    def __init__(
        self,
        workers: int | None = None,
        scheduler: str | None = None,
        cluster: Any = None,
        worker_modules: tuple[str, ...] = (),
        logs: Path | None = None,
    ) -> None:
        """Connects to `scheduler`, or scales `cluster` (dask-jobqueue) to `workers` jobs,
        or starts a local cluster of `workers` processes.

        A local cluster starts in the background: its worker processes come up while this
        process imports the pipeline and prepares the work. They are forked from a server
        that imports `worker_modules` once (see `worker_server`). Workers of the clusters
        started here import `worker_modules` and freeze their long-lived objects
        (`FrozenHeap`); those of a cluster reached by address are left as they are.
        When none of a cluster's jobs has joined after `WORKERS_AWAITED_S`, a warning says
        where their `logs` are: a job that fails at its start would otherwise leave this
        process waiting without a word.
        """
        self._cluster: Any = None
        self._client: Any = None
        self._starting: Future[None] | None = None
        self._settings: Any = None
        self._worker_modules = worker_modules
        self._forked = False
        self._awaiting: threading.Timer | None = None
        if scheduler is not None:
            self._client = connect(scheduler)
        elif cluster is not None:
            self._cluster = cluster
            cluster.scale(jobs=workers or 1)
            self._client = Client(cluster)
            self._client.register_plugin(FrozenHeap(worker_modules))
            self._awaiting = threading.Timer(WORKERS_AWAITED_S, self._warn_without_workers, [logs])
            self._awaiting.daemon = True
            self._awaiting.start()
        else:
            self._forked = worker_server.acquire(("distributed", *worker_modules))
            self._starting = _STARTER.submit(
                self._start_local, workers or os.cpu_count() or 1, self._forked
            )

    def _warn_without_workers(self, logs: Path | None) -> None:
        with contextlib.suppress(Exception):  # a client closing meanwhile: nothing to say
            if self._client.status != "running":
                return
            if self._client.scheduler_info(n_workers=1).get("workers"):
                return
            where = f"their logs: {logs}" if logs is not None else "see the batch system's logs"
            log.warning(
                "no Dask worker has joined in %.0f s: the jobs are queued, or they fail at "
                "their start (%s)",
                WORKERS_AWAITED_S,
                where,
            )

    def _start_local(self, workers: int, forked: bool) -> None:
        # Dask's worker environment without its MALLOC_TRIM_THRESHOLD_, which alone turns
        # glibc's adaptive thresholds off (see `worker_server.WORKER_ENVIRONMENT`); None makes
        # the nanny leave it unset. Workers forked from the server keep its heap settings.
        settings: dict[str, Any] = {
            "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None
        }
        if forked:
            settings["distributed.worker.multiprocessing-method"] = worker_server.METHOD
        self._settings = dask.config.set(settings)  # until closed: also for restarted workers
        self._cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: a busy 8787 only warns
            silence_logs=logging.WARNING,
        )
        self._client = Client(self._cluster)
        self._client.register_plugin(FrozenHeap(self._worker_modules))

    def _ready(self) -> Any:
        """The client, once the local cluster is up (its start-up error is raised here)."""
        if self._starting is not None:
            self._starting.result()
        return self._client

    def map(self, function: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """Yields results in completion order; a task's exception is raised here."""
        if not items:
            return
        # pure=False: identical items must still run (reruns after a failure)
        futures = self._ready().map(function, items, pure=False, retries=0)
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        """Closes the client and, if we started it, the local cluster, then the fork server
        its workers came from, and puts Dask's settings back."""
        if self._awaiting is not None:
            self._awaiting.cancel()
        if self._starting is not None:
            wait([self._starting])  # a cluster still starting is closed once it is up
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        if self._forked:
            self._forked = False
            worker_server.release()
        if self._settings is not None:
            settings, self._settings = self._settings, None
            settings.__exit__(None, None, None)
