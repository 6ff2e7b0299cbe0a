"""Re-read the outputs and compare them with the plan and with their source entries."""

from __future__ import annotations

import itertools
import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from ..catalog import Catalog, lock_holder
from ..config import ProjectConfig
from ..engines import Reporter, SilentReporter
from ..errors import CatalogError
from ..io.stores import open_options, readable
from ..io.trees import opened_tree, unreadable
from ..plan_model import Plan
from ..regions import Selection, build_selection
from ..shuffle import check_sample, unpermute
from .count_units import region_of_entries
from .output_files import output_file

log = logging.getLogger(__name__)

SAMPLE_WINDOW = 20_000  # entries between sampled rows below which one read covers both


@dataclass
class CheckReport:
    """What `check` looked at and every problem it found."""

    files: int = 0
    rows: int = 0
    sampled: int = 0
    problems: list[str] = field(default_factory=list)


def read_output(path: Path | str, file_format: str, tree: str) -> ak.Array:
    """All rows of an output file (a path or a URL)."""
    options = open_options(str(path))
    source = readable(str(path))
    if file_format == "parquet":
        if not isinstance(source, str):
            import pyarrow.parquet as pq

            return ak.from_arrow(pq.read_table(source))
        return ak.from_parquet(path, storage_options=options or None)
    with uproot.open(source, **options) as handle:
        return handle[tree].arrays()


class SourceTrees:
    """Source trees opened once each (opening a tree of many branches costs tens of ms),
    closed together at the end."""

    def __init__(self, paths: dict[int, str], tree: str) -> None:
        self.paths, self._tree = paths, tree
        self._open: dict[int, Any] = {}
        self._files = ExitStack()

    def __getitem__(self, file_id: int) -> Any:
        if file_id not in self._open:
            opened = opened_tree(self.paths[file_id], self._tree)
            self._open[file_id] = self._files.enter_context(opened)
        return self._open[file_id]

    def __enter__(self) -> SourceTrees:
        return self

    def __exit__(self, *_: object) -> None:
        self._open.clear()
        self._files.close()


class SourceIndex:
    """Entries of each region in each source file, read once per file (selection branches only)."""

    def __init__(self, trees: SourceTrees, selection: Selection) -> None:
        self._trees, self._selection = trees, selection
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def entries(self, file_id: int, region: int) -> np.ndarray:
        """Entry numbers of a region's candidates in a file, ascending."""
        if file_id not in self._cache:
            path = self._trees.paths[file_id]
            regions = region_of_entries(self._trees[file_id], path, self._selection)
            order = np.argsort(regions, kind="stable")
            bounds = np.searchsorted(regions[order], np.arange(self._selection.n_cells + 1))
            self._cache[file_id] = (order, bounds)
        order, bounds = self._cache[file_id]
        return order[bounds[region] : bounds[region + 1]]


def expected_sources(plan: Plan, stream: int, index: SourceIndex) -> tuple[np.ndarray, ...]:
    """(global batch, file id, entry) of every planned use of a stream."""
    total = int(plan.stream_total[stream])
    positions = np.arange(int(plan.stream_needed[stream]))
    candidates = unpermute(positions % total, total, plan.keys_of(stream))
    lo, hi = plan.member_ptr[stream], plan.member_ptr[stream + 1]
    offsets = plan.member_offset[lo:hi]
    member = np.searchsorted(offsets, candidates, side="right") - 1
    files = plan.member_file[lo:hi][member]
    ranks = candidates - offsets[member]
    entries = np.empty_like(ranks)
    split = int(plan.splits[stream])
    cell = split * len(plan.region_names) + int(plan.stream_region[stream])
    for local in range(hi - lo):
        chosen = member == local
        entries[chosen] = index.entries(int(plan.member_file[lo + local]), cell)[ranks[chosen]]
    return positions // int(plan.takes[stream]) + plan.split_first_batch[split], files, entries


def _differing_rows(output: ak.Array, source: ak.Array) -> np.ndarray:
    """Rows whose values differ (NaN equals NaN), jagged rows element by element, fixed-size
    arrays as a whole (those of more dimensions compared as one value per row)."""
    if output.ndim > 1:
        lengths_out, lengths_src = ak.to_numpy(ak.num(output)), ak.to_numpy(ak.num(source))
        if not np.array_equal(lengths_out, lengths_src):
            return np.flatnonzero(lengths_out != lengths_src)
        row_of_value = np.repeat(np.arange(len(output)), lengths_out)
        output, source = ak.flatten(output), ak.flatten(source)
    else:
        row_of_value = np.arange(len(output))
    x, y = ak.to_numpy(output), ak.to_numpy(source)
    same = x == y
    if x.dtype.kind == "f":
        same |= np.isnan(x) & np.isnan(y)
    if same.ndim > 1:  # the rest of a fixed-size array (x[2][3]: one value is a row of 3)
        same = same.reshape(len(same), -1).all(axis=1)
    return np.unique(row_of_value[~same])


