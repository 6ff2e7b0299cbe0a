"""A synthetic TauTuple dataset, apart from the pipeline: `generate` writes files laid out
like a CMS production (`samples`), with the TauTuple branches (`tautuple_schema`) filled by
vectorised physics models (`tautuple_model`). The pipeline never imports this package."""
