"""Long-lived objects kept out of the cyclic garbage collector's way.

Reading a ROOT file makes many small container objects (a model per branch and basket), so
the collector runs often, and every full collection walks all objects alive: ~10^5 of them
once numpy, awkward, uproot and Dask are imported. On `count` those walks took 10-15 % of a
worker's time (BENCHMARKS.md). Objects alive once a process has set up live until it exits
anyway; `gc.freeze` moves them where the collector no longer looks.
"""

from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    """Stops the collector from visiting the objects alive now (imported modules, the
    process's set-up); objects made later are collected as usual. Call it once a process
    has imported what its work needs, right before the work."""
    gc.freeze()
