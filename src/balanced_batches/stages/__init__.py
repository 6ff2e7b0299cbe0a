"""The pipeline's stages, one module each, in pipeline order: count, summary, plan, make, check."""

# what the tasks of each command import: its local workers start with them imported
WORKER_MODULES = {
    "count": ("balanced_batches.stages.count_units",),
    "run": ("balanced_batches.stages.read_units", "balanced_batches.stages.write_units"),
}
