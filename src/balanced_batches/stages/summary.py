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
    choose_batch_count,
    count_table,
    estimate_size,
    summary_json,
)


@dataclass(frozen=True)
class Summary:
    """Counts and planned reuse for one pile-up choice."""

    table: CountTable
    per_batch: int | None
    n_batches: int | None
    plan_problem: str | None
    bad_files: list[tuple[str, str]]
    unmatched_files: list[str]
    size: SizeEstimate | None = None  # of the plan these settings give

    def reuse(self) -> np.ndarray:
        """Planned uses per candidate of every (key, region); 0 where nothing is planned."""
        if self.n_batches is None or self.per_batch is None:
            return np.zeros(self.table.totals.shape)
        planned = self.table.active & (self.table.totals > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            reuse = self.n_batches * self.per_batch / self.table.totals
        return np.where(planned, reuse, 0.0)


def summarize(catalog: Catalog, config: ProjectConfig) -> Summary:
    """Builds the summary for the configured pile-up choice and plan settings."""
    table = count_table(catalog, config, config.plan.pileup)
    per_batch = config.plan.events_per_batch_type
    n_batches: int | None = None
    problem: str | None = None
    if per_batch is not None:
        streams = table.streams
        try:
            n_batches = choose_batch_count(
                table.totals[streams[:, 0], streams[:, 1]],
                per_batch,
                config.plan.batches,
                config.plan.max_reuse,
            )
        except BalancedBatchesError as err:
            problem = str(err)
    files = catalog.files()
    size = None
    if n_batches is not None and per_batch is not None:
        totals = table.totals[table.streams[:, 0], table.streams[:, 1]]
        n_files = -(-n_batches // config.output.batches_per_file)
        files_used = table.file_ids[table.file_key >= 0]
        size = estimate_size(catalog, files_used, totals, n_batches * per_batch, n_files)
    return Summary(
        table=table,
        per_batch=per_batch,
        n_batches=n_batches,
        plan_problem=problem,
        bad_files=[(f.path, f.error or "") for f in files if f.status == "bad"],
        unmatched_files=[f.path for f in files if f.process is None],
        size=size,
    )


def write_summary_json(catalog: Catalog, summary: Summary, path: Path) -> None:
    """Writes the original `summary.json`."""
    write_json(path, summary_json(summary.table, catalog))
