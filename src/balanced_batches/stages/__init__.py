"""The pipeline's stages, one module each, in pipeline order: count, summary, plan, make, check."""

# what the tasks of `count` and `run` import: local workers start with them imported
WORKER_MODULES = (
    "balanced_batches.stages.count",
    "balanced_batches.stages.read_units",
    "balanced_batches.stages.write_units",
)
