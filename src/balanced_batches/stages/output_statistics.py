"""`statistics.json` beside each split's outputs, from the rows the write units wrote.

Every write unit summarises the rows of each output file it writes (`statistics.block_statistics`:
no extra read) and leaves one partial summary per split in the scratch directory,
`statistics/<split>-w<unit>.json`. Once every write unit of a split has left its partial,
`publish_statistics` merges them and writes the split's `statistics.json`: whoever finishes
last (`run`, or the last batch job) publishes, and the merge does not depend on the order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from ..io.outputs import output_directory
from ..scratch import Scratch, scratch_at
from ..statistics import DatasetStatistics, merge_all, statistics_json
from .output_files import STATISTICS_JSON, split_directory
from .units import PROVENANCE, STREAM_COLUMN, JobSpec

log = logging.getLogger(__name__)

# points of the quantile sketch of one write unit's branch: a partial of 150 branches stays
# near 2 MB, and quantiles are within about 1/1024 of the rows of their true rank
PARTIAL_SKETCH = 1024
# elements of a branch of one output file sorted for its sketch (the rest is exact): sorting
# every element cost 40 % of writing the file (medium dataset, 18 M elements in 25,590 rows)
SKETCH_SAMPLE = 16 * PARTIAL_SKETCH
# columns that are bookkeeping, not features
NOT_FEATURES = frozenset((*PROVENANCE, STREAM_COLUMN, "bb_weight"))


def partial_name(split: str, unit: int) -> str:
    """The scratch record of write unit `unit`'s partial summary of `split`."""
    return f"statistics/{split or 'all'}-w{unit:06d}.json"


def save_partial(scratch: Scratch, split: str, unit: int, statistics: DatasetStatistics) -> None:
    """Leaves a write unit's summary of one split (replacing an earlier attempt's): a few MB
    of compact JSON that only this module reads."""
    scratch.put_json(partial_name(split, unit), statistics.to_json())


def units_of_split(spec: JobSpec, split: int) -> list[int]:
    """The write units that write files of a split."""
    files = np.flatnonzero(spec.plan.output_files.split == split)
    return sorted({int(index) // spec.plan.files_per_unit for index in files})


def publish_statistics(spec: JobSpec) -> list[str]:
    """Writes `statistics.json` of every split whose write units all left their partial
    summary; returns where it wrote them."""
    scratch = scratch_at(spec.scratch)
    present = {f"statistics/{name}" for name in scratch.names("statistics")}
    published = []
    for split, name in enumerate(spec.plan.split_names):
        wanted = [partial_name(name, unit) for unit in units_of_split(spec, split)]
        if not present.issuperset(wanted):
            continue  # another write job finishes later, and publishes
        try:
            merged = merge_all(_read_partials(scratch, wanted))  # one at a time: see merge_all
        except _PartialGone:
            continue
        record = statistics_json(merged) | ({"split": name} if name else {})
        directory = output_directory(
            split_directory(spec.config.output.directory, name), scratch.staging() / name
        )
        published.append(directory.write_json(STATISTICS_JSON, record))
    return published


class _PartialGone(Exception):
    """A partial listed a moment ago is gone: this job leaves the split unpublished, as when
    one is missing from the list."""


def _read_partials(scratch: Scratch, names: list[str]) -> Iterator[DatasetStatistics]:
    for name in names:
        partial = scratch.get_json(name)
        if partial is None:
            raise _PartialGone(name)
        yield DatasetStatistics.from_json(partial)
