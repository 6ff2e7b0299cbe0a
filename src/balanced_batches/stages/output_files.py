"""The output files of a plan: their names, and which of the files present are this tool's.

The tool replaces or deletes only files its catalog recorded writing: a planned name held by
another file is refused (`refuse_foreign_outputs`) unless the user asks to overwrite it, and
outputs of an earlier plan are removed only while unchanged (`stale_outputs`).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ForeignFileError
from ..io.files import is_url
from ..io.outputs import OutputDirectory, output_directory
from ..plan_model import Plan
from ..writers import EXTENSIONS


def output_path(directory: str, name: str, file_format: str, index: int) -> Path:
    """The path of output file `index` (pure: reruns find the same names)."""
    return Path(directory) / (name.format(index=index) + EXTENSIONS[file_format])


PROVENANCE_JSON = "provenance.json"
STATISTICS_JSON = "statistics.json"


def output_names(name: str, file_format: str, n_files: int) -> list[str]:
    """File names of one split's outputs, `provenance.json` and `statistics.json` included
    (pure: reruns find the same names)."""
    extension = EXTENSIONS[file_format]
    files = [name.format(index=index) + extension for index in range(n_files)]
    return [*files, PROVENANCE_JSON, STATISTICS_JSON]


def split_directory(directory: str, split: str) -> str:
    """Where a split's outputs go: `<directory>/<split>`, the directory itself without splits."""
    return f"{directory.rstrip('/')}/{split}" if split else directory


@dataclass(frozen=True)
class OutputSet:
    """The outputs of one split: its directory and every file name planned there."""

    split: str
    directory: str
    names: list[str]


def output_sets(plan: Plan, directory: str, name: str, file_format: str) -> list[OutputSet]:
    """Every split's planned outputs, in split order (one set without splits)."""
    files = plan.output_files
    sets = []
    for index, split in enumerate(plan.split_names):
        names = output_names(name, file_format, int(np.sum(files.split == index)))
        sets.append(OutputSet(split, split_directory(directory, split), names))
    return sets


def output_file(
    plan: Plan, directory: str, name: str, file_format: str, index: int
) -> tuple[OutputDirectory, str]:
    """The split directory of the plan's output file `index` (global number), and the
    file's location in it."""
    split = plan.split_names[int(plan.output_files.split[index])]
    outputs = output_directory(split_directory(directory, split))
    local = int(plan.output_files.local[index])
    return outputs, outputs.location(output_path("", name, file_format, local).name)


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
    outputs: OutputDirectory, planned: Collection[str], ours: Collection[str]
) -> list[str]:
    """Files this tool wrote into the output directory (or a split's directory in it) for
    an earlier plan that the plan does not make again (`planned`: its locations)."""
    top = outputs.location("x")[:-1]  # with its trailing separator
    return [
        location
        for location in ours
        if location not in planned
        and location.startswith(top)
        and location[len(top) :].count("/") <= 1  # the directory or a split's directory
    ]


def modification_time(path: str) -> int | None:
    """A local file's modification time in ns (None for remote files): a cheap change check."""
    return None if is_url(path) else os.stat(path).st_mtime_ns
