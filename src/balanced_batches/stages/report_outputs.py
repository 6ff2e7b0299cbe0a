"""Reading the outputs for the report: chunked, only the branches needed, histograms filled
as chunks arrive, so memory does not grow with the size of the production."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ProjectConfig
from ..engines import Reporter, SilentReporter
from ..errors import BalancedBatchesError, InputFileError
from ..io.stores import open_options, readable
from ..io.trees import unreadable
from ..plan_model import Plan
from ..regions import RegionSpace, Selection

log = logging.getLogger(__name__)

CHUNK_ENTRIES = 1_000_000
PROVENANCE_USED = ("bb_process_key", "bb_region", "bb_batch")


def load_plots() -> Any:
    """The plotting module; a clear error if the optional plotting packages are missing."""
    try:
        from .. import plots
    except ImportError as err:
        raise BalancedBatchesError(
            f"the report needs matplotlib, mplhep and hist ({err}): "
            "pip install 'balanced-batches[plots]'"
        ) from err
    return plots


def distribution_hist(space: RegionSpace, n_keys: int) -> Any:
    """Candidates by process key, type, |eta| and pT in region bins (the overflow drawn finite)."""
    import hist

    plots = load_plots()
    return hist.Hist(
        hist.axis.IntCategory(list(range(n_keys)), name="key"),
        hist.axis.IntCategory(list(range(len(space.type_names))), name="type"),
        hist.axis.Variable(plots.display_edges(space.abseta_edges), name="abseta", flow=False),
        hist.axis.Variable(plots.display_edges(space.pt_edges), name="pt", flow=False),
        storage=hist.storage.Int64(),
    )


def fill_distributions(
    histogram: Any,
    selection: Selection,
    arrays: dict[str, np.ndarray],
    regions: np.ndarray,
    key_index: np.ndarray,
    keep: np.ndarray,
) -> None:
    """Adds the kept candidates of a chunk: type from their region, pT and |eta| values."""
    space, plots = selection.space, load_plots()
    n = len(regions)
    keep = keep & (regions >= 0)
    pt = np.broadcast_to(np.asarray(selection.pt.evaluate(arrays), dtype=np.float64), (n,))
    abseta = np.broadcast_to(np.asarray(selection.abseta.evaluate(arrays), np.float64), (n,))
    histogram.fill(
        key=np.broadcast_to(key_index, (n,))[keep],
        type=space.type_of(regions[keep]),
        pt=plots.clip_to_display(pt[keep], space.pt_edges),
        abseta=plots.clip_to_display(abseta[keep], space.abseta_edges),
    )


def planned_input(plan: Plan, space: RegionSpace) -> np.ndarray:
    """Candidates of every planned stream, as (key, type, |eta| bin, pT bin) counts.

    These are the counts of the catalog, in the region bins the output histogram uses: the
    pool every stream draws from, known exactly without opening an input file.
    """
    grid = np.zeros((len(plan.process_keys), space.n_regions), dtype=np.int64)
    grid[plan.stream_key_index, plan.stream_region] = plan.stream_total
    return grid.reshape(len(plan.process_keys), len(space.type_names), space.n_abseta, space.n_pt)


def output_chunks(
    path: Path | str, file_format: str, tree: str, branches: Sequence[str]
) -> Iterator[dict[str, np.ndarray]]:
    """The given branches of an output file, CHUNK_ENTRIES rows at a time.

    A file that cannot be read raises InputFileError, whatever failed inside the reader.
    """
    try:
        yield from _read_chunks(path, file_format, tree, list(branches))
    except Exception as err:  # missing or damaged files fail in many ways inside the readers
        raise InputFileError(unreadable(str(path), err)) from err


def _read_chunks(
    path: Path | str, file_format: str, tree: str, branches: list[str]
) -> Iterator[dict[str, np.ndarray]]:
    location = str(path)
    source = readable(location, whole=False)
    if file_format == "parquet":
        import fsspec
        import pyarrow.parquet as pq

        opened = fsspec.open(source, "rb") if isinstance(source, str) else nullcontext(source)
        with opened as raw, pq.ParquetFile(raw) as handle:
            for batch in handle.iter_batches(batch_size=CHUNK_ENTRIES, columns=branches):
                yield {name: batch.column(name).to_numpy(zero_copy_only=False) for name in branches}
        return
    import uproot

    with uproot.open(source, **open_options(location)) as handle:
        output_tree = handle[tree]
        entries = int(output_tree.num_entries)
        for start in range(0, entries, CHUNK_ENTRIES):
            stop = min(start + CHUNK_ENTRIES, entries)
            arrays = output_tree.arrays(branches, entry_start=start, entry_stop=stop, library="np")
            yield {name: np.asarray(arrays[name]) for name in branches}


@dataclass
class BatchCounts:
    """Smallest, summed and largest count of every stream over the batches seen so far."""

    n_streams: int
    batches: int = 0
    minimum: np.ndarray = field(init=False)
    maximum: np.ndarray = field(init=False)
    total: np.ndarray = field(init=False)
    seen: np.ndarray = field(init=False)  # batches seen of every stream (its split's)

    def __post_init__(self) -> None:
        self.minimum = np.full(self.n_streams, np.iinfo(np.int64).max, dtype=np.int64)
        self.maximum = np.zeros(self.n_streams, dtype=np.int64)
        self.total = np.zeros(self.n_streams, dtype=np.int64)
        self.seen = np.zeros(self.n_streams, dtype=np.int64)

    def add(self, cells: np.ndarray, streams: np.ndarray) -> None:
        """Takes the (batches, streams) counts of complete batches of the split whose streams
        are `streams`."""
        if not len(cells):
            return
        cells = cells[:, streams]
        self.minimum[streams] = np.minimum(self.minimum[streams], cells.min(axis=0))
        self.maximum[streams] = np.maximum(self.maximum[streams], cells.max(axis=0))
        self.total[streams] += cells.sum(axis=0)
        self.seen[streams] += len(cells)
        self.batches += len(cells)

    @property
    def mean(self) -> np.ndarray:
        """Mean count of every stream."""
        mean: np.ndarray = self.total / np.maximum(self.seen, 1)
        return mean


@dataclass
class OutputScan:
    """What reading the outputs found."""

    histogram: Any
    batches: BatchCounts
    files: int = 0
    rows: int = 0
    problems: list[str] = field(default_factory=list)


def scan_outputs(
    outputs: list[dict[str, Any]],
    plan: Plan,
    config: ProjectConfig,
    selection: Selection,
    reporter: Reporter | None = None,
) -> OutputScan:
    """Fills the output distributions and the per-batch counts, one file at a time."""
    scan = OutputScan(
        distribution_hist(selection.space, len(plan.process_keys)), BatchCounts(plan.n_streams)
    )
    files = plan.output_files
    branches = sorted(selection.branches | set(PROVENANCE_USED))
    for output in (reporter or SilentReporter()).track(outputs, len(outputs), "reading outputs"):
        path = str(output["path"])  # local path or URL
        index = int(output["index"])
        split = int(files.split[index])
        stream_of = plan.stream_index[split]
        # bb_batch counts within the split
        first = int(files.first_batch[index] - plan.split_first_batch[split])
        n_batches = int(files.stop_batch[index] - files.first_batch[index])
        cells = np.zeros(n_batches * plan.n_streams, dtype=np.int64)
        unplanned = 0
        try:
            for arrays in output_chunks(path, config.output.format, config.inputs.tree, branches):
                keys = arrays["bb_process_key"].astype(np.int64)
                region, batch = arrays["bb_region"].astype(np.int64), arrays["bb_batch"] - first
                valid = (keys >= 0) & (keys < len(plan.process_keys))
                valid &= (region >= 0) & (region < len(plan.region_names))
                valid &= (batch >= 0) & (batch < n_batches)
                stream = np.where(valid, stream_of[keys * valid, region * valid], -1)
                good = stream >= 0
                unplanned += int(np.count_nonzero(~good))
                cells += np.bincount(
                    batch[good] * plan.n_streams + stream[good], minlength=len(cells)
                )
                regions = selection.region_of(selection.assign(arrays))
                fill_distributions(scan.histogram, selection, arrays, regions, keys, good)
                scan.rows += len(keys)
        except InputFileError as err:
            scan.problems.append(f"{err}; left out")
            continue
        if unplanned:
            scan.problems.append(f"{path}: {unplanned} rows of unplanned regions or batches")
        scan.batches.add(cells.reshape(n_batches, plan.n_streams), plan.streams_of_split(split))
        scan.files += 1
    return scan
