"""Make the planned batches: every input file is read once, every output written once.

Work comes in two kinds of unit. A *read unit* reads one input file in chunks,
picks the planned candidates (as often as the plan reuses them) and sends each
row to the *write unit* of its output file through intermediate parts. A write
unit gathers its rows, puts them in canonical order, shuffles each output file
with its own seeded generator and writes it under a temporary name, renamed when
complete. Results are therefore identical whatever ran where, and in what order.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from .. import __version__
from ..catalog import Catalog
from ..config import ProjectConfig
from ..engines import Engine, Reporter
from ..errors import BalancedBatchesError, CatalogError, InputFileError
from ..plan_model import Plan, member_uses
from ..regions import Selection, build_selection
from ..shards import (
    part_path,
    read_unit_parts,
    remove_parts_of_read_unit,
    unit_directory,
    write_part,
)
from ..storage import (
    BranchLayout,
    adler32_of,
    branch_layout,
    file_stat,
    open_tree,
    remove_temporaries,
    write_json,
)
from ..writers import EXTENSIONS, WRITERS, OutputSpec
from .count import read_selection_arrays

log = logging.getLogger(__name__)

PROVENANCE = ("bb_process_key", "bb_region", "bb_source_file", "bb_source_entry", "bb_batch")
_STREAM, _SLOT = "bb_stream_", "bb_slot_"
FLUSH_BYTES = 256 * 2**20


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
    per_batch: int
    batches_per_file: int
    files_per_unit: int
    scratch: str
    chunk_bytes: int
    counted_stat: tuple[int, float] | None = None  # (size, mtime) when counted


@dataclass(frozen=True)
class ReadResult:
    """What a read unit did, or why it failed."""

    unit: int
    rows: int = 0
    layout: BranchLayout | None = None
    error: str | None = None


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


def output_path(directory: str, name: str, file_format: str, index: int) -> Path:
    """The path of output file `index` (pure: reruns find the same names)."""
    return Path(directory) / (name.format(index=index) + EXTENSIONS[file_format])


def remove_stale_outputs(directory: str, name: str, file_format: str, n_files: int) -> list[Path]:
    """Deletes output files of an earlier plan whose index this plan does not reach."""
    prefix, _, suffix = name.partition("{index}")
    pattern = re.compile(
        re.escape(prefix) + r"(\d+)" + re.escape(suffix + EXTENSIONS[file_format]) + "$"
    )
    removed = []
    for path in Path(directory).glob("*" + EXTENSIONS[file_format]):
        match = pattern.match(path.name)
        if match and int(match.group(1)) >= n_files:
            path.unlink()
            removed.append(path)
    return removed


# -- read units ---------------------------------------------------------------


def read_task(
    plan: Plan,
    unit: int,
    path: str,
    config: ProjectConfig,
    scratch: Path,
    counted_stat: tuple[int, float] | None = None,
) -> ReadTask:
    """The read task of the plan's `unit`-th input file."""
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
        round_keys=np.array([plan.keys_of(int(s)) for s in streams], dtype=np.uint64),
    )
    return ReadTask(
        unit=unit,
        file_id=file_id,
        path=path,
        tree=config.inputs.tree,
        selection=build_selection(config),
        share=share,
        needed=plan.n_batches * plan.per_batch,
        per_batch=plan.per_batch,
        batches_per_file=plan.batches_per_file,
        files_per_unit=plan.files_per_unit,
        scratch=str(scratch),
        chunk_bytes=config.execution.chunk_mb * 2**20,
        counted_stat=counted_stat,
    )


@dataclass(frozen=True)
class _Uses:
    """Every use of the file's candidates, sorted by entry."""

    entry: np.ndarray
    stream: np.ndarray
    region: np.ndarray
    key_index: np.ndarray
    batch: np.ndarray
    slot: np.ndarray


