"""The pipeline's stages, one module each: count, summary, plan, run (with `units`, the units
of work, `output_files`, and the worker-side `*_units` modules), export, check, report."""

from typing import Final, Literal

Command = Literal["count", "run"]

# what the tasks of each command import: its local workers start with them imported (uproot
# is listed because `io.trees` imports it only when a tree is opened)
WORKER_MODULES: Final[dict[Command, tuple[str, ...]]] = {
    "count": ("balanced_batches.stages.count_units", "uproot"),
    "run": ("balanced_batches.stages.read_units", "balanced_batches.stages.write_units"),
}
