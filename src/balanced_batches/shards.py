"""Intermediate files between reading inputs and writing outputs.

A read unit (one input file) sends each selected row to the write unit that
writes its output file. Rows travel as Parquet parts in
`<scratch>/w<write unit>/r<read unit>-<part>.parquet`; names are pure functions
of the unit indices, so a rerun of a read unit first removes its own old parts.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak

from .errors import BalancedBatchesError
from .storage import atomic_path, remove_temporaries

SHARD_COMPRESSION = "lz4"


def unit_directory(scratch: Path, write_unit: int) -> Path:
    """Where the parts for one write unit go."""
    return scratch / f"w{write_unit:06d}"


def part_path(scratch: Path, write_unit: int, read_unit: int, part: int) -> Path:
    """One part's file name."""
    return unit_directory(scratch, write_unit) / f"r{read_unit:06d}-{part:05d}.parquet"


def remove_parts_of_read_unit(scratch: Path, read_unit: int) -> None:
    """Deletes what an earlier, interrupted attempt of a read unit left."""
    for path in scratch.glob(f"w*/r{read_unit:06d}-*.parquet"):
        path.unlink(missing_ok=True)
    for directory in scratch.glob("w*"):
        remove_temporaries(directory, f"r{read_unit:06d}-*")


def write_part(path: Path, rows: ak.Array) -> None:
    """Writes rows atomically; a full or unwritable scratch disk is a one-line error."""
    try:
        _write(path, rows)
    except OSError as err:
        raise BalancedBatchesError(
            f"cannot write intermediate file {path}: {err.strerror or err}"
        ) from err


def _write(path: Path, rows: ak.Array) -> None:
    with atomic_path(path) as temporary:
        ak.to_parquet(
            rows, temporary, compression=SHARD_COMPRESSION, parquet_metadata_statistics=False
        )


def read_unit_parts(scratch: Path, write_unit: int) -> ak.Array | None:
    """All rows sent to a write unit, or None if there are none."""
    paths = sorted(unit_directory(scratch, write_unit).glob("r*.parquet"))
    if not paths:
        return None
    return ak.concatenate([ak.from_parquet(path) for path in paths])
