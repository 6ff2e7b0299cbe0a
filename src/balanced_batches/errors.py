"""The exceptions a user can cause. The CLI prints their message on one line and exits 2."""

from __future__ import annotations


class BalancedBatchesError(Exception):
    """Base of every error whose cause lies with the user's input, configuration or files."""


class ConfigError(BalancedBatchesError):
    """Invalid configuration: the message names the file, the key and the offending value."""


class InputFileError(BalancedBatchesError):
    """An input file that cannot be read or does not hold what the selections need."""


class CatalogError(BalancedBatchesError):
    """The working directory lacks a stage's prerequisites (no counts, no plan, stale plan)."""


class PlanError(BalancedBatchesError):
    """The requested plan cannot be made from the counted candidates."""


class ForeignFileError(BalancedBatchesError):
    """A file this tool did not write is where it would write one (`--overwrite` replaces it)."""


class EngineError(BalancedBatchesError):
    """The workers cannot be reached or started (a Dask scheduler's address, a batch system)."""


class CheckFailed(BalancedBatchesError):
    """`check` found outputs that differ from the plan."""
