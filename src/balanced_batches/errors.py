"""The exceptions a user can cause. The CLI prints their message on one line and exits 2."""

from __future__ import annotations

import errno

# what the file system answers when it is full, read-only, or not the user's to write
ENVIRONMENT_ERRORS = frozenset(
    {
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EACCES,
        errno.EPERM,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.ENAMETOOLONG,
        errno.EIO,
    }
)


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


def user_error(err: BaseException) -> tuple[str, int] | None:
    """The one line to show for an error the user caused, and the exit code (1: a failed
    check, 2: anything else, 130: Ctrl-C); None for a programming error, whose traceback is
    wanted."""
    if isinstance(err, CheckFailed):
        return f"check failed: {err}", 1
    if isinstance(err, BalancedBatchesError):
        return f"error: {err}", 2
    if isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRORS:
        where = f"{err.filename}: " if err.filename else ""
        return f"error: {where}{err.strerror or err}", 2
    if isinstance(err, KeyboardInterrupt):
        return "interrupted: rerun the same command to resume", 130
    return None
