"""Plan balanced batches from the counts: how many batches, which streams, which files."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..catalog import Catalog, FileRecord
from ..composition import (
    ALL_THERE_IS,
    Composition,
    StreamGroups,
    fill_all_there_is,
    per_batch_counts,
    reference_spectrum,
)
from ..config import PILEUP_SCENARIOS, ProjectConfig, with_overrides
from ..errors import CatalogError, ConfigError, PlanError
from ..io.files import is_url, write_json
from ..io.outputs import output_directory
from ..plan_model import Plan
from ..regions import RegionSpace, build_selection
from ..rows import refuse_uncopyable, unmatched_patterns
from ..scratch import scratch_at
from ..shards import plan_scratch
from .count import selection_fingerprint
from .output_files import foreign_outputs, output_sets, refuse_foreign_outputs
from .units import output_branches, stored_layout

log = logging.getLogger(__name__)

BYTES_OVERHEAD = 3.0  # in-memory copies a write unit holds per row: buffers, shuffle, writer
# A write unit holds one output file at a time, so one file per unit spreads the writing
# best. Every unit opens every intermediate part, so very many output files share units.
MAX_WRITE_UNITS = 1024


def process_key(file: FileRecord, pileup: str) -> str | None:
    """The key under which a file's candidates are balanced, or None if the file is not used."""
    if file.process is None:
        return None
    if pileup == "none":
        return file.process
    if file.pileup is None or (pileup != "all" and file.pileup != pileup):
        return None
    return f"{file.process}_{file.pileup}"


def ordered_keys(config: ProjectConfig, pileup: str) -> list[str]:
    """Process keys in configuration order, then pile-up order."""
    if pileup == "none":
        return list(config.processes)
    scenarios = PILEUP_SCENARIOS if pileup == "all" else (pileup,)
    return [f"{process}_{scenario}" for process in config.processes for scenario in scenarios]


@dataclass(frozen=True)
class CountTable:
    """Counts of every process key and region of one split (or of all splits together),
    with the files behind them."""

    space: RegionSpace
    keys: tuple[str, ...]
    totals: np.ndarray  # (keys, regions)
    active: np.ndarray  # (keys, regions) bool: type active for the key's process
    file_ids: np.ndarray  # counted files in list order
    file_key: np.ndarray  # key index of each file, -1 if unused
    file_counts: np.ndarray  # (files, regions)
    split: str = ""  # the split counted ("": no splits, or all of them)

    @property
    def streams(self) -> np.ndarray:
        """(key index, region) of active regions with at least one candidate."""
        return np.argwhere(self.active & (self.totals > 0))


def count_table(
    catalog: Catalog, config: ProjectConfig, pileup: str, split: int | None = None
) -> CountTable:
    """Aggregates the catalog's counts for a pile-up choice: those of split number `split`,
    or of all splits together (None)."""
    selection = build_selection(config)
    space = selection.space
    if catalog.get_meta("selection") != selection_fingerprint(selection, config.inputs.tree):
        raise CatalogError(
            "the counts were made with another binning, types or splits; run 'count' again"
        )
    records = {record.id: record for record in catalog.files()}
    file_ids, cells = catalog.counts_matrix(selection.n_cells)
    by_split = cells.reshape(len(file_ids), selection.splits.n_splits, space.n_regions)
    matrix = by_split.sum(axis=1) if split is None else by_split[:, split]
    keys = ordered_keys(config, pileup)
    key_index = {key: index for index, key in enumerate(keys)}
    file_key = np.array(
        [key_index.get(process_key(records[int(i)], pileup) or "", -1) for i in file_ids],
        dtype=np.int64,
    )
    totals = np.zeros((len(keys), space.n_regions), dtype=np.int64)
    used = file_key >= 0
    np.add.at(totals, file_key[used], matrix[used])
    active = np.zeros_like(totals, dtype=bool)
    region_type = space.type_of(np.arange(space.n_regions))
    for index, key in enumerate(keys):
        process = key_process(key, pileup)
        active_types = [space.type_names.index(t) for t in config.processes[process].active_types]
        active[index] = np.isin(region_type, active_types)
    name = "" if split is None else selection.splits.names[split]
    return CountTable(space, tuple(keys), totals, active, file_ids, file_key, matrix, name)


