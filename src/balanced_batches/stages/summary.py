"""Counts per process key and region, and what a plan would make of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..catalog import Catalog
from ..config import ProjectConfig
from ..errors import BalancedBatchesError
from ..io.files import write_json
from .plan import (
    CountTable,
    SizeEstimate,
    SplitStreams,
    count_table,
    estimate_size,
    split_streams,
    split_tables,
    summary_json,
)


@dataclass(frozen=True)
class Summary:
    """Counts and planned reuse for one pile-up choice: of the single split, or, with
    splits, of all of them together, each split's own in `splits`."""

    table: CountTable
    per_batch: int | None
    n_batches: int | None
    plan_problem: str | None
    bad_files: list[tuple[str, str]]
    unmatched_files: list[str]
    size: SizeEstimate | None = None  # of the plan these settings give
    splits: tuple[Summary, ...] = ()  # with splits: each one's summary, in order
    takes: np.ndarray | None = None  # (keys, regions): candidates a batch takes, 0: unplanned

    def reuse(self) -> np.ndarray:
        """Planned uses per candidate of every (key, region); 0 where nothing is planned."""
        if self.n_batches is None or self.takes is None:
            return np.zeros(self.table.totals.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            reuse = self.n_batches * self.takes / self.table.totals
        return np.where(self.takes > 0, reuse, 0.0)

    def unique_fraction(self) -> np.ndarray:
        """Share of the outputs' candidates of every (key, region) that are distinct
        candidates (min(candidates, uses) / uses): 1 without reuse; 0 where nothing is
        planned."""
        reuse = self.reuse()
        with np.errstate(divide="ignore"):
            return np.where(reuse > 0, np.minimum(1.0, 1.0 / reuse), 0.0)


def summarize(catalog: Catalog, config: ProjectConfig) -> Summary:
    """Builds the summary for the configured pile-up choice and plan settings."""
    tables = split_tables(catalog, config, config.plan.pileup)
    files = catalog.files()
    bad = [(f.path, f.error or "") for f in files if f.status == "bad"]
    unmatched = [f.path for f in files if f.process is None]
    parts = [_split_summary(catalog, config, table, bad, unmatched) for table in tables]
    if len(parts) == 1:
        return parts[0]
    return Summary(
        table=count_table(catalog, config, config.plan.pileup),
        per_batch=config.plan.events_per_batch_type,
        n_batches=None,
        plan_problem=next((p.plan_problem for p in parts if p.plan_problem), None),
        bad_files=bad,
        unmatched_files=unmatched,
        splits=tuple(parts),
    )


def _split_summary(
    catalog: Catalog,
    config: ProjectConfig,
    table: CountTable,
    bad: list[tuple[str, str]],
    unmatched: list[str],
) -> Summary:
    per_batch = config.plan.events_per_batch_type
    planned: SplitStreams | None = None
    problem: str | None = None
    if per_batch is not None:
        try:
            planned = split_streams(table, config, per_batch)
        except BalancedBatchesError as err:
            problem = str(err)
    size = None
    takes = None
    if planned is not None:
        streams = planned.streams
        totals = table.totals[streams[:, 0], streams[:, 1]]
        n_files = -(-planned.n_batches // config.output.batches_per_file)
        files_used = table.file_ids[table.file_key >= 0]
        needed = planned.n_batches * planned.takes
        size = estimate_size(catalog, files_used, totals, needed, n_files)
        takes = np.zeros_like(table.totals)
        takes[streams[:, 0], streams[:, 1]] = planned.takes
    return Summary(
        table=table,
        per_batch=per_batch,
        n_batches=None if planned is None else planned.n_batches,
        plan_problem=problem,
        bad_files=bad,
        unmatched_files=unmatched,
        size=size,
        takes=takes,
    )


def write_summary_json(catalog: Catalog, summary: Summary, path: Path) -> None:
    """Writes the original `summary.json`."""
    write_json(path, summary_json(summary.table, catalog))
