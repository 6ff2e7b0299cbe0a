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
from .rows import BranchLayout, RowBlock, column_arrays, to_arrays

if TYPE_CHECKING:  # uproot's own writer serves the inputs whose branches it can write back
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
    """A TTree whose branches have the input's on-disk types: `std::vector<T>` branches stay
    vectors spelled as the input spells them (what C++ binding `std::vector<T>*` reads),
    counted arrays stay counted arrays with their counters (`x_pt[nx]`), fixed-size arrays
    keep their shape (`x[3]/F`, `y[2][2]/I`), scalars keep their leaf types."""
    if layout.vectors or not _uproot_keeps_counters(layout):
        _write_ttree_own(path, rows, layout, extra, spec)
        return
    branches = to_arrays(rows, layout) | {name: rows.column(name) for name in extra}
    counters = {group.outer: group.counter for group in layout.groups}
    types = {name: branch_type(values) for name, values in branches.items()}
    with (
        atomic_path(path) as temporary,
        _reproducible_root_file(temporary, spec) as output,
    ):
        output.mktree(spec.tree, types, counter_name=lambda outer: counters.get(outer, "n" + outer))
        for start in range(0, max(rows.length, 1), WRITE_CHUNK_ROWS):
            chunk = {
                name: values[start : start + WRITE_CHUNK_ROWS] for name, values in branches.items()
            }
            output[spec.tree].extend(chunk)
        output[PROVENANCE_OBJECT] = spec.provenance


def _uproot_keeps_counters(layout: BranchLayout) -> bool:
    """Whether uproot's writer gives the counted arrays their input counters: it writes int32
    counters only, and a counter only for a group (members `<outer>_*` of one record)."""
    return not any(layout.counter_of(name) for name in layout.singles) and all(
        layout.counter_dtype(group.counter) == np.int32 for group in layout.groups
    )


def _write_ttree_own(
    path: Path, rows: RowBlock, layout: BranchLayout, extra: tuple[str, ...], spec: OutputSpec
) -> None:
    """`write_ttree` for what uproot cannot write: `std::vector<T>` branches, and counters
    that are not int32 or count arrays of other names (`nJets` of `jet_pt`). Every branch
    goes through `io.ttree_writer`, counted arrays with their input counters. The rows' numpy
    buffers go in as they are, flat columns sliced per `extend` and jagged ones as
    `(offsets, content)` with their offsets sliced: no awkward arrays in between."""
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


def branch_type(values: ak.Array | np.ndarray) -> object:
    """The type `mktree` takes for a branch's values: a dtype (with the shape of a row for a
    fixed-size array per row, `x[3]/F`), or the list type of a jagged one."""
    if isinstance(values, np.ndarray):
        return values.dtype if values.ndim == 1 else np.dtype((values.dtype, values.shape[1:]))
    content = values.type.content
    if isinstance(content, ak.types.NumpyType):
        return np.dtype(content.primitive)
    return content


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
