"""Write units: the rows of each output file, taken from every part, ordered, shuffled, written.

Each part says which of its candidates every use needs (`shards`): a write unit takes the
candidates of an output file from the parts straight into the file's shuffled order, one copy
per use (`shards.Pieces`).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import numpy as np

from ..errors import BalancedBatchesError, CatalogError
from ..io.outputs import output_directory
from ..io.stores import retry_may_help
from ..scratch import Scratch, scratch_at
from ..shards import ROW_COLUMN, Pieces
from ..shuffle import output_shuffle
from ..statistics import DatasetStatistics, block_statistics, merge_all
from ..writers import WRITERS
from .output_files import modification_time, output_path
from .output_statistics import NOT_FEATURES, PARTIAL_SKETCH, SKETCH_SAMPLE, save_partial
from .units import (
    POSITION_COLUMN,
    PROVENANCE,
    STREAM_COLUMN,
    WriteResult,
    WriteTask,
    output_place,
)


def write_outputs(task: WriteTask) -> WriteResult:
    """Runs one write unit; user-caused failures come back in the result."""
    try:
        return _write_outputs(task)
    except BalancedBatchesError as err:
        return WriteResult(task.unit, error=str(err), transient=retry_may_help(err))
    except OSError as err:  # a full or read-only disk: trying again at once would not help
        return WriteResult(
            task.unit,
            error=f"cannot write output files into {task.files[0].directory}: "
            f"{err.strerror or err}",
        )


def _write_outputs(task: WriteTask) -> WriteResult:
    expected = sum(file.rows for file in task.files)
    scratch = scratch_at(task.scratch)
    with ExitStack() as stack:
        parts = [stack.enter_context(part) for part in scratch.open_parts()]
        return WriteResult(task.unit, outputs=_write_files(task, scratch, parts, expected))


def _write_files(
    task: WriteTask, scratch: Scratch, parts: list[Any], expected: int
) -> list[dict[str, Any]]:
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
    tables = [part.uses(start, stop) for part, (start, stop) in zip(parts, ranges, strict=True)]
    extra = PROVENANCE + (("bb_weight",) if task.stream_weight is not None else ())
    outputs = []
    summaries: dict[str, list[DatasetStatistics]] = {}
    for file in task.files:
        directory = output_directory(file.directory, scratch.staging() / file.split)
        directory.staging.mkdir(parents=True, exist_ok=True)  # a batch job may come first
        bounds = np.array([file.first_batch, file.stop_batch]) * task.slots
        pieces, rows, positions, base = [], [], [], 0
        for part, table in zip(parts, tables, strict=True):
            lo, hi = np.searchsorted(table[POSITION_COLUMN], bounds)
            if hi == lo:
                continue
            needed, row = np.unique(table[ROW_COLUMN][lo:hi], return_inverse=True)
            pieces.append((part, needed))
            rows.append(row + base)
            positions.append(table[POSITION_COLUMN][lo:hi])
            base += len(needed)
        candidates = Pieces(pieces)
        row = np.concatenate(rows)
        batch, slot = np.divmod(np.concatenate(positions).astype(np.int64), task.slots)
        stream = candidates.column(STREAM_COLUMN)[row].astype(np.int64)
        place = output_place(batch, stream, slot, task.n_streams, task.slots)
        order = np.argsort(place, kind="stable")
        chosen = order[output_shuffle(task.seed, file.index).permutation(len(place))]
        # canonical order, then shuffled: one copy of the candidates per use
        columns = {"bb_batch": batch[chosen] - file.split_first_batch}
        if task.stream_weight is not None:
            columns["bb_weight"] = task.stream_weight[stream[chosen]]
        selected = candidates.take(row[chosen]).with_flat(columns)
        del candidates
        type_index = selected.column("bb_region") // task.regions_per_type
        summaries.setdefault(file.split, []).append(
            block_statistics(
                selected, type_index, task.type_names, NOT_FEATURES, PARTIAL_SKETCH, SKETCH_SAMPLE
            )
        )
        path = output_path(str(directory.staging), task.name, task.spec.format, file.local)
        WRITERS[task.spec.format](path, selected, task.layout, extra, task.spec)
        published = directory.publish(path)  # remote: a verified copy, then renamed
        outputs.append(
            {
                "index": file.index,
                "path": published.path,
                "entries": selected.length,
                "size": published.size,
                "adler32": published.adler32,
                "mtime_ns": modification_time(published.path),
            }
        )
    for split, partials in summaries.items():
        save_partial(scratch, split, task.unit, merge_all(partials))
    return outputs
