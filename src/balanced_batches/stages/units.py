"""The units of work of a plan, and the portable description a batch job receives.

Work comes in two kinds of unit. A *read unit* (`read_units.py`) reads one input file in
chunks, picks the planned candidates (as often as the plan reuses them) and writes them as
intermediate parts. A *write unit* (`write_units.py`) gathers the rows of its output files
from every part, puts them in canonical order, shuffles each output file with its own seeded
generator and writes it under a temporary name, renamed when complete. Results are therefore
identical whatever ran where, and in what order.

A `JobSpec` holds everything the units need (configuration, plan, input files, branch
layout, scratch location) without the catalog: `run` builds it from the catalog,
`export-jobs` saves it next to submit files, and `make --spec` loads it on a worker node.
Units are enumerated in one place, `build_jobs`: job numbers count the read units first,
then the write units.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..catalog import Catalog
from ..config import ProjectConfig
from ..errors import CatalogError, InputFileError
from ..io.files import write_json
from ..plan_model import Plan
from ..regions import Selection, build_selection
from ..rows import (
    BranchLayout,
    layout_difference,
    layout_from_json,
    layout_to_json,
    select_branches,
)
from ..shards import plan_scratch
from ..writers import OutputSpec
from .output_files import split_directory

log = logging.getLogger(__name__)

PROVENANCE = ("bb_process_key", "bb_region", "bb_source_file", "bb_source_entry", "bb_batch")

# parts only, not outputs: a candidate's stream, and a use's place in its stream's order
# (batch * per_batch + slot, as `plan_model.members_uses` gives it)
STREAM_COLUMN, POSITION_COLUMN = "bb_stream_", "bb_position_"


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
    cells: np.ndarray  # the stream's region in its split, as `Selection.assign` gives it
    needed: np.ndarray  # uses the stream makes (its split's batches x what a batch takes)
    takes: np.ndarray  # candidates every batch takes from the stream
    first_batch: np.ndarray  # global number of the first batch of the stream's split


@dataclass(frozen=True)
class ReadTask:
    """Read one input file once and route its selected rows to the write units."""

    unit: int
    file_id: int
    path: str
    tree: str
    selection: Selection = field(repr=False)
    share: FileShare = field(repr=False)
    positions: int  # global positions of the plan: every batch of every split times slots
    slots: int  # global positions per batch (`Plan.slots`)
    # the first global position of every write unit, then `positions`
    unit_positions: np.ndarray = field(repr=False)
    scratch: str
    chunk_bytes: int
    counted_stat: tuple[int, float] | None = None  # (size, mtime) when counted
    keep_branches: tuple[str, ...] | None = None  # output.branches
    drop_branches: tuple[str, ...] = ()  # output.drop_branches
    layout: BranchLayout | None = None  # the branches every input must have, when known

    def kept(self, layout: BranchLayout) -> BranchLayout:
        """The branches of `layout` the outputs keep (and the selection reads)."""
        return select_branches(
            layout, self.keep_branches, self.drop_branches, self.selection.branches
        )


@dataclass(frozen=True)
class ReadResult:
    """What a read unit did, or why it failed."""

    unit: int
    rows: int = 0
    parts: int = 0
    layout: BranchLayout | None = None
    error: str | None = None
    transient: bool = False  # the failure may go away on another attempt


@dataclass(frozen=True)
class WriteTask:
    """Write the output files [first, stop) (global numbers) from their gathered rows."""

    unit: int
    first: int
    stop: int
    files: tuple[OutputFile, ...]  # those files
    n_streams: int
    slots: int  # global positions per batch (`Plan.slots`)
    n_write_units: int
    seed: int
    scratch: str
    name: str
    layout: BranchLayout
    spec: OutputSpec = field(repr=False)
    type_names: tuple[str, ...] = ()  # what statistics.json counts rows by
    regions_per_type: int = 1  # bb_region // regions_per_type: the row's type
    stream_weight: np.ndarray | None = field(default=None, repr=False)  # output.weights


@dataclass(frozen=True)
class OutputFile:
    """One output file: where it goes and which global batches and streams it holds."""

    index: int  # global number (its shuffle's seed)
    directory: str  # its split's output directory
    split: str
    local: int  # number within the split: its name's index
    first_batch: int  # global batches [first_batch, stop_batch)
    stop_batch: int
    split_first_batch: int  # global number of the split's batch 0 (bb_batch counts from it)
    rows: int


@dataclass(frozen=True)
class WriteResult:
    """Outputs of a write unit, or why it failed."""

    unit: int
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    transient: bool = False  # the failure may go away on another attempt


def output_place(
    batch: np.ndarray, stream: np.ndarray, slot: np.ndarray, n_streams: int, slots: int
) -> np.ndarray:
    """Each row's place in the canonical order of the outputs (batch, stream, slot; `slots`:
    the most any stream takes per batch): write units order every output file by it before
    shuffling."""
    place: np.ndarray = (batch * n_streams + stream) * slots + slot
    return place


def read_task(
    plan: Plan,
    unit: int,
    path: str,
    config: ProjectConfig,
    scratch: str,
    counted_stat: tuple[int, float] | None = None,
    selection: Selection | None = None,
    layout: BranchLayout | None = None,
) -> ReadTask:
    """The read task of the plan's `unit`-th input file (`selection`: built once by the caller;
    `layout`: the branches every input must have, if known)."""
    file_id = int(plan.read_files[unit])
    members = np.flatnonzero(plan.member_file == file_id)
    streams = plan.member_stream[members]
    regions = plan.stream_region[streams]
    share = FileShare(
        streams=streams,
        regions=regions,
        key_index=plan.stream_key_index[streams],
        offsets=plan.member_offset[members],
        counts=plan.member_count[members],
        totals=plan.stream_total[streams],
        round_keys=plan.round_keys[streams],
        cells=plan.splits[streams].astype(np.int64) * len(plan.region_names) + regions,
        needed=plan.stream_needed[streams],
        takes=plan.takes[streams],
        first_batch=plan.stream_first_batch[streams],
    )
    return ReadTask(
        unit=unit,
        file_id=file_id,
        path=path,
        tree=config.inputs.tree,
        selection=selection or build_selection(config),
        share=share,
        positions=plan.n_batches * plan.slots,
        slots=plan.slots,
        unit_positions=plan.unit_first_positions,
        scratch=scratch,
        chunk_bytes=config.execution.chunk_mb * 2**20,
        counted_stat=counted_stat,
        keep_branches=None if config.output.branches is None else tuple(config.output.branches),
        drop_branches=tuple(config.output.drop_branches),
        layout=layout,
    )


def write_task(
    plan: Plan,
    unit: int,
    config: ProjectConfig,
    scratch: str,
    layout: BranchLayout,
    provenance: str,
) -> WriteTask:
    """The write task of a write unit."""
    first = unit * plan.files_per_unit
    stop = min(first + plan.files_per_unit, plan.n_output_files)
    table = plan.output_files
    files = []
    for index in range(first, stop):
        split = int(table.split[index])
        batches = int(table.stop_batch[index] - table.first_batch[index])
        files.append(
            OutputFile(
                index=index,
                directory=split_directory(config.output.directory, plan.split_names[split]),
                split=plan.split_names[split],
                local=int(table.local[index]),
                first_batch=int(table.first_batch[index]),
                stop_batch=int(table.stop_batch[index]),
                split_first_batch=int(plan.split_first_batch[split]),
                rows=batches * int(plan.rows_per_batch[split]),
            )
        )
    weights = None
    if config.output.weights:
        weights = (plan.stream_total / plan.stream_needed).astype(np.float32)
    return WriteTask(
        unit=unit,
        first=first,
        stop=stop,
        files=tuple(files),
        n_streams=plan.n_streams,
        slots=plan.slots,
        n_write_units=plan.n_write_units,
        seed=plan.seed,
        scratch=scratch,
        stream_weight=weights,
        type_names=tuple(config.types),
        regions_per_type=len(plan.region_names) // len(config.types),
        name=config.output.name,
        layout=output_branches(config)(layout),
        spec=OutputSpec(
            format=config.output.format,
            compression=config.output.compression,
            tree=config.inputs.tree,
            provenance=provenance,
            identity=f"seed {plan.seed}",
        ),
    )


SPEC_NAME = "spec.json"

PLAN_ARRAYS_NAME = "plan.npz"


@dataclass(frozen=True)
class SourceFile:
    """An input file as counted."""

    path: str
    size: int | None
    mtime: float | None


@dataclass(frozen=True)
class JobSpec:
    """Everything the units of a plan need."""

    config: ProjectConfig
    plan: Plan
    files: dict[int, SourceFile]
    layout: BranchLayout | None
    scratch: str
    records: str | None = None  # where batch jobs leave their result records
    keep_scratch: bool = False  # the last write job leaves the intermediate parts

    def provenance(self) -> dict[str, Any]:
        """What the provenance branches' integers mean (only what plan and seed decide)."""
        wanted = {int(i) for i in self.plan.read_files}
        return {
            "version": __version__,
            "process_keys": list(self.plan.process_keys),
            "regions": list(self.plan.region_names),
            "source_files": {str(i): f.path for i, f in self.files.items() if i in wanted},
            "seed": self.plan.seed,
            "events_per_batch_type": self.plan.per_batch,
            "batches": self.plan.n_batches,
            "batches_per_file": self.plan.batches_per_file,
        } | self._splits()

    def _splits(self) -> dict[str, Any]:
        """The splits and their batches (bb_batch counts within its split), if any."""
        names = self.plan.split_names
        if names == ("",):
            return {}
        batches = self.plan.batches_of_split.tolist()
        return {"splits": dict(zip(names, batches, strict=True))}

    def save(self, directory: Path) -> list[Path]:
        """Writes `spec.json` and `plan.npz` into a directory; returns both paths."""
        parameters, arrays = self.plan.to_arrays()
        spec = {
            "version": __version__,
            "config": self.config.model_dump(mode="json"),
            "plan": parameters,
            "files": {str(i): [f.path, f.size, f.mtime] for i, f in self.files.items()},
            "layout": None if self.layout is None else layout_to_json(self.layout),
            "scratch": self.scratch,
            "records": self.records,
            "keep_scratch": self.keep_scratch,
        }
        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / SPEC_NAME, spec, sort_keys=False)  # types and processes: order
        with (directory / PLAN_ARRAYS_NAME).open("wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
        return [directory / SPEC_NAME, directory / PLAN_ARRAYS_NAME]

    @classmethod
    def load(cls, spec_path: Path) -> JobSpec:
        """Reads a spec saved by `save` (the arrays file lies beside it)."""
        try:
            spec = json.loads(spec_path.read_text())
            with np.load(spec_path.parent / PLAN_ARRAYS_NAME) as stored:
                arrays = {name: stored[name] for name in stored.files}
        except (OSError, ValueError) as err:
            raise CatalogError(f"{spec_path}: not a readable job specification ({err})") from err
        return cls(
            config=ProjectConfig.model_validate(spec["config"]),
            plan=Plan.from_arrays(spec["plan"], arrays),
            files={int(i): SourceFile(*entry) for i, entry in spec["files"].items()},
            layout=None if spec["layout"] is None else layout_from_json(spec["layout"]),
            scratch=spec["scratch"],
            records=spec.get("records"),
            keep_scratch=spec.get("keep_scratch", False),
        )


def stored_layout(catalog: Catalog) -> BranchLayout | None:
    """The branch layout the read units found, if any ran."""
    stored = catalog.get_meta("layout")
    return None if stored is None else layout_from_json(stored)


# what the outputs keep of a layout (`output_branches`, `ReadTask.kept`)
Branches = Callable[[BranchLayout], BranchLayout]


def output_branches(config: ProjectConfig) -> Branches:
    """What the outputs keep of a layout (`output.branches`, `output.drop_branches`, and the
    branches the selection reads), as a function of the layout: the selection's expressions
    are parsed once, here."""
    return partial(
        select_branches,
        keep=config.output.branches,
        drop=config.output.drop_branches,
        always=build_selection(config).branches,
    )


def merge_layout(
    known: BranchLayout | None,
    found: BranchLayout,
    path: str,
    kept: Branches | None = None,
) -> BranchLayout:
    """The layout every input has, now that the input `path` showed `found`: an input whose
    branches or branch types differ from the `known` layout's is an InputFileError naming
    the file, the branch and both types. Only the branches `kept` keeps count: a branch the
    outputs drop may differ. A known layout that predates branch types gives way to `found`
    (same branches, now with their types)."""
    if known is None:
        return found
    compared = (known, found) if kept is None else (kept(known), kept(found))
    difference = layout_difference(*compared)
    if difference is not None:
        raise InputFileError(f"{path}: {difference}")
    return found if found.types and not known.types else known


def spec_from_catalog(
    catalog: Catalog, plan: Plan, config: ProjectConfig, workdir: Path
) -> JobSpec:
    """The job specification of the catalog's plan."""
    files = {
        record.id: SourceFile(record.path, record.size, record.mtime) for record in catalog.files()
    }
    scratch = plan_scratch(config, workdir, plan.id)
    return JobSpec(config, plan, files, stored_layout(catalog), str(scratch))


@dataclass(frozen=True)
class Jobs:
    """Every unit of work of a plan, in job order: read units first, then write units."""

    reads: list[ReadTask]
    writes: list[WriteTask] | None  # None until the branch layout is known


def build_jobs(spec: JobSpec) -> Jobs:
    """Enumerates the plan's units of work (the only place that does)."""
    scratch = spec.scratch
    selection = build_selection(spec.config)
    reads = []
    for unit, file_id in enumerate(spec.plan.read_files):
        source = spec.files[int(file_id)]
        stat = None if source.size is None else (source.size, source.mtime or 0.0)
        reads.append(
            read_task(
                spec.plan, unit, source.path, spec.config, scratch, stat, selection, spec.layout
            )
        )
    if spec.layout is None:
        return Jobs(reads, None)
    provenance = json.dumps(spec.provenance())
    writes = [
        write_task(spec.plan, unit, spec.config, scratch, spec.layout, provenance)
        for unit in range(spec.plan.n_write_units)
    ]
    return Jobs(reads, writes)
