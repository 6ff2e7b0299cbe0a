"""Intermediate files between reading inputs and writing outputs.

A read unit (one input file) sends each selected row to the write unit that
writes its output file. Rows travel as parts in
`<scratch>/w<write unit>/r<read unit>-<part>.npz`; names are pure functions of
the unit indices, so a rerun of a read unit first removes its own old parts.
A part is an awkward array's buffers in an uncompressed numpy archive: parts
live for minutes and are read once, so speed matters more than size (Parquet
cost several times more per part, mostly in fixed overhead).
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np

from .errors import BalancedBatchesError
from .storage import atomic_path, remove_temporaries

PART_SUFFIX = ".npz"
_FORM, _LENGTH = "__form__", "__length__"


def unit_directory(scratch: Path, write_unit: int) -> Path:
    """Where the parts for one write unit go."""
    return scratch / f"w{write_unit:06d}"


def part_path(scratch: Path, write_unit: int, read_unit: int, part: int) -> Path:
    """One part's file name."""
    return unit_directory(scratch, write_unit) / f"r{read_unit:06d}-{part:05d}{PART_SUFFIX}"


def parts_of_read_unit(scratch: Path, read_unit: int) -> list[Path]:
    """Every part a read unit wrote, for any write unit."""
    return list(scratch.glob(f"w*/r{read_unit:06d}-*{PART_SUFFIX}"))


def read_units_with_parts(scratch: Path) -> set[int]:
    """Read units that have parts in the scratch directory."""
    return {int(path.name[1:7]) for path in scratch.glob(f"w*/r*{PART_SUFFIX}")}


def remove_parts_of_read_unit(scratch: Path, read_unit: int) -> None:
    """Deletes what an earlier, interrupted attempt of a read unit left."""
    for path in parts_of_read_unit(scratch, read_unit):
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
    form, length, buffers = ak.to_buffers(ak.to_packed(rows))
    with atomic_path(path) as temporary, temporary.open("wb") as handle:
        header = {_FORM: np.array(form.to_json()), _LENGTH: np.array(length)}
        np.savez(handle, **header, **buffers)  # type: ignore[arg-type]


def read_part(path: Path) -> ak.Array:
    """The rows of one part."""
    with np.load(path) as stored:
        buffers = {name: stored[name] for name in stored.files if not name.startswith("__")}
        form = ak.forms.from_json(str(stored[_FORM]))
        return ak.from_buffers(form, int(stored[_LENGTH]), buffers)


def read_unit_parts(scratch: Path, write_unit: int) -> ak.Array | None:
    """All rows sent to a write unit, or None if there are none."""
    paths = sorted(unit_directory(scratch, write_unit).glob(f"r*{PART_SUFFIX}"))
    if not paths:
        return None
    return ak.concatenate([read_part(path) for path in paths])
