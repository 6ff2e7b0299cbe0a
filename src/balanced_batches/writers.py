"""Output formats: a ROOT TTree (default), an RNTuple, or Parquet, always written atomically."""

from __future__ import annotations

import datetime
import types
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import awkward as ak
import numpy as np
import uproot

from .io.files import atomic_path
from .rows import BranchLayout, RowBlock, column_arrays

if TYPE_CHECKING:  # imported where used: the CLI's start does not pay for it
    from .io.ttree_writer import BranchData, BranchType

EXTENSIONS = {"root": ".root", "rntuple": ".root", "parquet": ".parquet"}
PROVENANCE_OBJECT = "bb_provenance"
WRITE_CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class OutputSpec:
    """How output files are written."""

    format: str
    compression: str
    tree: str
    provenance: str  # JSON stored in every ROOT file as a string
    identity: str  # names the plan in file UUIDs (same plan and seed: same bytes)


def root_compression(spec: str) -> uproot.compression.Compression | None:
    """`zstd:5` -> uproot.ZSTD(5); `none` -> None."""
    algorithm, _, level = spec.partition(":")
    if algorithm == "none":
        return None
    kinds = {"zlib": uproot.ZLIB, "lzma": uproot.LZMA, "lz4": uproot.LZ4, "zstd": uproot.ZSTD}
    return kinds[algorithm](int(level)) if level else kinds[algorithm]()


def write_ttree(
    path: Path, rows: RowBlock, layout: BranchLayout, extra: tuple[str, ...], spec: OutputSpec
) -> None:
    """A TTree whose branches have the input's on-disk types, written by `io.ttree_writer`:
    `std::vector<T>` branches stay vectors spelled as the input spells them (what C++ binding
    `std::vector<T>*` reads), counted arrays stay counted arrays with their input counters
    (`x_pt[nx]`, whatever the counter's integer type), fixed-size arrays keep their shape
    (`x[3]/F`, `y[2][2]/I`), scalars keep their leaf types. The rows' numpy buffers go in as they
    are, flat columns sliced per `extend` and jagged ones as `(offsets, content)` with their
    offsets sliced: no awkward arrays in between. uproot's own `mktree` writes counted arrays
    too, but only with int32 counters of records and through awkward arrays: it took as much
    CPU time or more for the same branches, and `run` took 0.90x as long without it
    (BENCHMARKS.md)."""
    from .io.ttree_writer import BranchType, mktree

    jagged = {
        name: (collection.offsets, content)
        for collection in rows.jagged.values()
        for name, content in collection.contents.items()
    }
    vectors = set(layout.vectors)
    counter_of = {m: g.counter for g in layout.groups for m in g.members}
    counter_of |= {
        name: layout.counter_of(name) or "n" + name  # "n" + name: a layout without types
        for name in layout.singles
        if name not in vectors
    }
    types = [_flat_branch(name, rows.column(name)) for name in layout.scalars]
    counters = dict.fromkeys(counter_of.values())
    types += [BranchType(c, "scalar", layout.counter_dtype(c)) for c in counters]
    lists = (*(m for g in layout.groups for m in g.members), *layout.singles)
    for name in lists:
        dtype = jagged[name][1].dtype
        if name in vectors:
            types.append(BranchType(name, "vector", dtype, element=layout.vector_element(name)))
        else:
            types.append(BranchType(name, "counted", dtype, counter=counter_of[name]))
    types += [BranchType(name, "scalar", rows.column(name).dtype) for name in extra]
    flat = (*layout.scalars, *extra)
    with (
        atomic_path(path) as temporary,
        _reproducible_root_file(temporary, spec) as output,
        mktree(output, spec.tree, types) as tree,
    ):
        for start in range(0, max(rows.length, 1), WRITE_CHUNK_ROWS):
            stop = start + WRITE_CHUNK_ROWS
            chunk: dict[str, BranchData] = {name: rows.column(name)[start:stop] for name in flat}
            for name in lists:
                offsets, content = jagged[name]
                chunk[name] = (offsets[start : stop + 1], content)
            tree.extend(chunk)
        output[PROVENANCE_OBJECT] = spec.provenance


def _flat_branch(name: str, values: np.ndarray) -> BranchType:
    """The `io.ttree_writer` type of a flat column: a scalar, or a fixed-size array per row."""
    from .io.ttree_writer import BranchType

    if values.ndim == 1:
        return BranchType(name, "scalar", values.dtype)
    return BranchType(name, "fixed", values.dtype, shape=values.shape[1:])


def write_rntuple(
    path: Path, rows: RowBlock, layout: BranchLayout, extra: tuple[str, ...], spec: OutputSpec
) -> None:
    """An RNTuple; jagged branches become `std::vector` fields with their original names."""
    columns = column_arrays(rows)
    fields = {name: columns[name] for name in (*layout.data_branches, *extra)}
    with (
        atomic_path(path) as temporary,
        _reproducible_root_file(temporary, spec) as output,
    ):
        output[spec.tree] = fields
        output[PROVENANCE_OBJECT] = spec.provenance


def write_parquet(
    path: Path, rows: RowBlock, layout: BranchLayout, extra: tuple[str, ...], spec: OutputSpec
) -> None:
    """A Parquet file with one column per branch (provenance: provenance.json beside it)."""
    algorithm, _, level = spec.compression.partition(":")
    arrays = column_arrays(rows)
    names = (*layout.data_branches, *extra)
    columns = ak.zip({name: arrays[name] for name in names}, depth_limit=1)
    with atomic_path(path) as temporary:
        ak.to_parquet(
            columns,
            temporary,
            compression=None if algorithm == "none" else algorithm,
            compression_level=int(level) if level else None,
            parquet_metadata_statistics=False,
            extensionarray=False,
            parquet_extra_options={"store_schema": False},
        )


WRITERS = {"root": write_ttree, "rntuple": write_rntuple, "parquet": write_parquet}


# uproot stamps the current time into every ROOT file and a random UUID into every
# directory; both are fixed here so that the same plan and seed always give the same bytes
# (the time a plan was made is in the catalog and in provenance.json instead).
_STAMPED_MODULES = ("_cascade", "_cascadetree", "_cascadentuple", "writable")
ROOT_TIMESTAMP = datetime.datetime(2000, 1, 1)


@contextmanager
def _reproducible_root_file(path: Path, spec: OutputSpec) -> Iterator[uproot.WritableDirectory]:
    stamp = ROOT_TIMESTAMP

    class _Stamp(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> datetime.datetime:  # type: ignore[override]
            return stamp

    file_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"balanced-batches/{spec.identity}/{path.name}")
    modules = [getattr(uproot.writing, name, None) for name in _STAMPED_MODULES]
    patched = [m for m in modules if m is not None and hasattr(m, "datetime")]
    saved = [m.datetime for m in patched]
    for module in patched:
        module.datetime = types.SimpleNamespace(datetime=_Stamp)
    try:
        with uproot.recreate(
            path, compression=root_compression(spec.compression), uuid_function=lambda: file_uuid
        ) as output:
            yield output
    finally:
        for module, original in zip(patched, saved, strict=True):
            module.datetime = original
