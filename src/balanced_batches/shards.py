"""Intermediate parts between reading inputs and writing outputs.

A read unit writes the rows it selected as parts `<scratch>/parts/r<read unit>-<part>.rows`;
names are pure functions of the unit and a counter, so a rerun of a read unit first
removes its own old parts. Rows in a part are sorted by their place in the outputs
(batch, stream, slot), so each write unit's rows are one contiguous range, and the
header says where every write unit's range starts.

A part is raw numpy buffers after a JSON header (jagged columns as offsets + content):
writing one is a single pass over the buffers, and a write unit reads its rows as
slices of a memory map. Parts live for minutes and are read once: no compression.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BalancedBatchesError
from .rows import Jagged, RowBlock
from .storage import atomic_path, remove_temporaries

PART_SUFFIX = ".rows"
MAGIC = b"BBROWS01"
_ALIGN = 64
_PREFIX = struct.Struct("<8sQ")  # magic, header length


def parts_directory(scratch: Path) -> Path:
    """Where every part goes."""
    return scratch / "parts"


def part_path(scratch: Path, read_unit: int, part: int) -> Path:
    """One part's file name."""
    return parts_directory(scratch) / f"r{read_unit:06d}-{part:05d}{PART_SUFFIX}"


def all_parts(scratch: Path) -> list[Path]:
    """Every finished part, in read-unit order."""
    return sorted(parts_directory(scratch).glob(f"r*{PART_SUFFIX}"))


def parts_of_read_unit(scratch: Path, read_unit: int) -> list[Path]:
    """Every part a read unit wrote."""
    return sorted(parts_directory(scratch).glob(f"r{read_unit:06d}-*{PART_SUFFIX}"))


def complete_parts(scratch: Path) -> Counter[int]:
    """How many complete parts each read unit has in the scratch directory."""
    return Counter(int(path.name[1:7]) for path in all_parts(scratch) if is_complete(path))


def is_complete(path: Path) -> bool:
    """True if a part file holds all the bytes its header announces."""
    try:
        Part(path)
    except (BalancedBatchesError, OSError, ValueError):
        return False
    return True


def remove_parts_of_read_unit(scratch: Path, read_unit: int) -> None:
    """Deletes what an earlier, interrupted attempt of a read unit left."""
    for path in parts_of_read_unit(scratch, read_unit):
        path.unlink(missing_ok=True)
    if parts_directory(scratch).is_dir():
        remove_temporaries(parts_directory(scratch), f"r{read_unit:06d}-*")


def write_part(path: Path, rows: RowBlock, unit_starts: np.ndarray) -> None:
    """Writes rows sorted by write unit (`unit_starts`: first row of each unit, then the
    row count) atomically; a full or unwritable scratch disk is a one-line error."""
    try:
        _write(path, rows, np.asarray(unit_starts, dtype=np.int64))
    except OSError as err:
        raise BalancedBatchesError(
            f"cannot write intermediate file {path}: {err.strerror or err}"
        ) from err


def _write(path: Path, rows: RowBlock, unit_starts: np.ndarray) -> None:
    buffers: list[np.ndarray] = []

    def place(values: np.ndarray) -> list[Any]:
        buffers.append(np.ascontiguousarray(values))
        return [values.dtype.str, len(buffers) - 1, len(values)]

    header: dict[str, Any] = {
        "length": rows.length,
        "unit_starts": place(unit_starts),
        "flat": {name: place(values) for name, values in rows.flat.items()},
        "jagged": {
            name: {
                "offsets": place(collection.offsets),
                "contents": {
                    column: place(content[: collection.offsets[-1]])
                    for column, content in collection.contents.items()
                },
            }
            for name, collection in rows.jagged.items()
        },
    }
    positions, position = [], 0
    for values in buffers:
        positions.append(position)
        position += _aligned(values.nbytes)
    header["positions"] = positions
    header["data_bytes"] = position
    text = json.dumps(header).encode()
    start = _aligned(_PREFIX.size + len(text))
    # not flushed to disk: a part a crash leaves short fails `is_complete` and is made again
    with atomic_path(path, durable=False) as temporary, temporary.open("wb") as handle:
        handle.write(_PREFIX.pack(MAGIC, len(text)) + text)
        handle.write(bytes(start - _PREFIX.size - len(text)))
        for values in buffers:
            handle.write(values.data.cast("B"))
            handle.write(bytes(_aligned(values.nbytes) - values.nbytes))


def _aligned(size: int) -> int:
    return -(-size // _ALIGN) * _ALIGN


class Part:
    """A finished part, memory-mapped: columns are views, read from disk when touched."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as handle:
            # a plain array over the map: slicing np.memmap costs far more per view
            self._map = np.frombuffer(
                mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ), np.uint8
            )
        magic, size = _PREFIX.unpack(bytes(self._map[: _PREFIX.size]))
        if magic != MAGIC or len(self._map) < _PREFIX.size + size:
            raise BalancedBatchesError(f"{path}: not an intermediate part of balanced-batches")
        self._header = json.loads(bytes(self._map[_PREFIX.size : _PREFIX.size + size]))
        self._start = _aligned(_PREFIX.size + size)
        if len(self._map) != self._start + self._header["data_bytes"]:
            raise BalancedBatchesError(f"{path}: intermediate part is incomplete")
        self.length: int = self._header["length"]
        self.unit_starts = self._view(self._header["unit_starts"])
        self._flat = {name: self._view(e) for name, e in self._header["flat"].items()}
        self._jagged = {
            name: (
                self._view(entry["offsets"]),
                {column: self._view(e) for column, e in entry["contents"].items()},
            )
            for name, entry in self._header["jagged"].items()
        }

    def _view(self, entry: list[Any]) -> np.ndarray:
        dtype, index, length = np.dtype(entry[0]), entry[1], entry[2]
        first = self._start + self._header["positions"][index]
        return self._map[first : first + length * dtype.itemsize].view(dtype)

    @property
    def n_units(self) -> int:
        """Write units the part was routed for."""
        return len(self.unit_starts) - 1

    def unit_range(self, unit: int) -> tuple[int, int]:
        """[start, stop) of the rows of a write unit."""
        return int(self.unit_starts[unit]), int(self.unit_starts[unit + 1])

    def column(self, name: str) -> np.ndarray:
        """A flat column, every row (a view)."""
        return self._view(self._header["flat"][name])

    def rows(self, start: int, stop: int) -> RowBlock:
        """Rows [start, stop) as views into the part."""
        flat = {name: self._view(entry)[start:stop] for name, entry in self._header["flat"].items()}
        jagged = {}
        for name, entry in self._header["jagged"].items():
            offsets = self._view(entry["offsets"])[start : stop + 1]
            first = int(offsets[0])
            contents = {
                column: self._view(content)[first:] for column, content in entry["contents"].items()
            }
            jagged[name] = Jagged(offsets - first, contents)
        return RowBlock(stop - start, flat, jagged)
