"""The report: PNG plots and one self-contained HTML page of the input, the plan and the output.

Sections, each left out with a line saying what to run when its stage has not run:
- input: counts per region as pT x |eta| heat maps, one per (process key, type);
- planning: reuse factor per planned region, batches under every planning rule;
- output: pT, |eta|, type and process-key distributions of the output against the input
  they were drawn from, and the count of every stream in every batch.

The input side of every comparison is the catalog's counts of the planned regions (exact,
in the same region bins, without opening an input file). Output files are read one at a
time, in chunks, with only the branches the selection and the provenance need; histograms
are filled as chunks arrive, so memory does not grow with the size of the production.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .. import __version__
from ..catalog import Catalog
from ..config import ProjectConfig
from ..engines import Reporter
from ..errors import CatalogError, ForeignFileError, PlanError
from ..io.files import atomic_path, is_url
from ..plan_model import Plan
from ..regions import RegionSpace, build_selection
from ..report_html import Image, ReportPage, Section, TotalRow, render
from .output_files import STATISTICS_JSON, foreign_message, split_directory
from .plan import CountTable, choose_batch_count, count_table, human_bytes, load_plan
from .report_outputs import load_plots, planned_input, scan_outputs

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
REUSE_LIMITS = (1, 2, 5, 10, 20, 50, 100)
HEAVY_REUSE = 10.0  # as in `summary`: regions reused more than this are marked
CHUNK_ENTRIES = 1_000_000
PROVENANCE_USED = ("bb_process_key", "bb_region", "bb_batch")


def figure_name(kind: str, *parts: str) -> str:
    """File name of a figure, a pure function of what it shows (reruns overwrite it)."""
    words = (kind, *parts)
    return "_".join(re.sub(r"[^A-Za-z0-9.+-]+", "-", word) for word in words) + ".png"


# -- input --------------------------------------------------------------------------------------


def _type_cells(space: RegionSpace, values: np.ndarray, type_index: int) -> np.ndarray:
    """The (|eta|, pT) grid of one type from a vector over all regions."""
    size = space.n_abseta * space.n_pt
    return values[type_index * size : (type_index + 1) * size].reshape(space.n_abseta, space.n_pt)


def input_section(table: CountTable, per_batch: int | None, out_dir: Path, plots: Any) -> Section:
    """Count heat maps of every (process key, type) with candidates or active in a used key."""
    space = table.space
    images = []
    for key_index, key in enumerate(table.keys):
        totals = table.totals[key_index]
        if not totals.any():
            continue
        for type_index, type_name in enumerate(space.type_names):
            cells = _type_cells(space, totals, type_index)
            active = bool(_type_cells(space, table.active[key_index], type_index).all())
            if not cells.any() and not active:
                continue
            empty = active & (cells == 0)
            sparse = active & (cells > 0) & (cells < (per_batch or 0))
            state = "" if active else " (inactive: not used)"
            title = f"{key}, {type_name}: {int(cells.sum())} candidates{state}"
            path = plots.region_heatmap(
                out_dir / figure_name("counts", key, type_name),
                cells,
                space.pt_edges,
                space.abseta_edges,
                title=title,
                colour_label="candidates",
                empty=empty,
                sparse=sparse,
                sparse_label=f"sparse (< N = {per_batch})",
                muted=not active,
            )
            images.append(Image(path, title, group=key))
    sparse_text = (
        f"sparse ones (fewer than N = {per_batch} candidates) framed in orange"
        if per_batch
        else "pass --events-per-batch-type to mark sparse cells"
    )
    return Section(
        "input",
        "Input: candidates per region",
        text=f"Candidates counted per pT x |eta| region, one map per process key and type "
        f"(log colour scale; the last column and row are the overflow bins). Empty regions of "
        f"active types are hatched with red crosses, {sparse_text}. Types a process does not "
        "use are drawn in grey.",
        images=tuple(images),
        missing="" if images else "No process key has candidates.",
    )


def batch_counts_by_rule(stream_totals: np.ndarray, per_batch: int) -> list[tuple[str, int]]:
    """Batches under the original rule and under every --max-reuse R; 0 where none is possible."""
    rules: list[tuple[str, int | None]] = [("original", None)]
    rules += [(f"R = {limit}", limit) for limit in REUSE_LIMITS]
    result = []
    for label, limit in rules:
        try:
            result.append((label, choose_batch_count(stream_totals, per_batch, None, limit)))
        except PlanError:
            result.append((label, 0))
    return result


def planning_section(
    table: CountTable,
    plan: Plan | None,
    per_batch: int | None,
    out_dir: Path,
    plots: Any,
    no_plan: str = "No plan: run 'balanced-batches plan' to see the reuse factor of every region.",
) -> Section:
    """Reuse factor per planned region and the batches every planning rule gives."""
    title = "Planning: reuse and number of batches"
    if per_batch is None:
        return Section(
            "planning", title, missing="Pass --events-per-batch-type (or run 'plan') to see these."
        )
    split = 0 if plan is None else training_split(plan)  # the split the section details
    if plan is not None:
        stream_totals = plan.stream_total[plan.streams_of_split(split)]
    else:
        streams = table.streams
        stream_totals = table.totals[streams[:, 0], streams[:, 1]]
    rules = batch_counts_by_rule(stream_totals, per_batch)
    images = [
        Image(
            plots.batches_by_strategy(
                out_dir / figure_name("batches", "by-rule"),
                [label for label, _ in rules],
                [count for _, count in rules],
                None if plan is None else int(plan.batches_of_split[split]),
                per_batch,
            ),
            "Batches under the original rule int(largest region / N) and under --max-reuse R",
        )
    ]
    rows = (("rule", "batches"), *((label, str(count)) for label, count in rules))
    if plan is None:
        return Section(
            "planning",
            title,
            images=tuple(images),
            table=rows,
            missing=no_plan,
        )
    streams = plan.streams_of_split(split)
    images.extend(_reuse_maps(plan, streams, table.space, out_dir, plots))
    reuse = plan.reuse()[streams]
    name = plan.split_names[split]
    each = (
        f"N = {plan.per_batch} candidates from each of {len(streams)} regions"
        if np.all(plan.takes[streams] == plan.per_batch)
        else f"the composition's candidates from {len(streams)} regions"
    )
    return Section(
        "planning",
        title,
        text=(f"Split {name} (the other splits are in the splits section): " if name else "")
        + f"{int(plan.batches_of_split[split])} batches of {each}; reuse factor (uses / "
        f"candidates): median {np.median(reuse):.2f}, max {reuse.max():.1f}, "
        f"{int((reuse > 1).sum())} regions reused. Regions reused more than "
        f"{HEAVY_REUSE:g} times are framed in orange.",
        images=tuple(images),
        table=rows,
    )


def training_split(plan: Plan) -> int:
    """The split the report details: the one named train (or training), else the first."""
    names = [n.lower() for n in plan.split_names]
    return next((i for i, n in enumerate(names) if n in ("train", "training")), 0)


def _reuse_maps(
    plan: Plan, streams: np.ndarray, space: RegionSpace, out_dir: Path, plots: Any
) -> list[Image]:
    reuse = np.full((len(plan.process_keys), space.n_regions), np.nan)
    reuse[plan.stream_key_index[streams], plan.stream_region[streams]] = plan.reuse()[streams]
    images = []
    for key_index in np.unique(plan.stream_key_index[streams]):
        key = plan.process_keys[int(key_index)]
        for type_index, type_name in enumerate(space.type_names):
            cells = _type_cells(space, reuse[key_index], type_index)
            if not np.isfinite(cells).any():
                continue
            title = f"{key}, {type_name}: reuse up to x{np.nanmax(cells):.1f}"
            path = plots.region_heatmap(
                out_dir / figure_name("reuse", key, type_name),
                cells,
                space.pt_edges,
                space.abseta_edges,
                title=title,
                colour_label="uses per candidate",
                sparse=np.nan_to_num(cells) > HEAVY_REUSE,
                sparse_label=f"reused > {HEAVY_REUSE:g}x",
                value_format="reuse",
            )
            images.append(Image(path, title, group=key))
    return images


# -- output -------------------------------------------------------------------------------------


def output_section(
    plan: Plan,
    outputs: list[dict[str, Any]],
    config: ProjectConfig,
    out_dir: Path,
    plots: Any,
    reporter: Reporter | None = None,
) -> Section:
    """Output against input distributions, and the counts per batch of every stream."""
    selection = build_selection(config)
    space = selection.space
    scan = scan_outputs(outputs, plan, config, selection, reporter)
    into, out = planned_input(plan, space), scan.histogram.values()
    images = []
    for variable, edges, label, summed in (
        ("pt", space.pt_edges, r"$p_T$ [GeV]", (0, 2)),
        ("abseta", space.abseta_edges, r"$|\eta|$", (0, 3)),
    ):
        into_type, out_type = into.sum(axis=summed), out.sum(axis=summed)
        shown = [t for t in range(len(space.type_names)) if into_type[t].any() or out_type[t].any()]
        path = plots.binned_comparison(
            out_dir / figure_name("output", variable),
            edges,
            [into_type[t] for t in shown],
            [out_type[t] for t in shown],
            [space.type_names[t] for t in shown],
            label,
            f"{label} per type, input vs output (normalised)",
        )
        images.append(Image(path, f"{variable} per type: fraction per bin, input vs output"))
    categories: list[tuple[str, tuple[str, ...], tuple[int, ...]]] = [
        ("type", space.type_names, (0, 2, 3)),
        ("key", plan.process_keys, (1, 2, 3)),
    ]
    for axis, names, axes_summed in categories:
        into_axis, out_axis = into.sum(axis=axes_summed), out.sum(axis=axes_summed)
        shown = [i for i in range(len(names)) if into_axis[i] or out_axis[i]]
        title = "process key" if axis == "key" else "type"
        path = plots.category_comparison(
            out_dir / figure_name("output", "process-keys" if axis == "key" else "types"),
            [names[i] for i in shown],
            into_axis[shown],
            out_axis[shown],
            title,
            f"Candidates per {title}, input vs output (normalised)",
        )
        images.append(Image(path, f"fraction of candidates per {title}, input vs output"))
    counts = scan.batches
    if counts.batches:
        path = plots.per_batch_counts(
            out_dir / figure_name("output", "per-batch"),
            counts.minimum,
            counts.mean,
            counts.maximum,
            plan.per_batch,
            counts.batches,
        )
        images.append(Image(path, "min, mean and max count of every stream over the batches"))
        seen = counts.seen > 0
        planned = plan.takes[seen]
        flat = bool(
            (counts.minimum[seen] == planned).all() and (counts.maximum[seen] == planned).all()
        )
        verdict = "every stream has exactly" if flat else "NOT every stream has exactly"
    else:
        verdict = "no batch could be read"
    return Section(
        "output",
        "Output: balance of the batches",
        table=composition_rows(plan, counts, space.type_names),
        text=f"{scan.files} of {plan.n_output_files} output files read, {scan.rows} rows in "
        f"{counts.batches} batches: {verdict} "
        + (
            f"N = {plan.per_batch} candidates"
            if np.all(plan.takes == plan.per_batch)
            else "the candidates its composition asks"
        )
        + " in every batch. "
        "Input: the counted candidates of the planned regions, which the batches draw from.",
        images=tuple(images),
        wide=True,
        problems=tuple(scan.problems[:20]),
        missing=""
        if scan.files == plan.n_output_files
        else "Not every output file exists: run 'balanced-batches run' to make the rest.",
    )


def composition_rows(
    plan: Plan, counts: Any, type_names: tuple[str, ...]
) -> tuple[tuple[str, ...], ...]:
    """Candidates per batch of every type (of every split), as planned (the composition's
    target) and as found in the outputs read (mean over their batches)."""
    named = plan.split_names != ("",)
    rows = [(*(("split",) if named else ()), "type", "planned per batch", "found per batch")]
    cells_per_type = len(plan.region_names) // len(type_names)
    stream_type = plan.stream_region // cells_per_type
    for split, name in enumerate(plan.split_names):
        for type_index, type_name in enumerate(type_names):
            streams = np.flatnonzero((plan.splits == split) & (stream_type == type_index))
            if not len(streams):
                continue
            seen = streams[counts.seen[streams] > 0]
            found = f"{counts.mean[seen].sum():.2f}" if len(seen) == len(streams) else "-"
            planned = str(int(plan.takes[streams].sum()))
            rows.append((*((name,) if named else ()), type_name, planned, found))
    return tuple(rows)


# -- splits and training statistics ---------------------------------------------------------------

STATISTICS_SHOWN = ("mean", "std", "min", "max", "0.01", "0.5", "0.99")


def split_sections(
    plan: Plan, outputs: list[dict[str, Any]], config: ProjectConfig
) -> list[Section]:
    """Each split's batches, reuse and rows written (with splits), and the training
    statistics of the split named `train` (or `training`), else of the first split."""
    sections = []
    named = plan.split_names != ("",)
    if named:
        reuse = plan.reuse()
        files = plan.output_files
        written = {int(o["index"]): int(o["entries"]) for o in outputs}
        rows = [("split", "batches", "regions", "reuse median", "reuse max", "distinct", "rows")]
        for split, name in enumerate(plan.split_names):
            streams = plan.streams_of_split(split)
            ours = reuse[streams]
            needed = plan.stream_needed[streams]
            distinct = float(np.minimum(plan.stream_total[streams], needed).sum())
            in_split = np.flatnonzero(files.split == split)
            rows.append(
                (
                    name,
                    str(int(plan.batches_of_split[split])),
                    str(len(streams)),
                    f"{np.median(ours):.2f}" if len(ours) else "-",
                    f"{ours.max():.1f}" if len(ours) else "-",
                    f"{distinct / max(float(needed.sum()), 1):.1%}",
                    str(sum(written.get(int(i), 0) for i in in_split)),
                )
            )
        sections.append(
            Section(
                "splits",
                "Splits by event",
                text="Every split is balanced on its own into its own directory; no event is in "
                "two splits. Distinct: distinct candidates among the rows the split uses.",
                table=tuple(rows),
            )
        )
    first = plan.split_names[training_split(plan)]
    path = Path(split_directory(config.output.directory, first)) / STATISTICS_JSON
    title = f"Training statistics ({first})" if named else "Training statistics"
    if is_url(config.output.directory) or not path.is_file():
        missing = "statistics.json is written by 'run' (local output directories are shown)."
        return [*sections, Section("statistics", title, missing=missing)]
    published = json.loads(path.read_text())
    table = [("branch", *STATISTICS_SHOWN)]
    for branch, figures in published["branches"].items():
        values = [figures.get(key, figures["quantiles"].get(key)) for key in STATISTICS_SHOWN]
        table.append((branch, *("-" if v is None else f"{v:.4g}" for v in values)))
    types = ", ".join(f"{name} {count}" for name, count in published["types"].items())
    sections.append(
        Section(
            "statistics",
            title,
            text=f"{published['rows']} rows ({types}), from {path}: the mean, standard deviation, "
            "extremes and quantiles of every branch over its elements.",
            table=tuple(table),
        )
    )
    return sections


# -- totals and the page ------------------------------------------------------------------------


def totals_rows(
    catalog: Catalog,
    table: CountTable,
    plan: Plan | None,
    outputs: list[dict[str, Any]],
    n_cells: int,
) -> list[TotalRow]:
    """The numbers of the totals table, straight from the catalog (`n_cells`: regions times
    splits, as counted)."""
    files = catalog.files()
    statuses = [f.status for f in files]
    _, matrix = catalog.counts_matrix(n_cells)
    used_keys = table.totals.sum(axis=1) > 0
    rows = [
        TotalRow("files_listed", "files listed", len(files)),
        TotalRow("files_counted", "files counted", statuses.count("counted")),
        TotalRow("files_skipped", "files skipped (unreadable)", statuses.count("bad")),
        TotalRow("files_pending", "files not counted yet", statuses.count("pending")),
        TotalRow(
            "files_unmatched", "files matching no process", sum(f.process is None for f in files)
        ),
        TotalRow(
            "entries",
            "entries in counted files",
            sum(f.entries or 0 for f in files if f.status == "counted"),
        ),
        TotalRow("candidates", "candidates in regions (counted files)", int(matrix.sum())),
        TotalRow("candidates_keys", "candidates of the process keys", int(table.totals.sum())),
        TotalRow(
            "candidates_active",
            "candidates in active regions",
            int(table.totals[table.active].sum()),
        ),
        TotalRow("process_keys", "process keys with candidates", int(used_keys.sum())),
        TotalRow("active_regions", "active regions with candidates", len(table.streams)),
        TotalRow(
            "empty_active_regions",
            "active regions without candidates (keys with candidates)",
            int((table.active & (table.totals == 0))[used_keys].sum()),
        ),
    ]
    if plan is not None:
        reuse = plan.reuse()
        rows += [
            TotalRow("batches", "batches", plan.n_batches),
            TotalRow("per_batch", "candidates per region per batch (N)", plan.per_batch),
            TotalRow("streams", "planned regions (streams)", plan.n_streams),
            TotalRow(
                "batch_size",
                "candidates per batch" + (" (training split)" if plan.split_names[0] else ""),
                int(plan.rows_per_batch[training_split(plan)]),
            ),
            TotalRow("input_files_read", "input files the plan reads", len(plan.read_files)),
            TotalRow("output_files_planned", "output files planned", plan.n_output_files),
            TotalRow("reuse_max", "largest reuse factor", float(reuse.max()), f"{reuse.max():.2f}"),
        ]
    if outputs:
        size = sum(int(o["size"]) for o in outputs)
        rows += [
            TotalRow("output_files", "output files written", len(outputs)),
            TotalRow("output_entries", "output entries", sum(int(o["entries"]) for o in outputs)),
            TotalRow("output_size", "output size", size, human_bytes(size)),
        ]
    return rows


class _ConfigDumper(yaml.SafeDumper):
    """Block mappings, lists on one line (`pt: [[20.0, 60.0, 5.0]]`), as people write them."""


def _flow_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


_ConfigDumper.add_representer(list, _flow_list)


def config_yaml(data: dict[str, Any]) -> str:
    """The configuration as YAML, in the order of its keys."""
    return yaml.dump(data, Dumper=_ConfigDumper, sort_keys=False, width=100)


def write_report(
    catalog: Catalog,
    config: ProjectConfig,
    out_dir: Path,
    *,
    input_only: bool = False,
    overwrite: bool = False,
    reporter: Reporter | None = None,
) -> Path:
    """Writes the PNG plots and `report.html` into `out_dir`; returns the HTML path.

    `input_only` leaves out the plan and the outputs (what `summary --plots` writes). The
    report is made aside, then moved in: files of an earlier report that this one does not
    make again are deleted, and files this tool did not write are never replaced (unless
    `overwrite`).
    """
    if not any(record.status == "counted" for record in catalog.files()):
        raise CatalogError(
            f"{catalog.path.parent}: no counted files; run 'balanced-batches count' first"
        )
    with tempfile.TemporaryDirectory(prefix="balanced-batches-report-") as building:
        made = _make_report(catalog, config, Path(building), input_only, reporter)
        _publish(catalog, made, out_dir, overwrite)
    path = out_dir / REPORT_NAME
    log.info("report: %s", path)
    return path


def _publish(catalog: Catalog, made: Path, out_dir: Path, overwrite: bool) -> None:
    """Moves a report made in `made` into `out_dir` (see `write_report`)."""
    names = sorted(path.name for path in made.iterdir())
    ours = catalog.written("report")
    targets = [out_dir / name for name in names]
    foreign = [str(t) for t in targets if (t.exists() or t.is_symlink()) and str(t) not in ours]
    if foreign and not overwrite:
        raise ForeignFileError(foreign_message(foreign, str(out_dir), "--output"))
    for name, target in zip(names, targets, strict=True):
        with atomic_path(target) as temporary:
            shutil.copyfile(made / name, temporary)
    catalog.record_written("report", [(str(t), t.stat().st_size) for t in targets])
    stale = [x for x in ours if Path(x).parent == out_dir and Path(x).name not in names]
    for location in stale:
        if _unchanged(Path(location), ours[location]):
            Path(location).unlink()
    catalog.forget_written(stale)


def _unchanged(path: Path, size: int | None) -> bool:
    """True if `path` is still a regular file of the size this tool wrote (a file changed
    since is the user's now, and is left alone)."""
    try:
        stat = path.lstat()
    except FileNotFoundError:
        return False
    return os.path.isfile(path) and not path.is_symlink() and stat.st_size == size


def _make_report(
    catalog: Catalog,
    config: ProjectConfig,
    out_dir: Path,
    input_only: bool,
    reporter: Reporter | None,
) -> Path:
    """Writes the report's files into `out_dir`, a new directory; returns it."""
    plots = load_plots()
    plan: Plan | None = None
    if not input_only:
        try:
            plan = load_plan(catalog)
        except CatalogError:
            log.info("no plan: the report shows the input only")
    table = count_table(catalog, config, config.plan.pileup)
    per_batch = plan.per_batch if plan is not None else config.plan.events_per_batch_type
    sections = [input_section(table, per_batch, out_dir, plots)]
    outputs: list[dict[str, Any]] = []
    if input_only:
        missing = "Written by 'summary --plots': run 'balanced-batches report' for the plan and "
        sections.append(
            planning_section(table, None, per_batch, out_dir, plots, missing + "reuse factors.")
        )
        sections.append(Section("output", "Output", missing=missing + "the outputs."))
    else:
        sections.append(planning_section(table, plan, per_batch, out_dir, plots))
        outputs = sorted(
            (o for r in catalog.unit_results("write").values() for o in r["outputs"]),
            key=lambda o: int(o["index"]),
        )
        if plan is None:
            missing = "No plan: run 'balanced-batches plan' and 'run' to see the outputs."
        elif not outputs:
            missing = "No output files yet: run 'balanced-batches run' to see the outputs."
        else:
            missing = ""
            sections.append(output_section(plan, outputs, config, out_dir, plots, reporter))
        if plan is not None:
            sections += split_sections(plan, outputs, config)
        if missing:
            sections.append(Section("output", "Output: balance of the batches", missing=missing))
    stored = None if plan is None else catalog.get_meta("plan_config")
    page = ReportPage(
        title="balanced-batches report",
        subtitle=f"{catalog.path.parent} - pile-up {config.plan.pileup} - balanced-batches "
        f"{__version__} - {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        totals=tuple(totals_rows(catalog, table, plan, outputs, build_selection(config).n_cells)),
        sections=tuple(sections),
        bad_files=tuple((f.path, f.error or "") for f in catalog.files() if f.status == "bad"),
        config_yaml=config_yaml(stored or config.model_dump(mode="json")),
        config_source="The configuration stored with the plan."
        if stored
        else "The configuration used for this report.",
    )
    (out_dir / REPORT_NAME).write_text(render(page), encoding="utf-8")
    return out_dir
