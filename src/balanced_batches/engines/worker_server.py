"""Local workers forked from a server process that has already imported their code.

A spawned worker is a fresh interpreter that imports numpy, awkward, uproot and the
pipeline (and Dask, for a Dask worker) before its first task: 0.5-0.8 s of CPU per worker,
on the critical path of every local command. Instead, multiprocessing's fork server is
started as early as a command knows it needs local workers; it imports those modules once,
while this process goes on with its own start-up, and the workers are then forked from it,
ready to work.

This module alone starts and stops the server. Its users hold leases (`acquire` and
`release`, or `lease`): engines for their lifetime, and commands from the moment they know
their work goes to local workers, so that the server's imports overlap their own start-up.
The last lease to end stops it.

Elsewhere than on Linux, or where other code started multiprocessing's fork server, workers
are spawned: slower to start, otherwise the same.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Final

METHOD: Final = "forkserver"
# One thread per numerical library: a worker is one of several processes sharing the cores
# (Dask's nanny sets the same). And glibc's heap keeps what a worker frees: buffers up to
# 32 MiB (the most glibc's adaptive threshold would reach) come from the heap, not from fresh
# mappings, and up to 256 MiB of free memory at its top stays for the next buffers. A worker
# makes and drops buffers of the same sizes for every file; with glibc's defaults about half
# of them were fresh memory, whose pages fault in on first touch, expensive on virtual
# machines: on `run`, 0.7 M page faults instead of 0.16 M, twice the system time
# (BENCHMARKS.md). Both are set together: either alone turns the adaptive thresholds off and
# leaves the other at its default (Dask's MALLOC_TRIM_THRESHOLD_ alone made every large
# buffer a fresh mapping). Dask's PYTHONHASHSEED is left out: it keeps Dask's keys equal
# across workers, and nothing of ours depends on string hashes.
WORKER_ENVIRONMENT: Final = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20),
}

log = logging.getLogger(__name__)
_started_pid: int | None = None  # the server this module started, while it runs
_leases = 0  # its users: engines, and commands that start it ahead of their engine


def available() -> bool:
    """Whether workers fork from a server here: on Linux. macOS has a fork server too, but
    its system libraries (behind numpy, for one) are not safe to use in a forked child."""
    return sys.platform.startswith("linux") and METHOD in multiprocessing.get_all_start_methods()


def worker_environment() -> dict[str, str]:
    """What local worker processes start with: `WORKER_ENVIRONMENT`, except variables already
    set here, which win."""
    return {key: os.environ.get(key, value) for key, value in WORKER_ENVIRONMENT.items()}


@contextlib.contextmanager
def main_script_hidden() -> Iterator[None]:
    """Within: processes started here do not run the main script again.

    Worker processes started by a fork server, or spawned, run the main script again unless
    it has no file (multiprocessing's safe importing of the main module): for the console
    script that is the CLI's imports in every worker (typer and rich: 0.1 s each), and a
    notebook-style script without an `if __name__ == "__main__":` guard would run its whole
    pipeline again in every worker. Workers that run only this package's functions need none
    of it: the script's file is hidden while they start and given back after. A main module run with
    `python -m` has a spec, by which workers import it as a module: it is left as it is.
    """
    script = sys.modules.get("__main__")
    hidden = script is not None and getattr(script, "__spec__", None) is None
    path = script.__dict__.pop("__file__", None) if hidden and script is not None else None
    try:
        yield
    finally:
        if path is not None and script is not None:
            script.__dict__["__file__"] = path


def _running_pid() -> int | None:
    """The pid of multiprocessing's fork server, if one runs (a private attribute: None if
    a later Python names it otherwise)."""
    pid = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)
    return pid if isinstance(pid, int) else None


def acquire(modules: Sequence[str] = ()) -> bool:
    """Starts the fork server with `modules` imported, or shares the one already started here;
    whether workers can fork from it. Each True is one lease, ended by one `release`.

    Returns at once: the imports run in the server, which starts with this process's
    environment as it is now. A server this module started stays as it is (its modules and
    environment) until its last lease ends; one that other code started is left alone.
    """
    global _started_pid, _leases
    if not available() or (_running_pid() is not None and _started_pid is None):
        return False
    if _started_pid is None:
        multiprocessing.get_context(METHOD).set_forkserver_preload(list(modules))
        with starting_workers():
            multiprocessing.forkserver.ensure_running()
            _started_pid = _running_pid()
        if _started_pid is None:
            return False
    _leases += 1
    return True


def release() -> None:
    """Ends one lease of `acquire`; the last one stops the server, once its workers are gone."""
    global _leases
    _leases = max(0, _leases - 1)
    if _leases == 0:
        _stop()


@contextlib.contextmanager
def lease(modules: Sequence[str] = ()) -> Iterator[bool]:
    """`acquire` within, `release` after: yields whether workers can fork from the server."""
    forked = acquire(modules)
    try:
        yield forked
    finally:
        if forked:
            release()


@contextlib.contextmanager
def starting_workers() -> Iterator[None]:
    """Within: processes started from here get the workers' environment and ignore Ctrl-C.

    Ctrl-C in a terminal reaches every process of the command; the command stops its
    workers itself, and a server or worker still importing would print a traceback. An
    ignored signal stays ignored across exec and fork, and Python then leaves it so.
    """
    environment = worker_environment()
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:  # only the main thread may set handlers
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, signal.SIG_DFL if interrupt is None else interrupt)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _stop() -> None:
    """Stops the server this module started and waits for it: its CPU time then counts as
    this process's children's, and the next `acquire` sees the environment anew."""
    global _started_pid
    pid, _started_pid = _started_pid, None
    if pid is None or _running_pid() != pid:
        return  # it died and multiprocessing replaced it
    stop_server = getattr(multiprocessing.forkserver._forkserver, "_stop", None)
    if stop_server is None:  # multiprocessing has no public way; it stops when we exit
        log.debug("cannot stop the fork server %d: it stops when this process exits", pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)  # spares it the teardown of its many modules (~0.2 s)
    stop_server()  # closes its pipe and waits for it