def sample_sizes(
    rows_per_file: np.ndarray, sample: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Which rows of each output file to compare with their sources: `sample` rows in all
    (or every row, if there are fewer), drawn without replacement across the files."""
    total = int(rows_per_file.sum())
    chosen = np.sort(rng.choice(total, size=min(sample, total), replace=False))
    bounds = np.concatenate([[0], np.cumsum(rows_per_file)])
    starts = np.searchsorted(chosen, bounds)
    return [chosen[lo:hi] - bounds[i] for i, (lo, hi) in enumerate(itertools.pairwise(starts))]


def check_outputs(
    catalog: Catalog,
    plan: Plan,
    config: ProjectConfig,
    sample: int,
    reporter: Reporter | None = None,
) -> CheckReport:
    """Checks every output file against the plan; compares `sample` rows with their sources.

    A file that changed since it was written is reported and not read further; a file that
    cannot be read is reported by name, whatever is wrong inside it.
    """
    holder = lock_holder(catalog.path.parent)
    if holder is not None:
        raise CatalogError(
            f"{catalog.path.parent} is in use by {holder}: check the outputs once it has finished"
        )
    report = CheckReport()
    selection = build_selection(config)
    paths = {record.id: record.path for record in catalog.files()}
    recorded = {
        output["index"]: output
        for result in catalog.unit_results("write").values()
        for output in result["outputs"]
    }
    files = plan.output_files
    rows_per_file = (files.stop_batch - files.first_batch) * plan.rows_per_batch[files.split]
    picks = sample_sizes(rows_per_file, sample, check_sample(plan.seed))
    uses: list[tuple[np.ndarray, ...]] = []
    samples: list[ak.Array] = []
    events = EventsBySplit(selection)
    present = np.zeros(plan.n_batches, dtype=bool)
    output = config.output
    indices = range(plan.n_output_files)
    for index in (reporter or SilentReporter()).track(indices, len(indices), "checking outputs"):
        outputs, path = output_file(plan, output.directory, output.name, output.format, index)
        size = outputs.size(path)
        if size is None:
            report.problems.append(f"{path}: missing")
            continue
        record = recorded.get(index)
        if record is not None and (
            size != record["size"] or outputs.checksum(path) != record["adler32"]
        ):
            report.problems.append(f"{path}: changed after it was written (size or adler32)")
            continue
        try:
            rows = read_output(path, config.output.format, config.inputs.tree)
            checked = _check_file(plan, index, path, rows, selection, report)
        except Exception as err:  # a damaged file can fail in many ways inside uproot
            report.problems.append(unreadable(str(path), err))
            continue
        if checked is None:
            continue
        uses.append(checked)
        events.add(int(files.split[index]), rows)
        present[files.first_batch[index] : files.stop_batch[index]] = True
        picked = picks[index][picks[index] < len(rows)]
        if len(picked):
            samples.append(rows[picked])
    with SourceTrees(paths, config.inputs.tree) as trees:
        if uses:
            _check_membership(plan, uses, present, SourceIndex(trees, selection), report)
        if samples:
            _compare_with_sources(ak.concatenate(samples), trees, report)
    report.problems += events.shared(plan.split_names)
    return report


class EventsBySplit:
    """The events (identity branches) each split's outputs hold, to prove them disjoint."""

    def __init__(self, selection: Selection) -> None:
        self._identity = selection.splits.identity
        self._events: dict[int, list[np.ndarray]] = {}

    def add(self, split: int, rows: ak.Array) -> None:
        """Notes the events of an output file of `split`."""
        if self._identity:
            columns = [ak.to_numpy(rows[name]) for name in self._identity]
            self._events.setdefault(split, []).append(event_ids(columns))

    def shared(self, names: tuple[str, ...]) -> list[str]:
        """A problem for every two splits that hold candidates of one event."""
        events = {s: np.unique(np.concatenate(ids)) for s, ids in self._events.items()}
        problems = []
        for a, b in itertools.combinations(sorted(events), 2):
            common = np.intersect1d(events[a], events[b])
            if common.size:
                problems.append(
                    f"splits {names[a]} and {names[b]} share {common.size} events (by "
                    f"{', '.join(self._identity)}): no candidate may be used in two splits"
                )
        return problems


def event_ids(columns: list[np.ndarray]) -> np.ndarray:
    """One value per row that is equal for rows of the same event (a structured array of
    the identity columns, which numpy sorts and compares field by field)."""
    ids = np.empty(len(columns[0]), dtype=[(f"f{i}", c.dtype) for i, c in enumerate(columns)])
    for i, column in enumerate(columns):
        ids[f"f{i}"] = column
    return ids


def _check_file(
    plan: Plan,
    index: int,
    path: str,
    rows: ak.Array,
    selection: Selection,
    report: CheckReport,
) -> tuple[np.ndarray, ...] | None:
    """Checks one output file's rows against the plan; returns (stream, global batch, source
    file, source entry) of its rows, or None if they are not those of the plan's batches."""
    problem = ak.validity_error(rows)
    if problem:
        raise ValueError(f"inconsistent arrays ({problem})")
    files = plan.output_files
    split = int(files.split[index])
    first, stop = int(files.first_batch[index]), int(files.stop_batch[index])
    stream_of = plan.stream_index[split]
    report.files += 1
    report.rows += len(rows)
    batch = ak.to_numpy(rows["bb_batch"]) + int(plan.split_first_batch[split])
    keys, regions = ak.to_numpy(rows["bb_process_key"]), ak.to_numpy(rows["bb_region"])
    outside = (keys < 0) | (keys >= stream_of.shape[0]) | (regions < 0)
    outside |= regions >= stream_of.shape[1]
    if np.any(outside):
        report.problems.append(f"{path}: rows of unplanned regions or batches")
        return None
    stream = stream_of[keys, regions]
    if np.any(stream < 0) or np.any((batch < first) | (batch >= stop)):
        report.problems.append(f"{path}: rows of unplanned regions or batches")
        return None
    planned = plan.streams_of_split(split)
    in_batch = np.bincount(
        (batch - first) * plan.n_streams + stream, minlength=(stop - first) * plan.n_streams
    ).reshape(stop - first, plan.n_streams)[:, planned]
    takes = plan.takes[planned]
    wrong = np.argwhere(in_batch != takes)
    if wrong.size:
        batch_offset, bad = (int(v) for v in wrong[0])
        key, region = plan.stream_label(int(planned[bad]))
        report.problems.append(
            f"{path}: batch {first + batch_offset - int(plan.split_first_batch[split])} has "
            f"{in_batch[batch_offset, bad]} candidates of {key} {region}, planned "
            f"{takes[bad]} ({len(wrong)} such cells)"
        )
    cells = selection.assign({b: ak.to_numpy(rows[b]) for b in selection.branches})
    if not np.array_equal(selection.region_of(cells), regions):
        report.problems.append(f"{path}: rows whose values do not belong to their region")
    elif np.any(selection.split_of(cells) != split):
        report.problems.append(
            f"{path}: {int(np.sum(selection.split_of(cells) != split))} rows of events that "
            f"belong to another split than {plan.split_names[split]}"
        )
    return (
        stream,
        batch,
        ak.to_numpy(rows["bb_source_file"]),
        ak.to_numpy(rows["bb_source_entry"]),
    )


def _check_membership(
    plan: Plan,
    uses: list[tuple[np.ndarray, ...]],
    present: np.ndarray,
    index: SourceIndex,
    report: CheckReport,
) -> None:
    stream, batch, files, entries = (np.concatenate(parts) for parts in zip(*uses, strict=True))
    order = np.lexsort((entries, files, batch, stream))
    stream, batch, files, entries = stream[order], batch[order], files[order], entries[order]
    bounds = np.searchsorted(stream, np.arange(plan.n_streams + 1))
    for s in range(plan.n_streams):
        want_batch, want_files, want_entries = expected_sources(plan, s, index)
        keep = present[want_batch]
        want = np.lexsort((want_entries[keep], want_files[keep], want_batch[keep]))
        got = slice(bounds[s], bounds[s + 1])
        if not (
            np.array_equal(want_batch[keep][want], batch[got])
            and np.array_equal(want_files[keep][want], files[got])
            and np.array_equal(want_entries[keep][want], entries[got])
        ):
            key, region = plan.stream_label(s)
            report.problems.append(f"{key} {region}: candidates differ from the plan")


def _compare_with_sources(rows: ak.Array, trees: SourceTrees, report: CheckReport) -> None:
    """Compares sampled output rows with their source entries, branch by branch."""
    source_file = ak.to_numpy(rows["bb_source_file"])
    source_entry = ak.to_numpy(rows["bb_source_entry"])
    order = np.lexsort((source_entry, source_file))
    rows, source_file, source_entry = rows[order], source_file[order], source_entry[order]
    file_ids = np.unique(source_file)
    branches = sorted(set(rows.fields) & set(trees[int(file_ids[0])].keys()))
    pieces = []
    for file_id in file_ids:
        tree = trees[int(file_id)]
        entries = source_entry[source_file == file_id]
        # one read covers nearby entries: one decompression per basket, not per row
        breaks = np.flatnonzero(np.diff(entries) > SAMPLE_WINDOW) + 1
        for window in np.split(entries, breaks):
            start, stop = int(window[0]), int(window[-1]) + 1
            pieces.append(tree.arrays(branches, entry_start=start, entry_stop=stop)[window - start])
    sources = ak.concatenate(pieces)
    for name in branches:
        differing = _differing_rows(rows[name], sources[name])
        if differing.size:
            row = int(differing[0])
            report.problems.append(
                f"{trees.paths[int(source_file[row])]} entry {source_entry[row]}: branch {name!r} "
                f"differs in the output ({differing.size} sampled rows)"
            )
    report.sampled += len(rows)
