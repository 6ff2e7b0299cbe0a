"""Make the planned batches: every input file is read once, every output written once.

Work comes in two kinds of unit. A *read unit* reads one input file in chunks,
picks the planned candidates (as often as the plan reuses them) and sends each
row to the *write unit* of its output file through intermediate parts. A write
unit gathers its rows, puts them in canonical order, shuffles each output file
with its own seeded generator and writes it under a temporary name, renamed when
complete. Results are therefore identical whatever ran where, and in what order.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from ..config import ProjectConfig
from ..errors import BalancedBatchesError, CatalogError, InputFileError
from ..plan_model import Plan, member_uses
from ..regions import Selection, build_selection
from ..remote import output_directory
from ..shards import (
    part_path,
    read_unit_parts,
    remove_parts_of_read_unit,
    write_part,
)
from ..storage import (
    BranchLayout,
    branch_layout,
    file_stat,
    is_url,
    open_tree,
    unreadable,
)
from ..writers import EXTENSIONS, WRITERS, OutputSpec
from .count import read_selection_arrays

log = logging.getLogger(__name__)

PROVENANCE = ("bb_process_key", "bb_region", "bb_source_file", "bb_source_entry", "bb_batch")
_STREAM, _SLOT = "bb_stream_", "bb_slot_"
FLUSH_BYTES = 256 * 2**20


@dataclass(frozen=True)
class FileShare:
    """The streams one input file contributes to, with the file's place in each."""

    streams: np.ndarray
    regions: np.ndarray
    key_index: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray
    totals: np.ndarray
    round_keys: np.ndarray  # (members, rounds)


@dataclass(frozen=True)
class ReadTask:
    """Read one input file once and route its selected rows to the write units."""

    unit: int
    file_id: int
    path: str
    tree: str
    selection: Selection = field(repr=False)
    share: FileShare = field(repr=False)
    needed: int
    per_batch: int
    batches_per_file: int
    files_per_unit: int
    scratch: str
    chunk_bytes: int
    counted_stat: tuple[int, float] | None = None  # (size, mtime) when counted


@dataclass(frozen=True)
class ReadResult:
    """What a read unit did, or why it failed."""

    unit: int
    rows: int = 0
    layout: BranchLayout | None = None
    error: str | None = None


@dataclass(frozen=True)
class WriteTask:
    """Write the output files [first, stop) from their gathered rows."""

    unit: int
    first: int
    stop: int
    n_batches: int
    n_streams: int
    per_batch: int
    batches_per_file: int
    seed: int
    scratch: str
    directory: str
    name: str
    layout: BranchLayout
    spec: OutputSpec = field(repr=False)


@dataclass(frozen=True)
class WriteResult:
    """Outputs of a write unit, or why it failed."""

    unit: int
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def output_path(directory: str, name: str, file_format: str, index: int) -> Path:
    """The path of output file `index` (pure: reruns find the same names)."""
    return Path(directory) / (name.format(index=index) + EXTENSIONS[file_format])


def remove_stale_outputs(directory: str, name: str, file_format: str, n_files: int) -> list[str]:
    """Deletes output files of an earlier plan whose index this plan does not reach."""
    prefix, _, suffix = name.partition("{index}")
    pattern = re.compile(
        re.escape(prefix) + r"(\d+)" + re.escape(suffix + EXTENSIONS[file_format]) + "$"
    )
    removed = []
    outputs = output_directory(directory)
    for location in outputs.listdir():
        match = pattern.match(location.rsplit("/", 1)[-1])
        if match and int(match.group(1)) >= n_files:
            outputs.remove(location)
            removed.append(location)
    return removed


# -- read units ---------------------------------------------------------------


def read_task(
    plan: Plan,
    unit: int,
    path: str,
    config: ProjectConfig,
    scratch: Path,
    counted_stat: tuple[int, float] | None = None,
    selection: Selection | None = None,
) -> ReadTask:
    """The read task of the plan's `unit`-th input file (`selection`: built once by the caller)."""
    file_id = int(plan.read_files[unit])
    members = np.flatnonzero(plan.member_file == file_id)
    streams = plan.member_stream[members]
    share = FileShare(
        streams=streams,
        regions=plan.stream_region[streams],
        key_index=plan.stream_key_index[streams],
        offsets=plan.member_offset[members],
        counts=plan.member_count[members],
        totals=plan.stream_total[streams],
        round_keys=plan.round_keys[streams],
    )
    return ReadTask(
        unit=unit,
        file_id=file_id,
        path=path,
        tree=config.inputs.tree,
        selection=selection or build_selection(config),
        share=share,
        needed=plan.n_batches * plan.per_batch,
        per_batch=plan.per_batch,
        batches_per_file=plan.batches_per_file,
        files_per_unit=plan.files_per_unit,
        scratch=str(scratch),
        chunk_bytes=config.execution.chunk_mb * 2**20,
        counted_stat=counted_stat,
    )


