"""Counts the bytes uproot requests from every file, in every Python process of a benchmark.

The harness puts this directory first on ``PYTHONPATH`` and sets ``BB_BENCH_IOTRACE`` to a
directory; every interpreter started below it (the CLI, the Dask worker processes it spawns,
the I/O-limit processes) then imports this module at start-up. Nothing happens unless the
variable is set. When uproot's source modules are imported, the ``chunk``/``chunks`` methods of
``FSSpecSource`` (uproot 5.7's default for local paths), ``MemmapSource`` and
``MultithreadedFileSource`` are wrapped so that every requested byte range is added to a
per-file counter. The counters go to ``<dir>/<pid>.json`` at most once a second and when the
process exits.

Why not only ``/proc/<pid>/io``: ``rchar`` also counts imports, scratch Parquet parts and
``/proc`` reads, and would miss memory-mapped reads; ``read_bytes`` counts only page-cache
misses, about zero on a warm cache.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import json
import os
import sys
import time
from typing import Any

_DIRECTORY = os.environ.get("BB_BENCH_IOTRACE")
_COUNTS: dict[str, list[int]] = {}  # path -> [bytes, requests]
_STATE = {"last": 0.0}


def _flush() -> None:
    if not _DIRECTORY or not _COUNTS:
        return
    target = os.path.join(_DIRECTORY, f"{os.getpid()}.json")
    temporary = target + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(_COUNTS, handle)
    os.replace(temporary, target)
    _STATE["last"] = time.monotonic()


def _add(path: str, n_bytes: int, requests: int) -> None:
    entry = _COUNTS.setdefault(str(path), [0, 0])
    entry[0] += n_bytes
    entry[1] += requests
    if time.monotonic() - _STATE["last"] > 1.0:
        _flush()


def _wrap(cls: Any, forwards: bool) -> None:
    chunk, chunks = cls.chunk, cls.chunks

    def counted_chunk(self: Any, start: int, stop: int) -> Any:
        if not (forwards and getattr(self, "_fallback", None) is not None):
            _add(self._file_path, stop - start, 1)
        return chunk(self, start, stop)

    def counted_chunks(self: Any, ranges: list[tuple[int, int]], notifications: Any) -> Any:
        if not (forwards and getattr(self, "_fallback", None) is not None):
            _add(self._file_path, sum(stop - start for start, stop in ranges), len(ranges))
        return chunks(self, ranges, notifications)

    cls.chunk, cls.chunks = counted_chunk, counted_chunks


def _patch_file(module: Any) -> None:
    _wrap(module.MemmapSource, forwards=True)
    _wrap(module.MultithreadedFileSource, forwards=False)


def _patch_fsspec(module: Any) -> None:
    _wrap(module.FSSpecSource, forwards=False)


_PATCHES = {"uproot.source.file": _patch_file, "uproot.source.fsspec": _patch_fsspec}


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps the loaders of uproot's source modules so that they are patched once loaded."""

    def __init__(self) -> None:
        self._busy = False

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        patch = _PATCHES.get(name)
        if patch is None or self._busy:
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._busy = False
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


class _AfterFork:
    """multiprocessing clears inherited finalizers in a child; this re-registers ours."""

    def reset(self) -> None:
        _COUNTS.clear()  # a forked child starts with its parent's counts: not its own reads
        _STATE["last"] = 0.0
        _register_exit()


def _register_exit() -> None:
    # multiprocessing children (Dask workers, pool workers) leave through os._exit, not atexit
    from multiprocessing import util

    util.Finalize(None, _flush, exitpriority=100)


_AFTER_FORK = _AfterFork()

if _DIRECTORY:
    sys.meta_path.insert(0, _Finder())
    atexit.register(_flush)
    from multiprocessing import util as _util

    _register_exit()
    _util.register_after_fork(_AFTER_FORK, _AfterFork.reset)
