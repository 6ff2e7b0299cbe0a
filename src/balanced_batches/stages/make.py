"""Make the planned batches: every input file is read once, every output written once.

Work comes in two kinds of unit. A *read unit* reads one input file in chunks,
picks the planned candidates (as often as the plan reuses them) and sends each
row to the *write unit* of its output file through intermediate parts. A write
unit gathers its rows, puts them in canonical order, shuffles each output file
with its own seeded generator and writes it under a temporary name, renamed when
complete. Results are therefore identical whatever ran where, and in what order.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ProjectConfig
from ..errors import BalancedBatchesError, CatalogError, InputFileError
from ..plan_model import Plan, members_uses
from ..regions import Selection, build_selection
from ..remote import output_directory
from ..rows import RowBlock, concatenate, from_arrays
from ..shards import Part, all_parts, gather, part_path, remove_parts_of_read_unit, write_part
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
# rows of consecutive chunks are merged (sorted: two copies) into one part up to this size;
# fewer, larger parts make the write units' reads cheaper
PART_BYTES = 64 * 2**20
USES_BLOCK = 2**20  # candidates whose uses are planned at once
NEAR_STEPS = 4  # a read chunk may grow to this many steps to end on a basket boundary


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
    n_streams: int
    per_batch: int
    batches_per_file: int
    files_per_unit: int
    n_write_units: int
    scratch: str
    chunk_bytes: int
    counted_stat: tuple[int, float] | None = None  # (size, mtime) when counted


@dataclass(frozen=True)
class ReadResult:
    """What a read unit did, or why it failed."""

    unit: int
    rows: int = 0
    parts: int = 0
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
    n_write_units: int
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
        n_streams=plan.n_streams,
        per_batch=plan.per_batch,
        batches_per_file=plan.batches_per_file,
        files_per_unit=plan.files_per_unit,
        n_write_units=plan.n_write_units,
        scratch=str(scratch),
        chunk_bytes=config.execution.chunk_mb * 2**20,
        counted_stat=counted_stat,
    )


@dataclass(frozen=True)
class _Uses:
    """Every use of the file's candidates, sorted by entry (20 bytes per use: a 4 GB file
    with every candidate used holds millions of them)."""

    entry: np.ndarray  # int64
    member: np.ndarray  # int32: index into the file's share
    position: np.ndarray  # int64: place in the stream's shuffled order


def _plan_uses(task: ReadTask, regions: np.ndarray) -> _Uses:
    share = task.share
    found = np.bincount(regions[regions >= 0], minlength=task.selection.space.n_regions)
    changed = np.flatnonzero(found[share.regions] != share.counts)
    if changed.size:
        first = int(changed[0])
        raise InputFileError(
            f"{task.path}: changed since it was counted (region "
            f"{task.selection.space.name(int(share.regions[first]))}: "
            f"{found[share.regions[first]]} candidates, plan expects {share.counts[first]}); "
            "run 'count' and 'plan' again"
        )
    by_region = np.argsort(regions, kind="stable")
    starts = np.searchsorted(regions[by_region], share.regions, side="left")
    pieces = []
    # members in blocks of about USES_BLOCK candidates: the permutation's temporaries
    # (several 8-byte arrays per candidate) stay small whatever the size of the file
    block = (np.cumsum(share.counts) - share.counts) // USES_BLOCK  # by first candidate
    bounds = [0, *(np.flatnonzero(np.diff(block)) + 1).tolist(), len(share.counts)]
    for lo, hi in itertools.pairwise(bounds):
        member, ranks, positions = members_uses(
            share.offsets[lo:hi],
            share.counts[lo:hi],
            share.totals[lo:hi],
            task.needed,
            share.round_keys[lo:hi],
        )
        member += lo
        pieces.append((by_region[starts[member] + ranks], member.astype(np.int32), positions))
    entry = np.concatenate([p[0] for p in pieces])
    member = np.concatenate([p[1] for p in pieces])
    position = np.concatenate([p[2] for p in pieces])
    by_entry = np.argsort(entry, kind="stable")
    return _Uses(entry[by_entry], member[by_entry], position[by_entry])


def chunk_bounds(tree: Any, branches: list[str], n_entries: int, step: int) -> list[int]:
    """Entry boundaries of read chunks of about `step` entries.

    A chunk ends where every branch starts a new basket, so that no basket is read (and
    decompressed) twice: the last such boundary within the step, or the next one if it is
    near (baskets larger than a step). Without a usable boundary the step is plain.
    """
    try:
        common = {int(e) for e in tree.common_entry_offsets(filter_name=branches)}
    except Exception:  # no usable basket tables: plain steps
        common = set()
    candidates = np.asarray(sorted(common | {0, n_entries}), dtype=np.int64)
    bounds = [0]
    while bounds[-1] < n_entries:
        start = bounds[-1]
        within = int(candidates[np.searchsorted(candidates, start + step, side="right") - 1])
        after = int(candidates[np.searchsorted(candidates, start, side="right")])
        if within > start:
            bounds.append(within)
        elif after <= start + NEAR_STEPS * step:
            bounds.append(after)
        else:
            bounds.append(min(start + step, n_entries))
    return bounds


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
    try:
        return _read_tree(task, tree, scratch)
    finally:
        tree.file.close()


def _read_tree(task: ReadTask, tree: Any, scratch: Path) -> ReadResult:
    layout = branch_layout(tree, task.path)
    n_entries = int(tree.num_entries)
    selection_values = read_selection_arrays(tree, task.path, task.selection, 0, n_entries)
    uses = _plan_uses(task, task.selection.assign(selection_values))
    share = task.share
    others = [name for name in layout.data_branches if name not in selection_values]
    bytes_per_entry = max(
        sum(tree[name].uncompressed_bytes for name in others) / max(n_entries, 1), 1.0
    )
    step = max(1, int(task.chunk_bytes // bytes_per_entry))
    bounds = chunk_bounds(tree, others, n_entries, step) if others else [0, n_entries]
    pending: list[tuple[RowBlock, np.ndarray]] = []
    written = 0

    def flush() -> None:
        nonlocal written
        if not pending:
            return
        rows = concatenate([block for block, _ in pending])
        places = np.concatenate([p for _, p in pending])
        pending.clear()
        if len(places) > 1 and np.any(places[1:] < places[:-1]):
            order = np.argsort(places, kind="stable")
            rows, places = rows.take(order), places[order]
        write_part(part_path(scratch, task.unit, written), rows, _unit_starts(task, rows))
        written += 1

    for start, stop in itertools.pairwise(bounds):
        first, last = np.searchsorted(uses.entry, [start, stop])
        if first == last:
            continue  # nothing planned here: these baskets are never read
        member = uses.member[first:last]
        stream = share.streams[member].astype(np.int64)
        batch, slot = np.divmod(uses.position[first:last], task.per_batch)
        # every row's place in the outputs: parts are sorted by it
        place = (batch * task.n_streams + stream) * task.per_batch + slot
        order = np.argsort(place, kind="stable")
        member, place = member[order], place[order]
        entries = uses.entry[first:last][order]
        rows = RowBlock(len(entries))
        if others:
            chunk = tree.arrays(others, entry_start=start, entry_stop=stop, how=dict)
            rows = from_arrays(chunk, layout).take(entries - start)
            del chunk  # the chunk's buffers go before the next chunk is read
        rows = rows.with_flat(
            {name: values[entries] for name, values in selection_values.items()}
            | {
                "bb_process_key": share.key_index[member].astype(np.int32),
                "bb_region": share.regions[member].astype(np.int32),
                "bb_source_file": np.full(len(entries), task.file_id, dtype=np.int32),
                "bb_source_entry": entries.astype(np.int64),
                "bb_batch": batch[order],
                _STREAM: stream[order],
                _SLOT: slot[order],
            }
        )
        if pending and sum(block.nbytes for block, _ in pending) + rows.nbytes > PART_BYTES:
            flush()
        pending.append((rows, place))
        if rows.nbytes >= PART_BYTES:
            flush()  # a large chunk's rows are a part of their own: no merging copies
    flush()
    return ReadResult(task.unit, rows=len(uses.entry), parts=written, layout=layout)


def _unit_starts(task: ReadTask, rows: RowBlock) -> np.ndarray:
    """First row of every write unit in rows sorted by place, then the row count."""
    first_batches = np.arange(task.n_write_units + 1) * task.files_per_unit * task.batches_per_file
    return np.searchsorted(rows.column("bb_batch"), first_batches)


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
        n_write_units=plan.n_write_units,
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
    with ExitStack() as stack:
        parts = [stack.enter_context(Part(path)) for path in all_parts(Path(task.scratch))]
        return WriteResult(task.unit, outputs=_write_files(task, parts, expected))


def _write_files(task: WriteTask, parts: list[Part], expected: int) -> list[dict[str, Any]]:
    for part in parts:
        if part.n_units != task.n_write_units:
            raise CatalogError(
                f"{part.path}: made for another plan ({part.n_units} write units, "
                f"this plan has {task.n_write_units}); run the read units again"
            )
    ranges = [part.unit_range(task.unit) for part in parts]
    found = sum(stop - start for start, stop in ranges)
    if found != expected:
        raise CatalogError(
            f"write unit {task.unit}: {found} rows arrived, {expected} planned; "
            "some read units are missing or unfinished"
        )
    batches = [
        part.column("bb_batch", start, stop)
        for part, (start, stop) in zip(parts, ranges, strict=True)
    ]
    outputs = []
    directory = output_directory(task.directory, Path(task.scratch) / "staging")
    for index in range(task.first, task.stop):
        bounds = [index * task.batches_per_file, (index + 1) * task.batches_per_file]
        pieces = []
        for part, (start, _), batch in zip(parts, ranges, batches, strict=True):
            lo, hi = start + np.searchsorted(batch, bounds)
            if hi > lo:
                pieces.append((part, int(lo), int(hi)))
        rows = gather(pieces)
        place = (
            rows.column("bb_batch") * task.n_streams + rows.column(_STREAM)
        ) * task.per_batch + rows.column(_SLOT)
        order = np.argsort(place, kind="stable")
        shuffle = np.random.default_rng([task.seed, index, 0x5EED]).permutation(rows.length)
        selected = rows.take(order[shuffle])  # canonical order, then shuffled: one copy
        del rows
        path = output_path(str(directory.staging), task.name, task.spec.format, index)
        WRITERS[task.spec.format](path, selected, task.layout, PROVENANCE, task.spec)
        published = directory.publish(path)  # remote: a verified copy, then renamed
        outputs.append(
            {
                "index": index,
                "path": published.path,
                "entries": selected.length,
                "size": published.size,
                "adler32": published.adler32,
                "mtime_ns": modification_time(published.path),
            }
        )
    return outputs


def modification_time(path: str) -> int | None:
    """A local file's modification time in ns (None for remote files): a cheap change check."""
    return None if is_url(path) else os.stat(path).st_mtime_ns