@dataclass(frozen=True)
class _Uses:
    """Every use of the file's candidates, sorted by entry."""

    entry: np.ndarray
    stream: np.ndarray
    region: np.ndarray
    key_index: np.ndarray
    batch: np.ndarray
    slot: np.ndarray


def _plan_uses(task: ReadTask, regions: np.ndarray) -> _Uses:
    share = task.share
    found = np.bincount(regions[regions >= 0], minlength=task.selection.space.n_regions)
    changed = np.flatnonzero(found[share.regions] != share.counts)
    if changed.size:
        member = int(changed[0])
        raise InputFileError(
            f"{task.path}: changed since it was counted (region "
            f"{task.selection.space.name(int(share.regions[member]))}: "
            f"{found[share.regions[member]]} candidates, plan expects {share.counts[member]}); "
            "run 'count' and 'plan' again"
        )
    order = np.argsort(regions, kind="stable")
    starts = np.searchsorted(regions[order], share.regions, side="left")
    parts: dict[str, list[np.ndarray]] = {name: [] for name in _Uses.__dataclass_fields__}
    for member in range(len(share.streams)):
        ranks, positions = member_uses(
            int(share.offsets[member]),
            int(share.counts[member]),
            int(share.totals[member]),
            task.needed,
            share.round_keys[member],
        )
        entries = order[starts[member] : starts[member] + share.counts[member]]
        parts["entry"].append(entries[ranks])
        parts["stream"].append(np.full(len(ranks), share.streams[member], dtype=np.int64))
        parts["region"].append(np.full(len(ranks), share.regions[member], dtype=np.int32))
        parts["key_index"].append(np.full(len(ranks), share.key_index[member], dtype=np.int32))
        parts["batch"].append(positions // task.per_batch)
        parts["slot"].append(positions % task.per_batch)
    merged = {name: np.concatenate(values) for name, values in parts.items()}
    by_entry = np.argsort(merged["entry"], kind="stable")
    return _Uses(**{name: values[by_entry] for name, values in merged.items()})


def read_input(task: ReadTask) -> ReadResult:
    """Runs one read unit; user-caused failures come back in the result."""
    try:
        return _read_input(task)
    except BalancedBatchesError as err:
        return ReadResult(task.unit, error=str(err))
    except Exception as err:  # a damaged file fails in many ways inside uproot
        return ReadResult(task.unit, error=unreadable(task.path, err))


def _read_input(task: ReadTask) -> ReadResult:
    scratch = Path(task.scratch)
    remove_parts_of_read_unit(scratch, task.unit)
    if task.counted_stat is not None and file_stat(task.path) != task.counted_stat:
        raise InputFileError(
            f"{task.path}: changed since it was counted (size or modification time); "
            "run 'count' and 'plan' again"
        )
    tree = open_tree(task.path, task.tree)
    layout = branch_layout(tree, task.path)
    n_entries = int(tree.num_entries)
    selection_values = read_selection_arrays(tree, task.path, task.selection, 0, n_entries)
    uses = _plan_uses(task, task.selection.assign(selection_values))
    others = [name for name in layout.data_branches if name not in selection_values]
    bytes_per_entry = max(
        sum(tree[name].uncompressed_bytes for name in others) / max(n_entries, 1), 1.0
    )
    step = max(1, int(task.chunk_bytes // bytes_per_entry))
    write_unit = uses.batch // task.batches_per_file // task.files_per_unit
    buffers: dict[int, list[ak.Array]] = {}
    parts = {"count": 0, "bytes": 0}

    def flush() -> None:
        for unit, pieces in sorted(buffers.items()):
            write_part(part_path(scratch, unit, task.unit, parts["count"]), ak.concatenate(pieces))
            parts["count"] += 1
        buffers.clear()
        parts["bytes"] = 0

    for start in range(0, n_entries, step):
        stop = min(start + step, n_entries)
        first, last = np.searchsorted(uses.entry, [start, stop])
        if first == last:
            continue  # nothing planned here: these baskets are never read
        picked = slice(first, last)
        entries = uses.entry[picked]
        columns: dict[str, Any] = {}
        if others:
            chunk = tree.arrays(others, entry_start=start, entry_stop=stop, library="ak")
            rows = chunk[entries - start]
            columns.update({name: rows[name] for name in others})
        columns.update({name: values[entries] for name, values in selection_values.items()})
        columns.update(
            {
                "bb_process_key": uses.key_index[picked],
                "bb_region": uses.region[picked],
                "bb_source_file": np.full(last - first, task.file_id, dtype=np.int32),
                "bb_source_entry": entries.astype(np.int64),
                "bb_batch": uses.batch[picked],
                _STREAM: uses.stream[picked],
                _SLOT: uses.slot[picked],
            }
        )
        table = ak.zip(columns, depth_limit=1)
        units = write_unit[picked]
        order = np.argsort(units, kind="stable")
        bounds = np.flatnonzero(np.diff(units[order])) + 1
        for group in np.split(order, bounds):
            buffers.setdefault(int(units[group[0]]), []).append(table[group])
        parts["bytes"] += int(table.layout.nbytes)
        if parts["bytes"] > FLUSH_BYTES:
            flush()
    flush()
    return ReadResult(task.unit, rows=len(uses.entry), layout=layout)


# -- write units --------------------------------------------------------------


def write_task(
    plan: Plan,
    unit: int,
    config: ProjectConfig,
    scratch: Path,
    layout: BranchLayout,
    provenance: str,
) -> WriteTask:
    """The write task of a write unit."""
    first = unit * plan.files_per_unit
    return WriteTask(
        unit=unit,
        first=first,
        stop=min(first + plan.files_per_unit, plan.n_output_files),
        n_batches=plan.n_batches,
        n_streams=plan.n_streams,
        per_batch=plan.per_batch,
        batches_per_file=plan.batches_per_file,
        seed=plan.seed,
        scratch=str(scratch),
        directory=config.output.directory,
        name=config.output.name,
        layout=layout,
        spec=OutputSpec(
            format=config.output.format,
            compression=config.output.compression,
            tree=config.inputs.tree,
            provenance=provenance,
            identity=f"seed {plan.seed}",
        ),
    )


def write_outputs(task: WriteTask) -> WriteResult:
    """Runs one write unit; user-caused failures come back in the result."""
    try:
        return _write_outputs(task)
    except BalancedBatchesError as err:
        return WriteResult(task.unit, error=str(err))
    except OSError as err:
        return WriteResult(
            task.unit,
            error=f"cannot write output files into {task.directory}: {err.strerror or err}",
        )


def _write_outputs(task: WriteTask) -> WriteResult:
    first_batch = task.first * task.batches_per_file
    stop_batch = min(task.stop * task.batches_per_file, task.n_batches)
    expected = (stop_batch - first_batch) * task.n_streams * task.per_batch
    rows = read_unit_parts(Path(task.scratch), task.unit)
    found = 0 if rows is None else len(rows)
    if found != expected:
        raise CatalogError(
            f"write unit {task.unit}: {found} rows arrived, {expected} planned; "
            "some read units are missing or unfinished"
        )
    assert rows is not None
    key = (
        np.asarray(rows["bb_batch"]) * task.n_streams + np.asarray(rows[_STREAM])
    ) * task.per_batch + np.asarray(rows[_SLOT])
    order = np.argsort(key, kind="stable")
    batches = np.asarray(rows["bb_batch"])[order]
    outputs = []
    directory = output_directory(task.directory, Path(task.scratch) / "staging")
    for index in range(task.first, task.stop):
        lo, hi = np.searchsorted(
            batches, [index * task.batches_per_file, (index + 1) * task.batches_per_file]
        )
        shuffle = np.random.default_rng([task.seed, index, 0x5EED]).permutation(hi - lo)
        selected = rows[order[lo:hi][shuffle]]  # canonical order, then shuffled: one copy
        path = output_path(str(directory.staging), task.name, task.spec.format, index)
        WRITERS[task.spec.format](path, selected, task.layout, PROVENANCE, task.spec)
        published = directory.publish(path)  # remote: a verified copy, then renamed
        outputs.append(
            {
                "index": index,
                "path": published.path,
                "entries": int(hi - lo),
                "size": published.size,
                "adler32": published.adler32,
                "mtime_ns": modification_time(published.path),
            }
        )
    return WriteResult(task.unit, outputs=outputs)


def modification_time(path: str) -> int | None:
    """A local file's modification time in ns (None for remote files): a cheap change check."""
    return None if is_url(path) else os.stat(path).st_mtime_ns
