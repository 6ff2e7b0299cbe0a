"""Intermediate parts between reading inputs and writing outputs.

A read unit writes the rows it selected as parts `<scratch>/parts/r<read unit>-<part>.rows`;
names are pure functions of the unit and a counter, so a rerun of a read unit first
removes its own old parts.

A part holds every candidate the plan uses once, however often it is used, and a table of
its uses: for each, the candidate's row in the part and the use's position in its stream's
order (which gives its batch and slot). Intermediate data thus grows with the input rows a
plan uses, not with its outputs, which reuse sparse regions' candidates tens or hundreds of
times. Uses are sorted by position, so each write unit's uses, and each output file's, are one
range of the table (the header says where every write unit's range starts). Rows are sorted by
the first write unit that uses them (then by input entry): without reuse, each write unit's
rows are one range too.

A part is raw numpy buffers after a JSON header (jagged columns as offsets + content, flat
columns of fixed-size arrays with the shape of a row): writing one is a single pass over the
buffers, and a write unit takes the rows it needs from a map of the file (`gather`).
Parts live for minutes: no compression.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import mmap
import os
import shutil
import struct
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import ProjectConfig
from .errors import BalancedBatchesError
from .io.files import atomic_path, is_url, remove_temporaries
from .rows import Jagged, RowBlock, take_from

PART_SUFFIX = ".rows"
MAGIC = b"BBROWS03"  # 03: rows once, with a table of their uses (row, position)
_ALIGN = 64
PREFIX = struct.Struct("<8sQ")  # magic, header length
ROW_COLUMN = "row"  # of the uses table: the used candidate's row in the part


SCRATCH_PREFIX = "balanced-batches-"


def scratch_root(config: ProjectConfig, workdir: Path) -> Path:
    """Where scratch directories go: `execution.scratch`, by default `<workdir>/scratch`."""
    return Path(config.execution.scratch) if config.execution.scratch else workdir / "scratch"


def plan_scratch(config: ProjectConfig, workdir: Path, plan_id: str) -> str:
    """A plan's own scratch directory, `<scratch root>/balanced-batches-<plan id>` (a path, or
    a URL for a remote root): the tool makes it and removes it, and nothing else in the
    scratch root."""
    root = config.execution.scratch
    if root is not None and is_url(root):
        return f"{root.rstrip('/')}/{SCRATCH_PREFIX}{plan_id}"
    return str(scratch_root(config, workdir) / f"{SCRATCH_PREFIX}{plan_id}")


def remove_scratch(directory: Path, remove_empty_root: bool = False) -> None:
    """Deletes a plan's scratch directory with what is in it (symbolic links inside are
    removed, never followed; a scratch directory that is itself a link is left); with
    `remove_empty_root`, also the root it lies in if that is then empty (the default
    root, which the tool made)."""
    if not directory.name.startswith(SCRATCH_PREFIX) or directory.is_symlink():
        return
    shutil.rmtree(directory, ignore_errors=True)
    if remove_empty_root:
        with contextlib.suppress(OSError):  # not empty: something else lives there
            directory.parent.rmdir()


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
        Part(path).close()
    except (BalancedBatchesError, OSError, ValueError):
        return False
    return True


def remove_parts_of_read_unit(scratch: Path, read_unit: int) -> None:
    """Deletes what an earlier, interrupted attempt of a read unit left.

    Parts are numbered from 0 without gaps, so no directory listing is needed: that
    would cost every read unit time in proportion to all the parts of the run.
    """
    for part in itertools.count():
        try:
            part_path(scratch, read_unit, part).unlink()
        except FileNotFoundError:
            break


def remove_part_temporaries(scratch: Path) -> int:
    """Deletes partial parts that interrupted read units left (one directory listing)."""
    directory = parts_directory(scratch)
    return remove_temporaries(directory) if directory.is_dir() else 0


def write_part(
    path: Path, rows: RowBlock, uses: Mapping[str, np.ndarray], unit_starts: np.ndarray
) -> None:
    """Writes a part atomically: the used candidates' `rows`, and the table of their `uses`
    (columns of equal length, `ROW_COLUMN` among them) sorted by write unit (`unit_starts`:
    first use of each unit, then the number of uses). A full or unwritable scratch disk is a
    one-line error."""
    try:
        _write(path, rows, uses, np.asarray(unit_starts, dtype=np.int64))
    except OSError as err:
        raise BalancedBatchesError(
            f"cannot write intermediate file {path}: {err.strerror or err}"
        ) from err


def _write(
    path: Path, rows: RowBlock, uses: Mapping[str, np.ndarray], unit_starts: np.ndarray
) -> None:
    buffers: list[np.ndarray] = []

    def place(values: np.ndarray) -> list[Any]:
        buffers.append(np.ascontiguousarray(values))
        entry = [values.dtype.str, len(buffers) - 1, len(values)]
        return [*entry, list(values.shape[1:])] if values.ndim > 1 else entry

    header: dict[str, Any] = {
        "length": rows.length,
        "unit_starts": place(unit_starts),
        "uses": {name: place(values) for name, values in uses.items()},
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
        position += aligned(values.nbytes)
    header["positions"] = positions
    header["data_bytes"] = position
    text = json.dumps(header).encode()
    start = aligned(PREFIX.size + len(text))
    # not flushed to disk: a part a crash leaves short fails `is_complete` and is made again
    with atomic_path(path, durable=False) as temporary, temporary.open("wb") as handle:
        handle.write(PREFIX.pack(MAGIC, len(text)) + text)
        handle.write(bytes(start - PREFIX.size - len(text)))
        for values in buffers:
            handle.write(values.reshape(-1).data.cast("B"))  # 2-d and more: flat bytes
            handle.write(bytes(aligned(values.nbytes) - values.nbytes))


def aligned(size: int) -> int:
    return -(-size // _ALIGN) * _ALIGN


@dataclass(frozen=True)
class Buffer:
    """Where one buffer lies in a part file."""

    dtype: np.dtype[Any]  # of one row: a sub-array dtype for a fixed-size array per row
    offset: int
    length: int


@dataclass(frozen=True)
class PartLayout:
    """Where every buffer of a part lies, from its header (`start`: where its data begins)."""

    length: int
    unit_starts: Buffer
    uses: dict[str, Buffer]
    flat: dict[str, Buffer]
    jagged: dict[str, tuple[Buffer, dict[str, Buffer]]]

    @classmethod
    def of(cls, header: dict[str, Any], start: int) -> PartLayout:
        """The layout a part's JSON header describes."""

        def buffer(entry: list[Any]) -> Buffer:
            dtype, index, length = np.dtype(entry[0]), entry[1], entry[2]
            if len(entry) > 3:  # a fixed-size array per row: numpy makes rows of this shape
                dtype = np.dtype((dtype, tuple(entry[3])))
            return Buffer(dtype, start + header["positions"][index], length)

        return cls(
            length=header["length"],
            unit_starts=buffer(header["unit_starts"]),
            uses={name: buffer(entry) for name, entry in header["uses"].items()},
            flat={name: buffer(entry) for name, entry in header["flat"].items()},
            jagged={
                name: (
                    buffer(entry["offsets"]),
                    {column: buffer(e) for column, e in entry["contents"].items()},
                )
                for name, entry in header["jagged"].items()
            },
        )