def split_tables(catalog: Catalog, config: ProjectConfig, pileup: str) -> list[CountTable]:
    """The count table of every split, in configuration order (one without splits)."""
    n_splits = build_selection(config).splits.n_splits
    return [count_table(catalog, config, pileup, split) for split in range(n_splits)]


def choose_batch_count(
    stream_totals: np.ndarray,
    per_batch: int | np.ndarray,
    batches: int | None,
    max_reuse: int | None,
) -> int:
    """`int(largest / N)` (original rule) or `batches`; no candidate used over `max_reuse`
    times. With candidates per batch given per stream (`plan.composition`), the largest is
    the stream that would fill the most batches, the sparsest the one that would fill the
    fewest."""
    if stream_totals.size == 0:
        raise PlanError("no active region has any candidate: check active_types and --pileup")
    takes = np.broadcast_to(np.asarray(per_batch, dtype=np.int64), stream_totals.shape)
    uniform = np.ndim(per_batch) == 0
    fills = stream_totals // takes
    widest, sparsest = int(np.argmax(fills)), int(np.argmin(stream_totals / takes))
    largest, smallest = int(stream_totals[widest]), int(stream_totals[sparsest])
    what = f"events per batch type {per_batch}" if uniform else "the candidates a batch takes"
    if batches is None and fills[widest] == 0:
        raise PlanError(
            f"the largest region has {largest} candidates, fewer than {what}"
            + ("" if uniform else f" from it ({takes[widest]})")
            + ": no batch can be made"
        )
    count = batches if batches is not None else int(fills[widest])
    if max_reuse is not None:
        limit = int((max_reuse * stream_totals // takes).min())
        if batches is not None and batches > limit:
            raise PlanError(
                f"--batches {batches} would use candidates of the sparsest region "
                f"({smallest} candidates) more than --max-reuse {max_reuse} times; at most {limit}"
            )
        count = min(count, limit)
        if count == 0:
            taken = what if uniform else f"the {takes[sparsest]} a batch takes"
            raise PlanError(
                f"--max-reuse {max_reuse} leaves zero batches: the sparsest active region has "
                f"{smallest} candidates, fewer than {taken} / {max_reuse}"
            )
    return count


@dataclass(frozen=True)
class SplitStreams:
    """What a split plans: its streams as (key index, region), the candidates each batch
    takes from each, and its number of batches."""

    streams: np.ndarray
    takes: np.ndarray
    n_batches: int


def split_streams(table: CountTable, config: ProjectConfig, per_batch: int) -> SplitStreams:
    """The streams and batches of one split (`choose_batch_count` on what each stream's
    batches take, `composition.py`); a split's problem names the split."""
    streams = table.streams
    totals = table.totals[streams[:, 0], streams[:, 1]]
    try:
        if not totals.size and table.split:
            raise PlanError(
                "no active region has any candidate: check the split's fraction or rule, "
                "active_types and --pileup"
            )
        takes = stream_takes(table, streams, config, per_batch)
        balanced = takes > 0
        if totals.size and not balanced.any():
            if not np.all(takes == ALL_THERE_IS):
                raise PlanError(
                    f"plan.composition.spectrum {config.plan.composition.spectrum!r} gives no "
                    "region any candidate: the reference has none where the candidates are"
                )
            if config.plan.batches is None:
                raise PlanError(
                    "every planned region takes all there is (ratio -1): nothing sets the "
                    "number of batches; pass --batches"
                )
            n_batches = config.plan.batches  # no candidate is used twice: no reuse to bound
        else:
            original = bool(np.all(takes == per_batch))  # its messages speak of N
            n_batches = choose_batch_count(
                totals[balanced],
                per_batch if original else takes[balanced],
                config.plan.batches,
                config.plan.max_reuse,
            )
        takes = fill_all_there_is(takes, totals, n_batches)
        kept = takes > 0
        if not kept.any():
            raise PlanError(
                f"no region has a candidate for each of the {n_batches} batches: fewer "
                "batches, or other ratios, leave some"
            )
    except PlanError as err:
        raise PlanError(f"split {table.split}: {err}" if table.split else str(err)) from err
    return SplitStreams(streams[kept], takes[kept], n_batches)


def stream_takes(
    table: CountTable, streams: np.ndarray, config: ProjectConfig, per_batch: int
) -> np.ndarray:
    """Candidates per batch of every stream (`ALL_THERE_IS` for those that take all there
    is): N each under the original rule."""
    spec = config.plan.composition
    composition = Composition(spec.types, spec.processes, spec.spectrum)
    if composition.is_original:
        return np.full(len(streams), per_batch, dtype=np.int64)
    space = table.space
    cells_per_type = space.n_abseta * space.n_pt
    process = [key_process(key, config.plan.pileup) for key in table.keys]
    groups = StreamGroups(
        key=streams[:, 0],
        type=space.type_of(streams[:, 1]),
        cell=streams[:, 1] % cells_per_type,
        process=process,
        type_names=space.type_names,
    )
    active_totals = np.where(table.active, table.totals, 0)
    reference = reference_spectrum(
        spec.spectrum, active_totals, process, space.type_names, cells_per_type
    )
    return per_batch_counts(groups, reference, per_batch, composition)


def key_process(key: str, pileup: str) -> str:
    """The process of a process key (`DY` of `DY_PU200`)."""
    return key if pileup == "none" else key.rsplit("_", 1)[0]


def build_plan(
    tables: CountTable | list[CountTable], config: ProjectConfig, bytes_per_entry: float
) -> Plan:
    """A plan over the active, non-empty streams of one count table per split."""
    tables = [tables] if isinstance(tables, CountTable) else tables
    per_batch = config.plan.events_per_batch_type
    if per_batch is None:
        raise ConfigError("no events per batch type: pass --events-per-batch-type")
    planned = [split_streams(table, config, per_batch) for table in tables]
    split_batches = [split.n_batches for split in planned]
    members_file: list[np.ndarray] = []
    members_count: list[np.ndarray] = []
    pointer = [0]
    stream_parts = []
    for table, split in zip(tables, planned, strict=True):
        streams = split.streams
        stream_parts.append(streams)
        for key, region in streams:
            in_stream = (table.file_key == key) & (table.file_counts[:, region] > 0)
            members_file.append(table.file_ids[in_stream])
            members_count.append(table.file_counts[in_stream, region])
            pointer.append(pointer[-1] + int(in_stream.sum()))
    streams = np.concatenate(stream_parts)
    widest = max(int(split.takes.sum()) for split in planned)
    rows_per_file = widest * config.output.batches_per_file
    file_memory_mb = rows_per_file * bytes_per_entry * BYTES_OVERHEAD / 2**20
    n_output_files = sum(-(-n // config.output.batches_per_file) for n in split_batches)
    files_per_unit = -(-n_output_files // MAX_WRITE_UNITS)
    if file_memory_mb > config.execution.unit_memory_mb:
        log.warning(
            "one output file holds about %.0f MB in memory, more than execution.unit_memory_mb",
            file_memory_mb,
        )
    return Plan(
        seed=config.plan.seed,
        per_batch=per_batch,
        n_batches=sum(split_batches),
        batches_per_file=config.output.batches_per_file,
        files_per_unit=files_per_unit,
        process_keys=tables[0].keys,
        region_names=tables[0].space.names,
        stream_key_index=streams[:, 0].astype(np.int32),
        stream_region=streams[:, 1].astype(np.int32),
        member_ptr=np.array(pointer, dtype=np.int64),
        member_file=np.concatenate(members_file).astype(np.int64),
        member_count=np.concatenate(members_count).astype(np.int64),
        created=datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        split_names=tuple(table.split for table in tables),
        stream_split=np.repeat(np.arange(len(tables)), [len(p) for p in stream_parts]).astype(
            np.int32
        ),
        split_batches=np.array(split_batches, dtype=np.int64),
        stream_per_batch=np.concatenate([split.takes for split in planned]).astype(np.int64),
    )


def summary_json(table: CountTable, catalog: Catalog) -> dict[str, dict[str, int]]:
    """The original `summary.json`: per `<process>_<pileup>` the sum of every region's count."""
    records = {record.id: record for record in catalog.files()}
    summary: dict[str, dict[str, int]] = {}
    for row, file_id in enumerate(table.file_ids):
        record = records[int(file_id)]
        if record.process is None:
            continue
        key = f"{record.process}_{record.pileup}" if record.pileup else record.process
        totals = summary.setdefault(key, dict.fromkeys(table.space.names, 0))
        for region in np.flatnonzero(table.file_counts[row]):
            totals[table.space.names[region]] += int(table.file_counts[row, region])
    return summary


def check_writable(directory: str) -> None:
    """The output directory exists or can be made, and files can be created in it.

    A remote directory is probed on its server (a tiny file written and removed).
    """
    output_directory(directory).probe()


@dataclass(frozen=True)
class SizeEstimate:
    """What a plan will write, estimated from the input files' sizes per candidate."""

    output_files: int
    output_bytes: float  # compressed like the inputs
    scratch_bytes: float  # intermediate parts: uncompressed rows

    def describe(self) -> str:
        """`12 files, about 1.2 GB of outputs and 3.4 GB of scratch space`."""
        return (
            f"{self.output_files} files, about {human_bytes(self.output_bytes)} of outputs and "
            f"{human_bytes(self.scratch_bytes)} of scratch space"
        )


def human_bytes(size: float) -> str:
    """`950 kB`, `1.2 GB`, `3.4 TB` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 999.5 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


# the uses table of intermediate parts (`shards`): the candidate's row and the use's position
USE_BYTES = 8


def estimate_size(
    catalog: Catalog,
    file_ids: np.ndarray,
    stream_totals: np.ndarray,
    per_stream: int | np.ndarray,
    files: int,
) -> SizeEstimate:
    """Sizes of `per_stream` output rows from each stream (`stream_totals`: its candidates in
    the given files): outputs compressed as the inputs are on average; intermediate parts hold
    each used candidate once, uncompressed, and `USE_BYTES` per use."""
    wanted = {int(i) for i in file_ids}
    records = [r for r in catalog.files() if r.id in wanted and r.entries]
    entries = sum(r.entries or 0 for r in records)
    compressed = sum(r.size or 0 for r in records) / entries if entries else 0.0
    uncompressed = mean_bytes_per_entry(catalog, file_ids)
    rows = int(np.broadcast_to(per_stream, stream_totals.shape).sum())
    used = int(np.minimum(stream_totals, per_stream).sum())
    return SizeEstimate(files, rows * compressed, used * uncompressed + rows * USE_BYTES)


def plan_size(catalog: Catalog, plan: Plan) -> SizeEstimate:
    """What a stored plan will write."""
    stream_of_member = np.repeat(np.arange(plan.n_streams), np.diff(plan.member_ptr))
    totals = np.bincount(stream_of_member, plan.member_count, minlength=plan.n_streams)
    return estimate_size(catalog, plan.read_files, totals, plan.stream_needed, plan.n_output_files)


def mean_bytes_per_entry(catalog: Catalog, file_ids: np.ndarray) -> float:
    """Uncompressed bytes per candidate over the given files (for sizing write units)."""
    wanted = {int(i) for i in file_ids}
    values = [
        (record.bytes_per_entry or 0.0, record.entries or 0)
        for record in catalog.files()
        if record.id in wanted
    ]
    entries = sum(n for _, n in values)
    return max(sum(b * n for b, n in values) / entries, 1.0) if entries else 1000.0


def plan_batches(catalog: Catalog, config: ProjectConfig, workdir: Path) -> Plan:
    """Makes the plan, stores it in the catalog and writes `summary.json`."""
    bad = [record for record in catalog.files() if record.status == "bad"]
    if bad and catalog.get_meta("on_bad_file") != "skip":
        raise CatalogError(
            f"{len(bad)} input files could not be counted (first: {bad[0].error}); fix them and "
            "run 'count' again, or count with --on-bad-file skip to plan without them"
        )
    if any(record.status == "pending" for record in catalog.files()):
        raise CatalogError("some input files are not counted yet; run 'count' first")
    directory = config.output.directory
    if not is_url(directory) and not Path(directory).is_absolute():
        config = with_overrides(config, {"output.directory": str(workdir / directory)}, "plan")
    check_writable(config.output.directory)
    _check_branch_patterns(catalog, config)
    tables = split_tables(catalog, config, config.plan.pileup)
    plan = build_plan(tables, config, mean_bytes_per_entry(catalog, tables[0].file_ids))
    if not config.output.overwrite:
        output = config.output
        for planned in output_sets(plan, output.directory, output.name, output.format):
            outputs = output_directory(planned.directory)
            foreign = foreign_outputs(outputs, planned.names, catalog.written("output"))
            refuse_foreign_outputs(foreign, planned.directory)
    write_json(
        workdir / "summary.json",
        summary_json(count_table(catalog, config, config.plan.pileup), catalog),
    )
    parameters, arrays = plan.to_arrays()
    _remove_old_scratch(catalog, workdir)
    catalog.put_arrays("plan", arrays)
    catalog.set_meta("plan", parameters)
    catalog.set_meta("plan_config", config.model_dump(mode="json"))
    catalog.reset_units({"read": len(plan.read_files), "write": plan.n_write_units})
    log.info(
        "%d batches of %d candidates from each of %d streams (%d keys), %d output files",
        plan.n_batches,
        plan.per_batch,
        plan.n_streams,
        len(set(plan.stream_key_index.tolist())),
        plan.n_output_files,
    )
    return plan


def _check_branch_patterns(catalog: Catalog, config: ProjectConfig) -> None:
    """ConfigError for an `output.branches` or `output.drop_branches` pattern that matches no
    branch of the inputs (a typo would otherwise silently write fewer or more branches)."""
    layout = stored_layout(catalog)
    if layout is None:
        return
    for key, patterns in (
        ("output.branches", config.output.branches or []),
        ("output.drop_branches", config.output.drop_branches),
    ):
        unmatched = unmatched_patterns(layout, patterns)
        if unmatched:
            raise ConfigError(f"{key}: {unmatched[0]!r} matches no branch of the input files")
    refuse_uncopyable(output_branches(config)(layout), "the input files", ConfigError)


def _remove_old_scratch(catalog: Catalog, workdir: Path) -> None:
    """Deletes the scratch directory of the plan stored before (its intermediate parts are
    routed for that plan)."""
    parameters, stored = catalog.get_meta("plan"), catalog.get_meta("plan_config")
    if parameters is None or stored is None:
        return
    old = ProjectConfig.model_validate(stored)
    directory = plan_scratch(old, workdir, load_plan(catalog).id)
    scratch_at(directory).remove(remove_empty_root=old.execution.scratch is None)


def load_plan(catalog: Catalog) -> Plan:
    """The stored plan; a missing or stale plan is a CatalogError."""
    parameters = catalog.get_meta("plan")
    if parameters is None:
        raise CatalogError("no plan in this working directory; run 'balanced-batches plan' first")
    return Plan.from_arrays(parameters, catalog.get_arrays("plan"))
