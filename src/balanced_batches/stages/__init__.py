"""The pipeline's stages, one module each, in pipeline order: count, summary, plan, make, check."""
