"""Read units: each input file is read once, in chunks, and its planned rows become parts.

The candidates of a chunk that the plan uses are gathered once each as numpy buffers, however
often the plan uses them, and written as one part with the table of their uses (small chunks
are merged; see `shards`). Chunks end where every branch starts a basket, so that no basket
is read twice.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BalancedBatchesError, InputFileError
from ..io.stores import retry_may_help
from ..io.trees import branch_layout, file_stat, opened_tree, unreadable
from ..plan_model import members_uses
from ..rows import RowBlock, concatenate, from_arrays, refuse_uncopyable
from ..scratch import scratch_at
from ..shards import ROW_COLUMN, part_path, write_part
from .count_units import read_selection_arrays
from .units import POSITION_COLUMN, STREAM_COLUMN, ReadResult, ReadTask, merge_layout

# rows of consecutive chunks are merged (sorted: two copies) into one part up to this size;
# fewer, larger parts make the write units' reads cheaper
PART_BYTES = 64 * 2**20
USES_BLOCK = 2**20  # candidates whose uses are planned at once
NEAR_STEPS = 4  # a read chunk may grow to this many steps to end on a basket boundary


@dataclass(frozen=True)
class _Uses:
    """Every use of the file's candidates, sorted by entry (20 bytes per use: a 4 GB file
    with every candidate used holds millions of them)."""

    entry: np.ndarray  # int64
    member: np.ndarray  # int32: index into the file's share
    position: np.ndarray  # int64: place in the stream's shuffled order


def _plan_uses(task: ReadTask, cells: np.ndarray) -> _Uses:
    """Every planned use of the file's candidates (`cells`: each candidate's region in its
    split); the counts must still be the plan's."""
    share = task.share
    found = np.bincount(cells[cells >= 0], minlength=task.selection.n_cells)
    changed = np.flatnonzero(found[share.cells] != share.counts)
    if changed.size:
        first = int(changed[0])
        raise InputFileError(
            f"{task.path}: changed since it was counted (region "
            f"{task.selection.cell_name(int(share.cells[first]))}: "
            f"{found[share.cells[first]]} candidates, plan expects {share.counts[first]}); "
            "run 'count' and 'plan' again"
        )
    by_cell = np.argsort(cells, kind="stable")
    starts = np.searchsorted(cells[by_cell], share.cells, side="left")
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
            share.needed[lo:hi],
            share.round_keys[lo:hi],
        )
        member += lo
        # numbered globally: batches of every split, `slots` positions each
        batch, slot = np.divmod(positions, share.takes[member])
        positions = (share.first_batch[member] + batch) * task.slots + slot
        pieces.append((by_cell[starts[member] + ranks], member.astype(np.int32), positions))
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
        return ReadResult(task.unit, error=str(err), transient=retry_may_help(err))
    except Exception as err:  # a damaged file fails in many ways inside uproot
        return ReadResult(
            task.unit, error=unreadable(task.path, err), transient=retry_may_help(err)
        )


def _read_input(task: ReadTask) -> ReadResult:
    with scratch_at(task.scratch).writing_parts(task.unit) as directory:
        if task.counted_stat is not None and file_stat(task.path) != task.counted_stat:
            raise InputFileError(
                f"{task.path}: changed since it was counted (size or modification time); "
                "run 'count' and 'plan' again"
            )
        with opened_tree(task.path, task.tree) as tree:
            return _read_tree(task, tree, directory)


