"""Long-lived objects kept out of the cyclic garbage collector's way.

Reading a ROOT file makes many small container objects (a model per branch and basket), so
the collector runs often, and every full collection walks all objects alive: ~10^5 of them
once numpy, awkward, uproot and Dask are imported. On `count` those walks took 10-15 % of a
worker's time (BENCHMARKS.md). Objects alive once a process has set up live until it exits
anyway; `gc.freeze` moves them where the collector no longer looks. Work that makes many
short-lived objects and little garbage can also run with the collector paused, then collect
once (`collection_deferred`).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_ONE_COMMAND_PER_PROCESS = False  # set by the command line, whose process exits after one


def one_command_per_process() -> None:
    """Declares that this process runs one command and exits (the command line): from now on
    `ready_for_work` freezes what lives."""
    global _ONE_COMMAND_PER_PROCESS
    _ONE_COMMAND_PER_PROCESS = True


def ready_for_work() -> None:
    """Freezes what lives now, for the work this process does itself, in a process that runs
    one command; a test runner or a notebook that calls the library again and again keeps
    its collector as it is."""
    if _ONE_COMMAND_PER_PROCESS:
        freeze_long_lived()


def freeze_long_lived() -> None:
    """Stops the collector from visiting the objects alive now (imported modules, the
    process's set-up); objects made later are collected as usual. Call it once a process
    has imported what its work needs, right before the work."""
    gc.freeze()


@contextmanager
def collection_deferred() -> Iterator[None]:
    """Runs a block with the cyclic collector paused, then collects what the block made
    (the youngest generation: everything made while paused). For blocks whose cyclic garbage
    is small, such as reading a few trees' metadata: on `count` a worker spent 4-5 % less
    time than with the collector running (BENCHMARKS.md). Not for blocks that drop large
    buffers in cycles: those would wait until the end."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect(0)
