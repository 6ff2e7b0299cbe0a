"""Terminal output: progress bars, summary tables and logging set-up (the CLI's edge)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from rich.console import Console, RenderableType
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .regions import bin_label

if TYPE_CHECKING:  # the summary stage imports uproot, which commands without I/O skip
    from .stages.summary import Summary
    from .workdir import Status

T = TypeVar("T")
_log = logging.getLogger("balanced_batches")
console = Console(stderr=True)
# wide enough for a pT x |eta| table when the output goes to a file or a pipe
stdout = Console(width=None if sys.stdout.isatty() else 200)


def configure_logging(verbose: bool) -> None:
    """Rich log lines on a terminal, plain lines in batch logs."""
    level = logging.DEBUG if verbose else logging.INFO
    if sys.stderr.isatty():
        handler: logging.Handler = RichHandler(console=console, show_path=False, show_time=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("balanced_batches")
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("distributed", "tornado", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


class RateColumn(ProgressColumn):
    """Items per second."""

    def render(self, task: Task) -> Text:
        """The current rate, or nothing before the first item."""
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f}/s", style="progress.data.speed")


class RichReporter:
    """A progress bar with counts, rate and remaining time on a terminal; elsewhere (batch
    logs, pipes) a log line every `log_interval_s` seconds and one at the end."""

    def __init__(self, log_interval_s: float = 10.0) -> None:
        self.log_interval_s = log_interval_s

    def track(self, results: Iterable[T], total: int, description: str) -> Iterator[T]:
        """Passes results through while showing progress."""
        if total == 0:
            return
        if not console.is_terminal:
            yield from self._logged(results, total, description)
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(description, total=total)
            for result in results:
                progress.advance(task)
                yield result
        _log.info("%s: %d done", description, total)

    def _logged(self, results: Iterable[T], total: int, description: str) -> Iterator[T]:
        start = time.monotonic()
        next_line = start + self.log_interval_s
        done = 0
        for result in results:
            done += 1
            now = time.monotonic()
            if now >= next_line and done < total:
                _log.info("%s: %d of %d done (%.0f s)", description, done, total, now - start)
                next_line = now + self.log_interval_s
            yield result
        _log.info("%s: %d done in %.0f s", description, done, time.monotonic() - start)


def summary_lines(summary: Summary, shown: str = "counts") -> list[RenderableType]:
    """What `summary` prints: the tables (cells: `counts`, `reuse` factors, candidates
    `per_batch` or the `distinct` candidates' share of the rows), skipped and unmatched files,
    the batches line; with splits, each split's tables and batches line."""
    lines: list[RenderableType] = []
    for part in summary.splits or (summary,):
        if part.table.split:
            lines.append(f"[bold]split {escape(part.table.split)}[/]")
        lines += summary_tables(part, shown)
    lines += [f"[red]skipped[/] {escape(error)}" for _path, error in summary.bad_files]
    lines += [f"[yellow]matches no process[/] {escape(p)}" for p in summary.unmatched_files]
    for part in summary.splits or (summary,):
        label = f"split {escape(part.table.split)}: " if part.table.split else ""
        lines.append(label + batches_line(part))
    return lines


def status_lines(state: Status) -> list[RenderableType]:
    """What `status` prints: input files by state, the jobs table, interrupted and failed
    units."""
    lines: list[RenderableType] = []
    if state.folded_records:
        records = escape(state.records or "")
        lines.append(f"took {state.folded_records} batch-job records from {records}")
    lines.append("input files: " + ", ".join(f"{n} {s}" for s, n in state.file_states.items()))
    lines += [f"  [red]bad[/] {escape(error)}" for _path, error in state.bad_files]
    if not state.units:
        return [*lines, "no plan: run 'balanced-batches plan'"]
    table = Table(title="jobs", title_justify="left")
    columns = ("pending", "running", "interrupted", "done", "failed")
    for column in ("kind", *columns):
        table.add_column(column, justify="right")
    for kind in ("read", "write"):
        counts = state.counts(kind)
        table.add_row(kind, *(str(counts[column]) for column in columns))
    lines.append(table)
    if state.holder is not None and any(row.status == "running" for row in state.units):
        lines.append(f"in progress: {escape(state.holder)}")
    if state.interrupted:
        last = max(row.started or "" for row in state.interrupted)
        lines.append(
            f"  [yellow]interrupted[/] {len(state.interrupted)} units handed out at "
            f"{last or 'unknown'} by a command that is no longer running; 'run' redoes them"
        )
    lines += [
        f"  [red]failed[/] {row.kind} unit {row.unit} ({row.attempts} attempts): "
        + escape(row.error or "")
        for row in state.failed
    ]
    return lines


def summary_tables(summary: Summary, shown: str = "counts") -> list[Table]:
    """One table per process key: rows type x |eta| bin, columns pT bins."""
    table_data = summary.table
    space = table_data.space
    reuse = summary.reuse()
    distinct = summary.unique_fraction()
    takes = summary.takes
    sparse_limit = summary.per_batch or 0
    tables = []
    for key_index, key in enumerate(table_data.keys):
        totals = table_data.totals[key_index]
        if not totals.any():
            continue
        active = table_data.active[key_index]
        planned_reuse = reuse[key_index][active & (totals > 0)]
        title = f"{key}: {int(totals.sum())} candidates"
        if planned_reuse.size:
            title += f", reuse up to x{planned_reuse.max():.1f}"
        table = Table(title=title, title_justify="left", header_style="bold", caption=_CAPTION)
        table.add_column("type", no_wrap=True)
        table.add_column("|eta| \\ pT", no_wrap=True)
        for pt_bin in range(space.n_pt):
            table.add_column(bin_label(space.pt_edges, pt_bin), justify="right")
        for type_index, type_name in enumerate(space.type_names):
            for abseta_bin in range(space.n_abseta):
                cells = []
                for pt_bin in range(space.n_pt):
                    region = space.region_index(type_index, abseta_bin, pt_bin)
                    count = int(totals[region])
                    text = str(count)
                    if shown == "reuse" and active[region] and count:
                        text = f"x{reuse[key_index, region]:.1f}"
                    if shown == "per_batch" and takes is not None:
                        text = str(int(takes[key_index, region]))
                    if shown == "distinct" and active[region] and count:
                        text = f"{distinct[key_index, region]:.0%}"
                    cells.append(
                        _cell(
                            text,
                            count,
                            float(reuse[key_index, region]),
                            bool(active[region]),
                            sparse_limit,
                        )
                    )
                label = (
                    type_name
                    if active[space.region_index(type_index, 0, 0)]
                    else f"[dim]{type_name} (inactive)[/]"
                )
                table.add_row(
                    label if abseta_bin == 0 else "",
                    bin_label(space.abseta_edges, abseta_bin),
                    *cells,
                )
        tables.append(table)
    return tables


_CAPTION = (
    "columns and rows start at the bin's lower edge; last = overflow; red: empty, yellow: sparse"
)


def _cell(text: str, count: int, reuse: float, active: bool, sparse_limit: int) -> str:
    if not active:
        return f"[dim]{text}[/]"
    if count == 0:
        return "[bold red]0[/]"
    if count < sparse_limit or reuse > 10:
        return f"[yellow]{text}[/]"
    return text


def space_types(summary: Summary) -> tuple[str, ...]:
    """The type names of a summary's regions."""
    return summary.table.space.type_names


def batches_line(summary: Summary) -> str:
    """What the plan settings would give."""
    if summary.per_batch is None:
        return "pass --events-per-batch-type to see the number of batches and reuse"
    if summary.n_batches is None:
        return f"no plan possible: {summary.plan_problem}"
    reuse = summary.reuse()
    planned = reuse[reuse > 0]
    if not planned.size:
        return f"{summary.n_batches} batches, but no region planned"
    uses = (summary.takes * summary.n_batches)[reuse > 0] if summary.takes is not None else 1
    unique = summary.unique_fraction()[reuse > 0]
    distinct = float(np.sum(unique * uses) / np.sum(np.broadcast_to(uses, unique.shape)))
    assert summary.takes is not None
    per_type = summary.takes.reshape(len(summary.takes), len(space_types(summary)), -1)
    holds = ", ".join(
        f"{name} {int(per_type[:, t].sum())}" for t, name in enumerate(space_types(summary))
    )
    uniform = bool(np.all(summary.takes[summary.takes > 0] == summary.per_batch))
    each = f"{summary.per_batch} candidates per region" if uniform else "candidates per region"
    line = (
        f"{summary.n_batches} batches of {each} "
        f"(a batch holds {int(summary.takes.sum())}: {holds}"
        + ("" if uniform else "; --per-batch shows each region's")
        + "); "
        f"{planned.size} regions planned, reuse median x{np.median(planned):.2f}, "
        f"max x{planned.max():.1f}; {int((planned > 1).sum())} regions reused; "
        f"distinct candidates: {distinct:.0%} of the rows, "
        f"{unique.min():.1%} in the most reused region"
    )
    if summary.size is not None:
        line += f"\nthe plan would write {summary.size.describe()}"
    return line
