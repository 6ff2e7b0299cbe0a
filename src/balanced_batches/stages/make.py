"""Make the planned batches: the units of work and their tasks.

Work comes in two kinds of unit. A *read unit* (`read_units.py`) reads one input file
in chunks, picks the planned candidates (as often as the plan reuses them) and writes
them as intermediate parts. A *write unit* (`write_units.py`) gathers the rows of its
output files from every part, puts them in canonical order, shuffles each output file
with its own seeded generator and writes it under a temporary name, renamed when
complete. Results are therefore identical whatever ran where, and in what order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ProjectConfig
from ..errors import ForeignFileError
from ..io.files import is_url
from ..io.outputs import OutputDirectory
from ..plan_model import Plan
from ..regions import Selection, build_selection
from ..rows import BranchLayout
from ..writers import EXTENSIONS, OutputSpec

log = logging.getLogger(__name__)

PROVENANCE = ("bb_process_key", "bb_region", "bb_source_file", "bb_source_entry", "bb_batch")
STREAM_COLUMN, SLOT_COLUMN = "bb_stream_", "bb_slot_"  # parts only, not outputs


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
    transient: bool = False  # the failure may go away on another attempt


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
    transient: bool = False  # the failure may go away on another attempt


def output_place(
    batch: np.ndarray, stream: np.ndarray, slot: np.ndarray, n_streams: int, per_batch: int
) -> np.ndarray:
    """Each row's place in the canonical order of the outputs (batch, stream, slot): write
    units order every output file by it before shuffling."""
    place: np.ndarray = (batch * n_streams + stream) * per_batch + slot
    return place


def output_path(directory: str, name: str, file_format: str, index: int) -> Path:
    """The path of output file `index` (pure: reruns find the same names)."""
    return Path(directory) / (name.format(index=index) + EXTENSIONS[file_format])


PROVENANCE_JSON = "provenance.json"


def output_names(name: str, file_format: str, n_files: int) -> list[str]:
    """File names of a plan's outputs, `provenance.json` included (pure: reruns find the
    same names)."""
    extension = EXTENSIONS[file_format]
    return [name.format(index=index) + extension for index in range(n_files)] + [PROVENANCE_JSON]


def foreign_outputs(
    outputs: OutputDirectory, names: Collection[str], ours: Collection[str]
) -> list[str]:
    """Locations among `names` in the output directory held by files this tool did not write
    (`ours`: the locations its catalog recorded writing)."""
    present = {location.rsplit("/", 1)[-1] for location in outputs.listdir()}
    wanted = [outputs.location(name) for name in names if name in present]
    return [location for location in wanted if location not in ours]


def refuse_foreign_outputs(foreign: Sequence[str], directory: str) -> None:
    """ForeignFileError naming the planned output files that this tool did not write."""
    if foreign:
        raise ForeignFileError(foreign_message(foreign, directory, "--output-directory"))


def foreign_message(foreign: Sequence[str], directory: str, elsewhere: str) -> str:
    """One line naming files this tool did not write where it would write some."""
    shown = ", ".join(location.rsplit("/", 1)[-1] for location in foreign[:3])
    more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
    files = "file exists" if len(foreign) == 1 else "files exist"
    return (
        f"{directory}: {len(foreign)} {files} that balanced-batches did not write but would "
        f"replace ({shown}{more}); move them away, choose another {elsewhere}, or pass "
        "--overwrite to replace them"
    )


def stale_outputs(
    outputs: OutputDirectory, names: Collection[str], ours: Collection[str]
) -> list[str]:
    """Files this tool wrote into the output directory for an earlier plan that the plan of
    `names` does not make again."""
    planned = {outputs.location(name) for name in names}
    return [
        location
        for location in ours
        if location not in planned and outputs.location(location.rsplit("/", 1)[-1]) == location
    ]


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


def modification_time(path: str) -> int | None:
    """A local file's modification time in ns (None for remote files): a cheap change check."""
    return None if is_url(path) else os.stat(path).st_mtime_ns
