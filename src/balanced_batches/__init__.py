"""balanced-batches: balanced, shuffled training files from many ROOT n-tuples.

The Python API (see the README):

    import balanced_batches as bb
    wd = bb.Workdir.open("work", config="project.yaml")
    wd.count(workers=2)
    wd.plan(pileup="PU200", events_per_batch_type=15, output_directory="batches")
    wd.run()
    problems = wd.check()
    wd.report("report/")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .errors import BalancedBatchesError, CatalogError, CheckFailed, ConfigError
    from .workdir import (
        Execution,
        InputOptions,
        PlanOptions,
        Problems,
        Status,
        Workdir,
        run_exported_job,
    )

# imported when first used, so that `balanced-batches --help` and worker start-up stay light
_EXPORTS = {
    "Workdir": "workdir",
    "run_exported_job": "workdir",
    "InputOptions": "workdir",
    "PlanOptions": "workdir",
    "Execution": "workdir",
    "Problems": "workdir",
    "Status": "workdir",
    "BalancedBatchesError": "errors",
    "CatalogError": "errors",
    "CheckFailed": "errors",
    "ConfigError": "errors",
}

__all__ = [
    "BalancedBatchesError",
    "CatalogError",
    "CheckFailed",
    "ConfigError",
    "Execution",
    "InputOptions",
    "PlanOptions",
    "Problems",
    "Status",
    "Workdir",
    "__version__",
    "run_exported_job",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
