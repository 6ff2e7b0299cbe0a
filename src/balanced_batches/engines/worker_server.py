"""Local Dask workers forked from a server process that has already imported their code.

A spawned worker is a fresh interpreter that imports Dask, numpy, awkward, uproot and the
pipeline before its first task: ~0.8 s of CPU per worker, on the critical path of every
local command. Instead, multiprocessing's fork server is started as early as a command
knows it needs local workers; it imports those modules once, while this process goes on
with its own start-up, and the workers are then forked from it, ready to work.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import signal
from collections.abc import Sequence

METHOD = "forkserver"


class _ServerState:
    running = False


_server = _ServerState()


def available() -> bool:
    """Whether this platform has a fork server (not on Windows)."""
    return METHOD in multiprocessing.get_all_start_methods()


def worker_environment() -> dict[str, str]:
    """What Dask sets for a new worker process (one BLAS thread, a fixed hash seed),
    without MALLOC_TRIM_THRESHOLD_.

    That variable turns off glibc's adaptive mmap threshold, so every large numpy buffer
    becomes a fresh mapping whose pages fault in on first touch and go back on free: on
    `run` it doubled the system time and cost 10% of the wall time (BENCHMARKS.md).
    """
    import dask.config

    configured = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    # as Dask's Nanny: variables already set here win; None unsets a default
    environment = {
        key: os.environ.get(key, str(value))
        for key, value in configured.items()
        if value is not None and key != "MALLOC_TRIM_THRESHOLD_"
    }
    if os.environ.get("PYTHONHASHSEED") in (None, "0"):
        environment["PYTHONHASHSEED"] = "6640"  # as Dask's Nanny does
    return environment


def start(modules: Sequence[str] = ()) -> bool:
    """Starts the fork server with `modules` imported, unless it runs already; False if this
    platform has none. Returns at once: the imports run in the server.

    The server and its workers start with this process's environment as it is now.
    """
    if not available():
        return False
    if _server.running:
        return True
    environment = worker_environment()
    multiprocessing.get_context(METHOD).set_forkserver_preload(["distributed", *modules])
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    try:
        multiprocessing.forkserver.ensure_running()
        _server.running = True
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return True


def stop() -> None:
    """Stops the fork server, once its workers are gone, and waits for it: its CPU time then
    counts as this process's children's, and the next start sees the environment anew."""
    if not _server.running:
        return
    _server.running = False
    # multiprocessing has no public way to stop its server; without one it stops when
    # this process exits. SIGTERM spares it the teardown of its many modules (~0.2 s).
    server = multiprocessing.forkserver._forkserver
    pid = getattr(server, "_forkserver_pid", None)
    stop_server = getattr(server, "_stop", None)
    if pid is None or stop_server is None:
        return
    os.kill(pid, signal.SIGTERM)
    stop_server()  # closes its pipe and waits for it