def _plan_uses(task: ReadTask, regions: np.ndarray) -> _Uses:
    share = task.share
    found = np.bincount(regions[regions >= 0], minlength=task.selection.space.n_regions)
    changed = np.flatnonzero(found[share.regions] != share.counts)
    if changed.size:
        member = int(changed[0])
        raise InputFileError(
            f"{task.path}: changed since it was counted (region "
            f"{task.selection.space.name(int(share.regions[member]))}: "
            f"{found[share.regions[member]]} candidates, plan expects {share.counts[member]}); "
            "run 'count' and 'plan' again"
        )
    order = np.argsort(regions, kind="stable")
    starts = np.searchsorted(regions[order], share.regions, side="left")
    parts: dict[str, list[np.ndarray]] = {name: [] for name in _Uses.__dataclass_fields__}
    for member in range(len(share.streams)):
        ranks, positions = member_uses(
            int(share.offsets[member]),
            int(share.counts[member]),
            int(share.totals[member]),
            task.needed,
            share.round_keys[member],
        )
        entries = order[starts[member] : starts[member] + share.counts[member]]
        parts["entry"].append(entries[ranks])
        parts["stream"].append(np.full(len(ranks), share.streams[member], dtype=np.int64))
        parts["region"].append(np.full(len(ranks), share.regions[member], dtype=np.int32))
        parts["key_index"].append(np.full(len(ranks), share.key_index[member], dtype=np.int32))
        parts["batch"].append(positions // task.per_batch)
        parts["slot"].append(positions % task.per_batch)
    merged = {name: np.concatenate(values) for name, values in parts.items()}
    by_entry = np.argsort(merged["entry"], kind="stable")
    return _Uses(**{name: values[by_entry] for name, values in merged.items()})


def read_input(task: ReadTask) -> ReadResult:
    """Runs one read unit; user-caused failures come back in the result."""
    try:
        return _read_input(task)
    except BalancedBatchesError as err:
        return ReadResult(task.unit, error=str(err))
    except (OSError, ValueError) as err:
        return ReadResult(task.unit, error=f"{task.path}: cannot read: {err}")


def _read_input(task: ReadTask) -> ReadResult:
    scratch = Path(task.scratch)
    remove_parts_of_read_unit(scratch, task.unit)
    if task.counted_stat is not None and file_stat(task.path) != task.counted_stat:
        raise InputFileError(
            f"{task.path}: changed since it was counted (size or modification time); "
            "run 'count' and 'plan' again"
        )
    tree = open_tree(task.path, task.tree)
    layout = branch_layout(tree, task.path)
    n_entries = int(tree.num_entries)
    selection_values = read_selection_arrays(tree, task.path, task.selection, 0, n_entries)
    uses = _plan_uses(task, task.selection.assign(selection_values))
    others = [name for name in layout.data_branches if name not in selection_values]
    bytes_per_entry = max(
        sum(tree[name].uncompressed_bytes for name in others) / max(n_entries, 1), 1.0
    )
    step = max(1, int(task.chunk_bytes // bytes_per_entry))
    write_unit = uses.batch // task.batches_per_file // task.files_per_unit
    buffers: dict[int, list[ak.Array]] = {}
    parts = {"count": 0, "bytes": 0}

    def flush() -> None:
        for unit, pieces in sorted(buffers.items()):
            write_part(part_path(scratch, unit, task.unit, parts["count"]), ak.concatenate(pieces))
            parts["count"] += 1
        buffers.clear()
        parts["bytes"] = 0

    for start in range(0, n_entries, step):
        stop = min(start + step, n_entries)
        first, last = np.searchsorted(uses.entry, [start, stop])
        if first == last:
            continue  # nothing planned here: these baskets are never read
        picked = slice(first, last)
        entries = uses.entry[picked]
        columns: dict[str, Any] = {}
        if others:
            chunk = tree.arrays(others, entry_start=start, entry_stop=stop, library="ak")
            rows = chunk[entries - start]
            columns.update({name: rows[name] for name in others})
        columns.update({name: values[entries] for name, values in selection_values.items()})
        columns.update(
            {
                "bb_process_key": uses.key_index[picked],
                "bb_region": uses.region[picked],
                "bb_source_file": np.full(last - first, task.file_id, dtype=np.int32),
                "bb_source_entry": entries.astype(np.int64),
                "bb_batch": uses.batch[picked],
                _STREAM: uses.stream[picked],
                _SLOT: uses.slot[picked],
            }
        )
        table = ak.zip(columns, depth_limit=1)
        units = write_unit[picked]
        order = np.argsort(units, kind="stable")
        bounds = np.flatnonzero(np.diff(units[order])) + 1
        for group in np.split(order, bounds):
            buffers.setdefault(int(units[group[0]]), []).append(table[group])
        parts["bytes"] += int(table.layout.nbytes)
        if parts["bytes"] > FLUSH_BYTES:
            flush()
    flush()
    return ReadResult(task.unit, rows=len(uses.entry), layout=layout)


# -- write units --------------------------------------------------------------


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


def write_outputs(task: WriteTask) -> WriteResult:
    """Runs one write unit; user-caused failures come back in the result."""
    try:
        return _write_outputs(task)
    except BalancedBatchesError as err:
        return WriteResult(task.unit, error=str(err))
    except OSError as err:
        return WriteResult(
            task.unit,
            error=f"cannot write output files into {task.directory}: {err.strerror or err}",
        )


def _write_outputs(task: WriteTask) -> WriteResult:
    first_batch = task.first * task.batches_per_file
    stop_batch = min(task.stop * task.batches_per_file, task.n_batches)
    expected = (stop_batch - first_batch) * task.n_streams * task.per_batch
    rows = read_unit_parts(Path(task.scratch), task.unit)
    found = 0 if rows is None else len(rows)
    if found != expected:
        raise CatalogError(
            f"write unit {task.unit}: {found} rows arrived, {expected} planned; "
            "some read units are missing or unfinished"
        )
    assert rows is not None
    key = (
        np.asarray(rows["bb_batch"]) * task.n_streams + np.asarray(rows[_STREAM])
    ) * task.per_batch + np.asarray(rows[_SLOT])
    rows = rows[np.argsort(key, kind="stable")]
    batches = np.asarray(rows["bb_batch"])
    outputs = []
    for index in range(task.first, task.stop):
        lo, hi = np.searchsorted(
            batches, [index * task.batches_per_file, (index + 1) * task.batches_per_file]
        )
        shuffle = np.random.default_rng([task.seed, index, 0x5EED]).permutation(hi - lo)
        selected = rows[lo:hi][shuffle]
        path = output_path(task.directory, task.name, task.spec.format, index)
        WRITERS[task.spec.format](path, selected, task.layout, PROVENANCE, task.spec)
        outputs.append(
            {
                "index": index,
                "path": str(path),
                "entries": int(hi - lo),
                "size": path.stat().st_size,
                "adler32": adler32_of(path),
            }
        )
    return WriteResult(task.unit, outputs=outputs)


# -- orchestration ------------------------------------------------------------


def scratch_directory(config: ProjectConfig, workdir: Path) -> Path:
    """Where intermediate parts live."""
    return Path(config.execution.scratch) if config.execution.scratch else workdir / "scratch"


def provenance_record(plan: Plan, catalog: Catalog, config: ProjectConfig) -> dict[str, Any]:
    """What the provenance branches' integers mean, plus the configuration and version."""
    wanted = {int(i) for i in plan.read_files}
    return {
        "version": __version__,
        "process_keys": list(plan.process_keys),
        "regions": list(plan.region_names),
        "source_files": {str(r.id): r.path for r in catalog.files() if r.id in wanted},
        "seed": plan.seed,
        "plan_created": plan.created,
        "events_per_batch_type": plan.per_batch,
        "batches": plan.n_batches,
        "batches_per_file": plan.batches_per_file,
        "config": config.model_dump(mode="json"),
    }


@dataclass(frozen=True)
class Jobs:
    """Every unit of work of a plan, in job order: read units first, then write units."""

    reads: list[ReadTask]
    writes: list[WriteTask] | None  # None until the branch layout is known

    def __len__(self) -> int:
        return len(self.reads) + (len(self.writes) if self.writes is not None else 0)


def _layout(catalog: Catalog) -> BranchLayout | None:
    stored = catalog.get_meta("layout")
    if stored is None:
        return None
    return BranchLayout(
        scalars=tuple(stored["scalars"]),
        groups=tuple(_group(g) for g in stored["groups"]),
        singles=tuple(stored["singles"]),
        counters=tuple(stored["counters"]),
    )


def _group(data: dict[str, Any]) -> Any:
    from ..storage import BranchGroup

    return BranchGroup(data["outer"], data["counter"], tuple(data["members"]))


def _store_layout(catalog: Catalog, layout: BranchLayout, path: str) -> None:
    stored = _layout(catalog)
    if stored is not None and set(stored.data_branches) != set(layout.data_branches):
        missing = sorted(set(stored.data_branches) ^ set(layout.data_branches))[:5]
        raise InputFileError(f"{path}: branches differ from the other input files: {missing}")
    if stored is None:
        catalog.set_meta(
            "layout",
            {
                "scalars": list(layout.scalars),
                "groups": [
                    {"outer": g.outer, "counter": g.counter, "members": list(g.members)}
                    for g in layout.groups
                ],
                "singles": list(layout.singles),
                "counters": list(layout.counters),
            },
        )


def build_jobs(catalog: Catalog, plan: Plan, config: ProjectConfig, workdir: Path) -> Jobs:
    """Enumerates the plan's units of work (the only place that does)."""
    scratch = scratch_directory(config, workdir)
    records = {record.id: record for record in catalog.files()}
    reads = []
    for unit, file_id in enumerate(plan.read_files):
        record = records[int(file_id)]
        stat = None if record.size is None else (record.size, record.mtime or 0.0)
        reads.append(read_task(plan, unit, record.path, config, scratch, stat))
    layout = _layout(catalog)
    if layout is None:
        return Jobs(reads, None)
    provenance = _provenance_text(plan, catalog, config)
    writes = [
        write_task(plan, unit, config, scratch, layout, provenance)
        for unit in range(plan.n_write_units)
    ]
    return Jobs(reads, writes)


def _provenance_text(plan: Plan, catalog: Catalog, config: ProjectConfig) -> str:
    import json

    record = provenance_record(plan, catalog, config)
    record.pop("config")
    record.pop("plan_created")  # inside the files only what the plan and seed decide
    return json.dumps(record)


def _record_read(catalog: Catalog, result: ReadResult, path: str) -> None:
    if result.error is not None:
        catalog.set_unit("read", result.unit, "failed", error=result.error)
        return
    assert result.layout is not None
    _store_layout(catalog, result.layout, path)
    catalog.set_unit("read", result.unit, "done", result={"rows": result.rows})


def _record_write(catalog: Catalog, result: WriteResult) -> None:
    if result.error is not None:
        catalog.set_unit("write", result.unit, "failed", error=result.error)
    else:
        catalog.set_unit("write", result.unit, "done", result={"outputs": result.outputs})


@dataclass(frozen=True)
class RunOutcome:
    """What `run` produced."""

    outputs: list[dict[str, Any]]
    directory: str


def run_plan(
    catalog: Catalog,
    plan: Plan,
    config: ProjectConfig,
    engine: Engine,
    workdir: Path,
    reporter: Reporter,
    keep_scratch: bool = False,
) -> RunOutcome:
    """Makes every unit not yet done: reads first, then writes; resumes after interruptions."""
    jobs = build_jobs(catalog, plan, config, workdir)
    Path(config.output.directory).mkdir(parents=True, exist_ok=True)
    write_json(
        Path(config.output.directory) / "provenance.json", provenance_record(plan, catalog, config)
    )
    for path in remove_stale_outputs(
        config.output.directory, config.output.name, config.output.format, plan.n_output_files
    ):
        log.info("removed %s, left by an earlier plan", path)
    if remove_temporaries(Path(config.output.directory)):
        log.info("removed partial files of an interrupted run")
    _reopen_lost_outputs(catalog, scratch_directory(config, workdir))
    for attempt in range(config.execution.retries + 1):
        read_states = catalog.unit_states("read")
        pending_reads = [t for t in jobs.reads if read_states.get(t.unit) != "done"]
        if not pending_reads:
            break
        if attempt:
            log.warning("retrying %d failed read units", len(pending_reads))
        for read in reporter.track(
            engine.map(read_input, pending_reads), len(pending_reads), "reading inputs"
        ):
            _record_read(catalog, read, jobs.reads[read.unit].path)
    _raise_failures(catalog, "read")
    jobs = build_jobs(catalog, plan, config, workdir)
    assert jobs.writes is not None
    for attempt in range(config.execution.retries + 1):
        write_states = catalog.unit_states("write")
        pending_writes = [t for t in jobs.writes if write_states.get(t.unit) != "done"]
        if not pending_writes:
            break
        if attempt:
            log.warning("retrying %d failed write units", len(pending_writes))
        for written in reporter.track(
            engine.map(write_outputs, pending_writes), len(pending_writes), "writing batches"
        ):
            _record_write(catalog, written)
    _raise_failures(catalog, "write")
    if not keep_scratch:
        shutil.rmtree(scratch_directory(config, workdir), ignore_errors=True)
    outputs = [o for r in catalog.unit_results("write").values() for o in r["outputs"]]
    return RunOutcome(sorted(outputs, key=lambda o: o["index"]), config.output.directory)


def _reopen_lost_outputs(catalog: Catalog, scratch: Path) -> None:
    """Marks write units whose files vanished or changed as pending again.

    Their rows come from the read units' parts; if those were cleaned up already,
    the read units run again too (each input file is still read once in this run).
    """
    lost = [
        unit
        for unit, result in catalog.unit_results("write").items()
        if any(
            not Path(o["path"]).is_file() or Path(o["path"]).stat().st_size != o["size"]
            for o in result["outputs"]
        )
    ]
    if not lost:
        return
    log.warning("%d write units lost or changed output files: making them again", len(lost))
    for unit in lost:
        catalog.set_unit("write", unit, "pending")
    if not all(any(unit_directory(scratch, unit).glob("r*.parquet")) for unit in lost):
        for unit in catalog.unit_states("read"):
            catalog.set_unit("read", unit, "pending")


def _raise_failures(catalog: Catalog, kind: str) -> None:
    failures = [
        (index, error)
        for k, index, status, _, error in catalog.unit_rows()
        if k == kind and status == "failed"
    ]
    if failures:
        more = f" (and {len(failures) - 1} more failed {kind} units)" if len(failures) > 1 else ""
        raise BalancedBatchesError(f"{failures[0][1]}{more}")


def run_job(catalog: Catalog, plan: Plan, config: ProjectConfig, workdir: Path, job: int) -> str:
    """Runs one unit, as a batch job would: job numbers count read units, then write units."""
    jobs = build_jobs(catalog, plan, config, workdir)
    n_reads = len(jobs.reads)
    if 0 <= job < n_reads:
        read = read_input(jobs.reads[job])
        _record_read(catalog, read, jobs.reads[job].path)
        _raise_failures(catalog, "read")
        return f"read unit {job}: {read.rows} rows from {jobs.reads[job].path}"
    n_writes = plan.n_write_units
    if not n_reads <= job < n_reads + n_writes:
        raise CatalogError(f"--job {job}: this plan has jobs 0 to {n_reads + n_writes - 1}")
    if jobs.writes is None:
        raise CatalogError(
            f"--job {job} writes outputs: run the read jobs 0 to {n_reads - 1} first"
        )
    write_json(
        Path(config.output.directory) / "provenance.json", provenance_record(plan, catalog, config)
    )
    write = write_outputs(jobs.writes[job - n_reads])
    _record_write(catalog, write)
    _raise_failures(catalog, "write")
    return f"write unit {job - n_reads}: {len(write.outputs)} output files"