def _read_tree(task: ReadTask, tree: Any, scratch: Path) -> ReadResult:
    layout = branch_layout(tree)
    merge_layout(task.layout, layout, task.path, task.kept)  # one unlike the others stops here
    n_entries = int(tree.num_entries)
    selection_values = read_selection_arrays(tree, task.path, task.selection, 0, n_entries)
    uses = _plan_uses(task, task.selection.assign(selection_values))
    share = task.share
    # the file's whole layout goes back to the run (every input must agree); only the branches
    # the outputs keep are read
    kept = task.kept(layout)
    refuse_uncopyable(kept, task.path, InputFileError)
    others = [name for name in kept.data_branches if name not in selection_values]
    bytes_per_entry = max(
        sum(tree[name].uncompressed_bytes for name in others) / max(n_entries, 1), 1.0
    )
    step = max(1, int(task.chunk_bytes // bytes_per_entry))
    bounds = chunk_bounds(tree, others, n_entries, step) if others else [0, n_entries]
    pending: list[tuple[RowBlock, dict[str, np.ndarray]]] = []  # candidates and their uses
    written = 0

    def flush() -> None:
        nonlocal written
        if not pending:
            return
        rows, uses_table, unit_starts = _ordered_for_write_units(task, pending)
        pending.clear()
        write_part(part_path(scratch, task.unit, written), rows, uses_table, unit_starts)
        written += 1

    for start, stop in itertools.pairwise(bounds):
        first, last = np.searchsorted(uses.entry, [start, stop])
        if first == last:
            continue  # nothing planned here: these baskets are never read
        entries = uses.entry[first:last]  # sorted: a candidate's uses are neighbours
        new = np.ones(len(entries), dtype=bool)
        new[1:] = entries[1:] != entries[:-1]
        candidate = np.cumsum(new) - 1  # each use's row among the chunk's used candidates
        used = entries[new]
        member = uses.member[first:last]
        rows = RowBlock(len(used))
        if others:
            chunk = tree.arrays(others, entry_start=start, entry_stop=stop, how=dict)
            rows = from_arrays(chunk, kept).take(used - start)
            del chunk  # the chunk's buffers go before the next chunk is read
        used_member = member[new]  # a candidate's region and process are those of all its uses
        rows = rows.with_flat(
            {name: values[used] for name, values in selection_values.items()}
            | {
                "bb_process_key": share.key_index[used_member].astype(np.int32),
                "bb_region": share.regions[used_member].astype(np.int32),
                "bb_source_file": np.full(len(used), task.file_id, dtype=np.int32),
                "bb_source_entry": used.astype(np.int64),
                STREAM_COLUMN: share.streams[used_member].astype(np.int32),
            }
        )
        # 8 bytes a use where positions fit in 32 bits (batches * N < 2^31: any real plan)
        position_type = np.int32 if task.positions < 2**31 else np.int64
        table = {
            ROW_COLUMN: candidate,
            POSITION_COLUMN: uses.position[first:last].astype(position_type),
        }
        size = rows.nbytes + sum(values.nbytes for values in table.values())
        if pending and _pending_bytes(pending) + size > PART_BYTES:
            flush()
        pending.append((rows, table))
        if size >= PART_BYTES:
            flush()  # a large chunk's rows are a part of their own: no merging copies
    flush()
    return ReadResult(task.unit, rows=len(uses.entry), parts=written, layout=layout)


def _pending_bytes(pending: list[tuple[RowBlock, dict[str, np.ndarray]]]) -> int:
    return sum(rows.nbytes + sum(v.nbytes for v in table.values()) for rows, table in pending)


def _ordered_for_write_units(
    task: ReadTask, pending: list[tuple[RowBlock, dict[str, np.ndarray]]]
) -> tuple[RowBlock, dict[str, np.ndarray], np.ndarray]:
    """The chunks' candidates as one block sorted by the first write unit that uses them (then
    by entry); their uses sorted by position (so by batch), each pointing at its candidate's
    row (32 bits: a part holds far fewer than 2^31 candidates); and the first use of every
    write unit, then the number of uses."""
    rows = concatenate([block for block, _ in pending])
    bases = np.cumsum([0] + [block.length for block, _ in pending[:-1]])
    table = {
        name: np.concatenate(
            [
                t[name] + base if name == ROW_COLUMN else t[name]
                for (_, t), base in zip(pending, bases, strict=True)
            ]
        )
        for name in pending[0][1]
    }
    row = table[ROW_COLUMN]  # non-decreasing: chunks and their candidates come in entry order
    first_positions = task.unit_positions
    unit = np.searchsorted(first_positions, table[POSITION_COLUMN], side="right") - 1
    first_uses = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    first_unit = np.minimum.reduceat(unit, first_uses)
    if np.any(first_unit[1:] < first_unit[:-1]):
        order = np.argsort(first_unit, kind="stable")
        rows = rows.take(order)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        table[ROW_COLUMN] = rank[row]
    table[ROW_COLUMN] = table[ROW_COLUMN].astype(np.int32)
    by_position = np.argsort(table[POSITION_COLUMN], kind="stable")
    table = {name: values[by_position] for name, values in table.items()}
    return rows, table, np.searchsorted(table[POSITION_COLUMN], first_positions)
