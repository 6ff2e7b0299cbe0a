"""Output formats: a ROOT TTree (default), an RNTuple, or Parquet, always written atomically."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from .storage import BranchLayout, atomic_path

EXTENSIONS = {"root": ".root", "rntuple": ".root", "parquet": ".parquet"}
PROVENANCE_OBJECT = "bb_provenance"
WRITE_CHUNK_ROWS = 50_000


def root_compression(spec: str) -> uproot.compression.Compression | None:
    """`zstd:5` -> uproot.ZSTD(5); `none` -> None."""
    algorithm, _, level = spec.partition(":")
    if algorithm == "none":
        return None
    kinds = {"zlib": uproot.ZLIB, "lzma": uproot.LZMA, "lz4": uproot.LZ4, "zstd": uproot.ZSTD}
    return kinds[algorithm](int(level)) if level else kinds[algorithm]()


def _tree_branches(
    rows: ak.Array, layout: BranchLayout, extra: tuple[str, ...]
) -> dict[str, ak.Array]:
    branches: dict[str, ak.Array] = {name: rows[name] for name in layout.scalars}
    for group in layout.groups:
        branches[group.outer] = ak.zip({group.inner(m): rows[m] for m in group.members})
    for name in (*layout.singles, *extra):
        branches[name] = rows[name]
    return branches


def write_ttree(
    path: Path,
    rows: ak.Array,
    layout: BranchLayout,
    extra: tuple[str, ...],
    compression: str,
    tree: str,
    provenance: str,
) -> None:
    """A TTree as the original writes; jagged branches become counted arrays (`x_pt[nx]`)."""
    branches = _tree_branches(rows, layout, extra)
    counters = {group.outer: group.counter for group in layout.groups}
    types = {name: _branch_type(values) for name, values in branches.items()}
    with (
        atomic_path(path) as temporary,
        uproot.recreate(temporary, compression=root_compression(compression)) as output,
    ):
        output.mktree(tree, types, counter_name=lambda outer: counters.get(outer, "n" + outer))
        for start in range(0, max(len(rows), 1), WRITE_CHUNK_ROWS):
            chunk = {
                name: values[start : start + WRITE_CHUNK_ROWS] for name, values in branches.items()
            }
            output[tree].extend(chunk)
        output[PROVENANCE_OBJECT] = provenance


def _branch_type(values: ak.Array) -> object:
    content = values.type.content
    if isinstance(content, ak.types.NumpyType):
        return np.dtype(content.primitive)
    return content


def write_rntuple(
    path: Path,
    rows: ak.Array,
    layout: BranchLayout,
    extra: tuple[str, ...],
    compression: str,
    tree: str,
    provenance: str,
) -> None:
    """An RNTuple; jagged branches become `std::vector` fields with their original names."""
    fields = {name: rows[name] for name in (*layout.data_branches, *extra)}
    with (
        atomic_path(path) as temporary,
        uproot.recreate(temporary, compression=root_compression(compression)) as output,
    ):
        output[tree] = fields
        output[PROVENANCE_OBJECT] = provenance


def write_parquet(
    path: Path,
    rows: ak.Array,
    layout: BranchLayout,
    extra: tuple[str, ...],
    compression: str,
    tree: str,
    provenance: str,
) -> None:
    """A Parquet file with one column per branch (provenance: provenance.json beside it)."""
    algorithm, _, level = compression.partition(":")
    columns = ak.zip({name: rows[name] for name in (*layout.data_branches, *extra)}, depth_limit=1)
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
        _ = provenance  # recorded in the output directory's provenance.json


WRITERS = {"root": write_ttree, "rntuple": write_rntuple, "parquet": write_parquet}