class RoutedPart(ABC):
    """What every part says of the write units (where each one's uses start), and how its
    rows are taken."""

    unit_starts: np.ndarray  # first use of every write unit, then the number of uses

    @property
    def n_units(self) -> int:
        """Write units the part was routed for."""
        return len(self.unit_starts) - 1

    def unit_range(self, unit: int) -> tuple[int, int]:
        """[start, stop) of the uses of a write unit."""
        return int(self.unit_starts[unit]), int(self.unit_starts[unit + 1])

    @abstractmethod
    def source(self, rows: np.ndarray) -> tuple[RowBlock, np.ndarray]:
        """Rows `rows` (ascending, distinct) of the part as a block to take them from, and
        where each one is in it."""

    def release(self) -> None:
        """Lets go of what `source` holds once its rows are taken."""
        return None  # a part whose `source` fetched the rows holds nothing of them


class Part(RoutedPart):
    """A finished part, open for reading: its uses table and flat columns by positioned
    reads, its rows (`take`) from a read-only map of the file. Only what a write unit asks
    for is read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._map: mmap.mmap | None = None
        self._rows: RowBlock | None = None
        self._fd = os.open(path, os.O_RDONLY)
        try:
            self._parse(os.fstat(self._fd).st_size)
        except BaseException:
            os.close(self._fd)
            raise

    def _parse(self, size: int) -> None:
        prefix = os.pread(self._fd, PREFIX.size, 0)
        if len(prefix) < PREFIX.size:
            raise BalancedBatchesError(f"{self.path}: intermediate part is incomplete")
        magic, header_size = PREFIX.unpack(prefix)
        if magic != MAGIC:
            raise BalancedBatchesError(f"{self.path}: not an intermediate part of balanced-batches")
        start = aligned(PREFIX.size + header_size)
        header = None
        if start <= size:
            try:
                header = json.loads(os.pread(self._fd, header_size, PREFIX.size))
                complete = size == start + header["data_bytes"]
            except (ValueError, TypeError, KeyError):
                complete = False
        if header is None or not complete:
            raise BalancedBatchesError(f"{self.path}: intermediate part is incomplete")
        layout = PartLayout.of(header, start)
        self.length: int = layout.length
        self.unit_starts = self._read(layout.unit_starts, 0, layout.unit_starts.length)
        self._uses, self._flat, self._jagged = layout.uses, layout.flat, layout.jagged

    def close(self) -> None:
        """Closes the file (and its mapping, once no array of `rows` is left)."""
        self._rows = None
        if self._map is not None:
            with contextlib.suppress(BufferError):  # arrays still in use: freed with them
                self._map.close()
        os.close(self._fd)

    def unmap_pages(self) -> None:
        """Drops the pages of the map from this process (they stay in the page cache, for the
        next take): its resident memory then counts the rows it took, not the parts it read."""
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)

    def rows(self) -> RowBlock:
        """Every row of the part, as arrays over a read-only map of the file: taking rows
        from them copies just those rows, from the page cache, and touches only their pages."""
        if self._rows is None:
            if self._map is None:
                self._map = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)
            mapped = self._map

            def view(buffer: Buffer) -> np.ndarray:
                return np.frombuffer(
                    mapped, dtype=buffer.dtype, count=buffer.length, offset=buffer.offset
                )

            flat = {name: view(buffer) for name, buffer in self._flat.items()}
            jagged = {
                name: Jagged(view(offsets), {column: view(b) for column, b in contents.items()})
                for name, (offsets, contents) in self._jagged.items()
            }
            self._rows = RowBlock(self.length, flat, jagged)
        return self._rows

    def source(self, rows: np.ndarray) -> tuple[RowBlock, np.ndarray]:
        """Every row of the part over a map of it (`rows`), and `rows`: nothing is copied
        until the rows are taken. A write unit's rows are scattered over the parts when
        candidates are reused, and reading them in ranges would either copy the rows between
        them too or cost one read per row and column."""
        return self.rows(), np.asarray(rows, dtype=np.int64)

    def release(self) -> None:
        """Drops the map's pages from this process (`unmap_pages`)."""
        self.unmap_pages()

    def __enter__(self) -> Part:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, buffer: Buffer, start: int, stop: int) -> np.ndarray:
        out = np.empty(stop - start, dtype=buffer.dtype)
        self._read_into(buffer, start, out)
        return out

    def _read_into(self, buffer: Buffer, start: int, out: np.ndarray) -> None:
        """Items [start, start + len(out)) of a buffer into `out`."""
        if not len(out):
            return
        position = buffer.offset + start * buffer.dtype.itemsize
        if os.preadv(self._fd, [out.data.cast("B")], position) != out.nbytes:
            raise BalancedBatchesError(f"{self.path}: intermediate part is incomplete")

    def uses(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Uses [start, stop): every column of the uses table."""
        return {name: self._read(buffer, start, stop) for name, buffer in self._uses.items()}

    def column(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of a flat column."""
        return self._read(self._flat[name], start, stop)


class Pieces:
    """The rows of every (part, row numbers ascending), numbered one piece after another
    (a local part's over its map, a remote part's fetched): a flat column of them, and any of
    them in any order, copied once (`take`)."""

    def __init__(self, pieces: Sequence[tuple[RoutedPart, np.ndarray]]) -> None:
        self._parts = [part for part, _ in pieces]
        sources = [part.source(rows) for part, rows in pieces]
        self._blocks = [block for block, _ in sources]
        self._rows = [rows for _, rows in sources]
        self._block_of = np.repeat(np.arange(len(sources)), [len(r) for r in self._rows])
        self._row_in_block = np.concatenate(self._rows) if sources else np.empty(0, np.int64)

    @property
    def length(self) -> int:
        """Rows of all pieces."""
        return len(self._row_in_block)

    def column(self, name: str) -> np.ndarray:
        """A flat column of every row, one piece after another."""
        if not self._blocks:
            return np.empty(0, dtype=np.int64)
        return np.concatenate(
            [block.flat[name][rows] for block, rows in zip(self._blocks, self._rows, strict=True)]
        )

    def take(self, index: np.ndarray) -> RowBlock:
        """Rows `index` (any order, repeats allowed) in one new block. Each part lets go of
        what it held as soon as its rows are copied: a local part's pages of its map stay in
        the page cache but leave this process, whose memory then holds the rows taken and
        at most one part's pages (all of them would be most of the parts' size)."""
        index = np.asarray(index, dtype=np.int64)
        taken = take_from(
            self._blocks,
            self._block_of[index],
            self._row_in_block[index],
            copied=lambda b: self._parts[b].release(),
        )
        for part in self._parts:  # those that gave no row, after `column`
            part.release()
        return taken
