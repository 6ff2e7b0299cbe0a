"""Intermediate parts on a remote server (`execution.scratch: root://...`), for batch jobs that
share no file system.

A read unit writes its parts locally as usual, then packs them into one file (the parts one
after another, then a JSON index of where each lies, its length and a magic number) and
copies the pack to `<scratch>/parts/r<read unit>-<parts>.pack` through a temporary name,
verified by size and adler32 before it is renamed (`io.outputs.copy_verified`). A pack already
there with the same checksum counts as done; an earlier attempt's pack of the same read unit is
deleted first (nothing is overwritten or appended: grid storage keeps files immutable).

A write unit reads just the byte ranges it needs: each part's header, its uses table's range
for the unit, then the rows it takes, column by column, in ranges merged across small gaps
(`MERGE_GAP_BYTES`), all ranges of a round fetched at once (`cat_ranges`: one vector read per
part on XRootD). Jagged columns take two rounds: their offsets, then their items.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BalancedBatchesError
from .io.stores import TransferError, retrying, store_for
from .rows import Jagged, RowBlock, item_positions
from .shards import MAGIC, PREFIX, Buffer, PartLayout, RoutedPart, aligned

PACK_SUFFIX = ".pack"
PACK_MAGIC = b"BBPACK01"
_TRAILER = struct.Struct("<Q8s")  # index length, magic
MERGE_GAP_BYTES = 256 * 1024  # rows this close are read in one range: fewer, larger reads
HEADER_GUESS = 64 * 1024  # bytes read at once for a part's header (more if it is longer)


def pack_name(read_unit: int, n_parts: int) -> str:
    """The pack of a read unit: its number and how many parts it holds."""
    return f"r{read_unit:06d}-{n_parts:05d}{PACK_SUFFIX}"


def pack_parts(parts: Sequence[Path], pack: Path) -> None:
    """Writes the parts one after another into `pack`, then their index and the trailer."""
    index = []
    position = 0
    with pack.open("wb") as handle:
        for part in parts:
            data = part.read_bytes()
            handle.write(data)
            index.append([position, len(data)])
            position += len(data)
        text = json.dumps({"parts": index}).encode()
        handle.write(text)
        handle.write(_TRAILER.pack(len(text), PACK_MAGIC))


class RemoteFile:
    """Byte ranges of one remote file, many at a time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._store = store_for(url)

    def size(self) -> int:
        """The file's size on the server."""
        info = retrying(lambda: self._store.info(self.url), self.url, "stat", TransferError)
        return int(info["size"])

    def ranges(self, starts: Sequence[int], stops: Sequence[int]) -> list[bytes]:
        """The bytes of every [start, stop)."""
        if not len(starts):
            return []
        first, last = [int(v) for v in starts], [int(v) for v in stops]
        chunks = retrying(
            lambda: self._store.read_ranges(self.url, first, last), self.url, "read", TransferError
        )
        for chunk, start, stop in zip(chunks, first, last, strict=True):
            if len(chunk) != stop - start:
                raise BalancedBatchesError(f"{self.url}: intermediate pack is incomplete")
        return chunks


def open_pack(url: str) -> list[RemotePart]:
    """The parts of a remote pack."""
    file = RemoteFile(url)
    size = file.size()
    if size < _TRAILER.size:
        raise BalancedBatchesError(f"{url}: intermediate pack is incomplete")
    (trailer,) = file.ranges([size - _TRAILER.size], [size])
    index_size, magic = _TRAILER.unpack(trailer)
    if magic != PACK_MAGIC:
        raise BalancedBatchesError(f"{url}: not an intermediate pack of balanced-batches")
    start = size - _TRAILER.size - index_size
    (text,) = file.ranges([start], [start + index_size])
    return [RemotePart(file, base, length) for base, length in json.loads(text)["parts"]]


