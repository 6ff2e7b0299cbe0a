"""balanced-batches."""

__version__ = "0.1.0"
