"""Count candidates per region in every input file; only new or changed files are read."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from ..catalog import Catalog
from ..config import ProjectConfig
from ..engines import Engine, Reporter
from ..errors import InputFileError
from ..inputs import describe_inputs
from ..io.files import write_json
from ..io.trees import file_stat
from ..regions import Selection, build_selection
from ..rows import layout_to_json
from .count_units import CountResult, CountTask, Probed, ProbeTask, TreeProbe, count_or_probe

log = logging.getLogger(__name__)

FILES_PER_TASK = 8


def selection_fingerprint(selection: Selection, tree: str) -> str:
    """Identifies everything that decides a count; counts made under another one are stale."""
    text = json.dumps(
        {
            "tree": tree,
            "types": [e.text for e in selection.type_expressions],
            "type_names": selection.space.type_names,
            "pt": selection.pt.text,
            "abseta": selection.abseta.text,
            "pt_edges": selection.space.pt_edges,
            "abseta_edges": selection.space.abseta_edges,
        }
        # counts made before splits existed stay valid while no splits are asked for
        | ({"splits": selection.splits.describe()} if selection.splits.named else {})
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _groups(tasks: list[CountTask]) -> list[list[CountTask]]:
    """Files in groups of up to FILES_PER_TASK, at least ~64 groups when there are enough."""
    size = max(1, min(FILES_PER_TASK, len(tasks) // 64))
    return [tasks[i : i + size] for i in range(0, len(tasks), size)]


@dataclass(frozen=True)
class CountOutcome:
    """What a count run did."""

    counted: int
    unchanged: int
    failed: list[str]
    unmatched: list[str]


def count_inputs(
    catalog: Catalog,
    config: ProjectConfig,
    engine: Engine,
    workdir: Path,
    reporter: Reporter,
    on_bad_file: str = "fail",
) -> CountOutcome:
    """Counts every new or changed input file, updates the catalog and writes `counts.json`."""
    selection = build_selection(config)
    fingerprint = selection_fingerprint(selection, config.inputs.tree)
    inputs = describe_inputs(config.inputs, config.processes)
    removed = catalog.sync_file_list([(f.path, f.name, f.process, f.pileup) for f in inputs])
    catalog.set_meta("config", config.model_dump(mode="json"))
    catalog.set_meta("on_bad_file", on_bad_file)
    stale_selection = catalog.get_meta("selection") != fingerprint
    tasks = []
    unchanged = 0
    for record in catalog.files():
        if (
            not stale_selection
            and record.status == "counted"
            and record.selection_hash == fingerprint
        ):
            try:
                if file_stat(record.path) == (record.size, record.mtime):
                    unchanged += 1
                    continue
            except InputFileError:
                pass
        tasks.append(CountTask(record.id, record.path, config.inputs.tree, selection))
    if (tasks or removed) and catalog.get_meta("plan") is not None:
        log.warning("counts change: the stored plan is dropped, run 'plan' again")
        catalog.delete_meta("plan")
    counted: Iterator[list[CountResult]] = iter(())
    if tasks:
        probe, counted = _probe_beside_counting(engine, tasks, selection)
        stored = catalog.get_meta("layout")
        if probe is not None and probe.layout is not None and "types" not in (stored or {}):
            # the plan's jobs are then built whole at once: write units need the layout, and
            # export-jobs need not open an input file for it (a layout stored before branch
            # types were recorded is replaced)
            catalog.set_meta("layout", layout_to_json(probe.layout))
    catalog.set_meta("selection", fingerprint)
    failed: list[str] = []
    results = itertools.chain.from_iterable(counted)
    for result in reporter.track(results, len(tasks), "counting files"):
        if result.error is not None:
            catalog.record_bad_file(result.file_id, result.error)
            failed.append(result.error)
            continue
        assert result.counts is not None
        catalog.record_count(
            result.file_id,
            size=result.size,
            mtime=result.mtime,
            entries=result.entries,
            bytes_per_entry=result.bytes_per_entry,
            selection_hash=fingerprint,
            counts=result.counts,
        )
    unmatched = [f.path for f in inputs if f.process is None]
    for path in unmatched:
        log.warning("%s matches no process: not used", path)
    if failed and on_bad_file == "fail":  # no counts.json: the counts are not complete
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise InputFileError(failed[0] + more)
    write_counts_json(catalog, selection, workdir / "counts.json")
    return CountOutcome(len(tasks) - len(failed), unchanged, failed, unmatched)


def _probe_beside_counting(
    engine: Engine, tasks: list[CountTask], selection: Selection
) -> tuple[TreeProbe | None, Iterator[list[CountResult]]]:
    """Counts the files, and checks the selection against the first readable input tree (the
    probe), so that an expression naming a branch no file has is one configuration error, not
    a reason to call every input file bad. The probe runs beside the counting; the counts that
    come before it are held until the selection passed (none is recorded if it fails). Returns
    the probe and every count."""
    probe_task = ProbeTask(tuple(task.path for task in tasks), tasks[0].tree, selection)
    work: list[ProbeTask | list[CountTask]] = [probe_task, *_groups(tasks)]
    results = engine.map(count_or_probe, work)
    early: list[list[CountResult]] = []
    for result in results:
        if isinstance(result, Probed):
            probe = result.probe
            break
        early.append(result)
    else:
        raise RuntimeError("the engine returned no answer of the selection's probe")
    if probe is not None:
        selection.check_against(probe.branches, probe.sample, f"{probe.path}'s tree")
    rest = cast(Iterator[list[CountResult]], results)  # the one probe has come
    return probe, itertools.chain(early, rest)


def write_counts_json(catalog: Catalog, selection: Selection, path: Path) -> None:
    """The original `counts.json`: per file name its path, process, pile-up and region counts
    (with splits, each split's region counts under its name)."""
    records = {record.id: record for record in catalog.files()}
    file_ids, matrix = catalog.counts_matrix(selection.n_cells)
    n_regions = selection.space.n_regions
    data: dict[str, dict[str, object]] = {}
    for row, file_id in enumerate(file_ids):
        record = records[int(file_id)]
        if record.process is None:
            continue
        entry: dict[str, object] = {"path": record.path, "process": record.process}
        if record.pileup is not None:
            entry["pileup"] = record.pileup
        for split, name in enumerate(selection.splits.names):
            counts = matrix[row, split * n_regions : (split + 1) * n_regions]
            regions = dict(zip(selection.space.names, (int(n) for n in counts), strict=True))
            if name:
                entry[name] = regions
            else:
                entry.update(regions)
        data[record.name] = entry
    write_json(path, data)