class RemotePart(RoutedPart):
    """A part inside a remote pack, read by byte ranges (the interface of `shards.Part`)."""

    def __init__(self, file: RemoteFile, base: int, size: int) -> None:
        self.file, self.base, self.size = file, base, size
        self.path = f"{file.url}@{base}"
        (head,) = file.ranges([base], [base + min(size, HEADER_GUESS)])
        magic, header_size = PREFIX.unpack(head[: PREFIX.size])
        if magic != MAGIC:
            raise BalancedBatchesError(f"{self.path}: not an intermediate part of balanced-batches")
        if PREFIX.size + header_size > len(head):
            (head,) = file.ranges([base], [base + PREFIX.size + header_size])
        header = json.loads(head[PREFIX.size : PREFIX.size + header_size])
        layout = PartLayout.of(header, base + aligned(PREFIX.size + header_size))
        self.length: int = layout.length
        self._uses, self._flat, self._jagged = layout.uses, layout.flat, layout.jagged
        starts = layout.unit_starts
        (self.unit_starts,) = self._items([(starts, np.array([0]), np.array([starts.length]))])

    def __enter__(self) -> RemotePart:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing is held open."""

    def uses(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Uses [start, stop): every column of the uses table, in one round."""
        names = list(self._uses)
        ask = [(self._uses[n], np.array([start]), np.array([stop])) for n in names]
        return dict(zip(names, self._items(ask), strict=True))

    def source(self, rows: np.ndarray) -> tuple[RowBlock, np.ndarray]:
        """Rows `rows` (ascending, distinct), fetched (`take`), each at its own place."""
        return self.take(rows), np.arange(len(rows), dtype=np.int64)

    def take(self, rows: np.ndarray) -> RowBlock:
        """Rows `rows` (ascending, distinct) of the part: flat columns in one round, jagged
        ones in two (offsets, then items)."""
        rows = np.asarray(rows, dtype=np.int64)
        first, stop = _merged_ranges(rows, rows + 1, _gap_items(self._flat.values()))
        flat_names = list(self._flat)
        offsets_first, offsets_stop = _merged_ranges(rows, rows + 2, MERGE_GAP_BYTES // 8)
        jagged_names = list(self._jagged)
        fetched = self._items(
            [(self._flat[n], first, stop) for n in flat_names]
            + [(self._jagged[n][0], offsets_first, offsets_stop) for n in jagged_names]
        )
        flat = {
            name: values[_positions(rows, first, stop)]
            for name, values in zip(flat_names, fetched, strict=False)
        }
        at_offsets = _positions(rows, offsets_first, offsets_stop)
        bounds = fetched[len(flat_names) :]
        jagged = {}
        asks = []
        spans = []
        for name, offsets in zip(jagged_names, bounds, strict=True):
            item_start, item_stop = offsets[at_offsets], offsets[at_offsets + 1]
            contents = self._jagged[name][1]
            gap = _gap_items(contents.values())
            lo, hi = _merged_ranges(item_start, item_stop, gap)
            spans.append((name, item_start, item_stop, lo, hi))
            asks += [(buffer, lo, hi) for buffer in contents.values()]
        items = iter(self._items(asks))
        for name, item_start, item_stop, lo, hi in spans:
            counts = item_stop - item_start
            new_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(counts, out=new_offsets[1:])
            where = _positions(item_start, lo, hi)  # each row's first item in the fetched run
            index = item_positions(where, counts)
            columns = {column: next(items)[index] for column in self._jagged[name][1]}
            jagged[name] = Jagged(new_offsets, columns)
        return RowBlock(len(rows), flat, jagged)

    def _items(self, asks: list[tuple[Buffer, np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """For every (buffer, first items, stop items): those items' runs, concatenated."""
        starts, stops, owners = [], [], []
        for ask, (buffer, first, stop) in enumerate(asks):
            size = buffer.dtype.itemsize
            starts += (buffer.offset + first * size).tolist()
            stops += (buffer.offset + stop * size).tolist()
            owners += [ask] * len(first)
        chunks = self.file.ranges(starts, stops)
        pieces: list[list[bytes]] = [[] for _ in asks]
        for owner, chunk in zip(owners, chunks, strict=True):
            pieces[owner].append(chunk)
        return [
            np.frombuffer(b"".join(parts), dtype=buffer.dtype)
            for parts, (buffer, _, _) in zip(pieces, asks, strict=True)
        ]


def _gap_items(buffers: Any) -> int:
    """Items of the widest buffer that make `MERGE_GAP_BYTES`."""
    widest = max((b.dtype.itemsize for b in buffers), default=1)
    return max(1, MERGE_GAP_BYTES // widest)


def _merged_ranges(
    starts: np.ndarray, stops: np.ndarray, gap: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ascending, non-overlapping [start, stop) runs covering ascending item ranges, merged
    where less than `gap` items lie between them."""
    if not len(starts):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    reach = np.maximum.accumulate(stops)
    breaks = np.flatnonzero(starts[1:] - reach[:-1] > gap) + 1
    first = starts[np.r_[0, breaks]]
    last = reach[np.r_[breaks - 1, len(starts) - 1]]
    return first.astype(np.int64), last.astype(np.int64)


def _positions(items: np.ndarray, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Where each item lies in the concatenation of the runs [first, stop)."""
    run = np.searchsorted(first, items, side="right") - 1
    bases = np.concatenate([[0], np.cumsum(stop - first)[:-1]])
    positions: np.ndarray = bases[run] + items - first[run]
    return positions


def is_pack(name: str) -> bool:
    """True for a pack's file name (not a temporary of one)."""
    return name.endswith(PACK_SUFFIX) and name.startswith("r")


def parts_in_name(name: str) -> tuple[int, int]:
    """(read unit, parts) from a pack's name."""
    stem = name[: -len(PACK_SUFFIX)]
    unit, parts = stem[1:].split("-")
    return int(unit), int(parts)
