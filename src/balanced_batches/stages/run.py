"""Run a plan's units: all of them on an engine (`run`), or one as a batch job (`make --job`).

Only this client process writes the catalog; units return results. A batch job
that has no catalog leaves a JSON result record instead, which `status` folds in.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..catalog import Catalog
from ..config import ProjectConfig
from ..engines import Engine, Reporter
from ..errors import BalancedBatchesError, CatalogError
from ..io.files import is_url
from ..io.outputs import OutputDirectory, output_directory, size_of
from ..plan_model import Plan
from ..rows import BranchLayout, layout_to_json
from ..scratch import LocalScratch, Scratch, records_at, scratch_at
from .output_files import (
    PROVENANCE_JSON,
    OutputSet,
    foreign_outputs,
    modification_time,
    output_sets,
    refuse_foreign_outputs,
    stale_outputs,
)
from .output_statistics import publish_statistics
from .plan import human_bytes, plan_size
from .read_units import read_input
from .units import (
    Branches,
    JobSpec,
    ReadResult,
    WriteResult,
    build_jobs,
    merge_layout,
    output_branches,
    spec_from_catalog,
    stored_layout,
)
from .write_units import write_outputs

log = logging.getLogger(__name__)


class UnitOutcome(Protocol):
    """What every unit's result says of how it went."""

    @property
    def unit(self) -> int: ...
    @property
    def error(self) -> str | None: ...
    @property
    def transient(self) -> bool: ...


T = TypeVar("T")
R = TypeVar("R", bound=UnitOutcome)
_PROGRESS = {"read": "reading inputs", "write": "writing batches"}


def provenance_record(spec: JobSpec, split: int = 0) -> dict[str, Any]:
    """A split's provenance.json: the provenance branches' meaning, the split and its
    batches, the plan's date and configuration."""
    named = spec.plan.split_names != ("",)
    return {
        **spec.provenance(),
        **({"split": spec.plan.split_names[split]} if named else {}),
        **({"split_batches": int(spec.plan.batches_of_split[split])} if named else {}),
        "plan_created": spec.plan.created,
        "config": spec.config.model_dump(mode="json"),
    }


def _store_layout(catalog: Catalog, layout: BranchLayout, path: str, kept: Branches) -> None:
    """Records the layout a read unit found; one unlike the stored one in a branch the
    outputs keep (`kept`) stops the run."""
    stored = stored_layout(catalog)
    merged = merge_layout(stored, layout, path, kept)
    if merged != stored:
        catalog.set_meta("layout", layout_to_json(merged))


def _record_read(catalog: Catalog, result: ReadResult, path: str, kept: Branches) -> None:
    if result.error is not None:
        catalog.set_unit("read", result.unit, "failed", error=result.error)
        return
    assert result.layout is not None
    _store_layout(catalog, result.layout, path, kept)
    catalog.set_unit(
        "read", result.unit, "done", result={"rows": result.rows, "parts": result.parts}
    )


def _record_write(catalog: Catalog, result: WriteResult) -> None:
    if result.error is not None:
        catalog.set_unit("write", result.unit, "failed", error=result.error)
    else:
        catalog.record_written("output", [(o["path"], o["size"]) for o in result.outputs])
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
    overwrite: bool = False,
    space_check: bool = True,
) -> RunOutcome:
    """Makes every unit not yet done: reads first, then writes; resumes after interruptions.

    Output files that this tool did not write are never replaced (unless `overwrite`, or the
    plan's `output.overwrite`) nor deleted; outputs of an earlier plan that this one does not
    make again are deleted if the catalog recorded writing them. With `space_check`, a run
    whose outputs or intermediate parts would not fit on their disks does not start.
    """
    spec = spec_from_catalog(catalog, plan, config, workdir)
    jobs = build_jobs(spec)
    scratch = scratch_at(spec.scratch)
    sets = planned_outputs(spec)
    ours = catalog.written("output")
    claim_outputs(catalog, sets, config, overwrite)
    if space_check:
        check_free_space(catalog, plan, config.output.directory, scratch)
    try:
        removed_partials = 0
        for split, output_set in enumerate(sets):
            directory = output_directory(output_set.directory)
            removed_partials += directory.prepare(output_set.names)
            _write_provenance(catalog, directory, spec, split)
        top = output_directory(config.output.directory)
        planned = {output_directory(s.directory).location(n) for s in sets for n in s.names}
        _remove_stale_outputs(catalog, top, stale_outputs(top, planned, ours))
    except OSError as err:
        raise BalancedBatchesError(
            f"cannot write output files into {config.output.directory}: {err.strerror or err}"
        ) from err
    if removed_partials:
        log.info("removed partial files of an interrupted run")
    reopen_lost_outputs(catalog, scratch)
    scratch.clean_temporaries()
    retries = config.execution.retries
    paths = [task.path for task in jobs.reads]
    kept = output_branches(config)

    def record_read(result: ReadResult) -> None:
        _record_read(catalog, result, paths[result.unit], kept)

    _run_units(catalog, "read", jobs.reads, read_input, record_read, engine, reporter, retries)
    if jobs.writes is None or stored_layout(catalog) != spec.layout:
        # counted before count recorded the branch layout (or its types): reads found it
        jobs = build_jobs(spec_from_catalog(catalog, plan, config, workdir))
    assert jobs.writes is not None

    def record_write(result: WriteResult) -> None:
        _record_write(catalog, result)

    _run_units(
        catalog, "write", jobs.writes, write_outputs, record_write, engine, reporter, retries
    )
    catalog.record_written("output", [(x, None) for x in publish_statistics(spec)])
    if not keep_scratch:
        scratch.remove(remove_empty_root=config.execution.scratch is None)
    outputs = [o for r in catalog.unit_results("write").values() for o in r["outputs"]]
    return RunOutcome(sorted(outputs, key=lambda o: o["index"]), config.output.directory)


def planned_outputs(spec: JobSpec) -> list[OutputSet]:
    """Every split's output directory and planned file names."""
    output = spec.config.output
    return output_sets(spec.plan, output.directory, output.name, output.format)


def claim_outputs(
    catalog: Catalog, sets: Sequence[OutputSet], config: ProjectConfig, overwrite: bool
) -> None:
    """Refuses planned output names held by files this tool did not write (unless
    `overwrite` or `output.overwrite`), then records the names as this tool's to write."""
    ours = catalog.written("output")
    for output_set in sets:
        directory = output_directory(output_set.directory)
        if not (overwrite or config.output.overwrite):
            foreign = foreign_outputs(directory, output_set.names, ours)
            refuse_foreign_outputs(foreign, output_set.directory)
        # from now on the planned names are ours: a file that a killed run (or a batch job)
        # renamed into place before it could be recorded is not taken for someone else's
        reserved = [directory.location(name) for name in output_set.names]
        catalog.record_written("output", [(x, None) for x in reserved if x not in ours])


def check_free_space(catalog: Catalog, plan: Plan, output: str, scratch: Scratch) -> None:
    """BalancedBatchesError if what is left to write (outputs, and intermediate parts while
    outputs are left to make) clearly exceeds the free space of local disks."""
    size = plan_size(catalog, plan)
    left = {
        kind: sum(state != "done" for state in catalog.unit_states(kind).values())
        / max(len(catalog.unit_states(kind)), 1)
        for kind in ("read", "write")
    }
    needs: list[tuple[Path, float, str]] = []
    if left["write"] and isinstance(scratch, LocalScratch):
        needs.append((scratch.path, size.scratch_bytes * left["read"], "intermediate parts"))
    if not is_url(output):
        needs.append((Path(output), size.output_bytes * left["write"], "output files"))
    by_disk: dict[int, tuple[Path, float, list[str]]] = {}
    for path, need, what in needs:
        existing = next(p for p in (path, *path.parents) if p.exists())
        device = existing.stat().st_dev
        _, total, names = by_disk.get(device, (existing, 0.0, []))
        by_disk[device] = (existing, total + need, [*names, f"{what} in {path}"])
    for existing, need, names in by_disk.values():
        free = shutil.disk_usage(existing).free
        if need > free:
            raise BalancedBatchesError(
                f"not enough free space: {' and '.join(names)} need about {human_bytes(need)}, "
                f"the disk has {human_bytes(free)} free; free some space (or set "
                "execution.scratch or --output-directory elsewhere), or pass --no-space-check "
                "to go on anyway"
            )


def _remove_stale_outputs(catalog: Catalog, directory: OutputDirectory, stale: list[str]) -> None:
    """Deletes outputs this tool wrote for an earlier plan: those whose writing the catalog
    recorded, with the size they still have (a file only reserved, or changed since, is left
    where it is)."""
    ours = catalog.written("output")
    for location in stale:
        recorded = ours.get(location)
        try:
            if recorded is not None and directory.size(location) == recorded:
                directory.remove(location)
                log.info("removed %s, written for an earlier plan", location)
        except OSError as err:
            log.warning("could not remove %s, written for an earlier plan: %s", location, err)
    catalog.forget_written(stale)


def _write_provenance(
    catalog: Catalog, directory: OutputDirectory, spec: JobSpec, split: int
) -> None:
    record = provenance_record(spec, split)
    location = directory.write_json(PROVENANCE_JSON, record, sort_keys=False)
    catalog.record_written("output", [(location, None)])


def _run_units(
    catalog: Catalog,
    kind: str,
    tasks: Sequence[T],
    work: Callable[[T], R],
    record: Callable[[R], None],
    engine: Engine,
    reporter: Reporter,
    retries: int,
) -> None:
    """Runs every unit of a kind not yet done, retrying the failures that may go away
    (`transient`: a lost connection, say; not a changed input or a full disk); raises if
    some still fail."""
    final: set[int] = set()  # failed in a way another attempt would repeat
    for attempt in range(retries + 1):
        states = catalog.unit_states(kind)
        indices = [i for i in range(len(tasks)) if states.get(i) != "done" and i not in final]
        if not indices:
            break
        pending = [tasks[index] for index in indices]
        catalog.mark_running(kind, indices)
        if attempt:
            log.warning("retrying %d %s units that failed for a passing reason", len(pending), kind)
        description = _PROGRESS[kind]
        for result in reporter.track(engine.map(work, pending), len(pending), description):
            record(result)
            if result.error is not None and not result.transient:
                final.add(result.unit)
    _raise_failures(catalog, kind)


def _intact(output: dict[str, Any]) -> bool:
    if size_of(output["path"]) != output["size"]:
        return False
    recorded = output.get("mtime_ns")
    return recorded is None or modification_time(output["path"]) == recorded


def reopen_lost_outputs(catalog: Catalog, scratch: Scratch) -> None:
    """Makes again what is lost: write units whose files vanished or changed, and read units
    whose intermediate parts are gone while some write unit still needs them.

    Every decision is taken from what is on disk, so an interruption here is harmless:
    the next run decides the same (each input file is still read once per run).
    """
    lost = [
        unit
        for unit, result in catalog.unit_results("write").items()
        if not all(_intact(o) for o in result["outputs"])
    ]
    if lost:
        log.warning("%d write units lost or changed output files: making them again", len(lost))
    for unit in lost:
        catalog.set_unit("write", unit, "pending")
    if all(state == "done" for state in catalog.unit_states("write").values()):
        return
    complete = scratch.complete_parts()
    for unit, result in catalog.unit_results("read").items():
        if complete[unit] != result.get("parts", 0):
            catalog.set_unit("read", unit, "pending")


def _raise_failures(catalog: Catalog, kind: str) -> None:
    failures = [
        (row.unit, row.error)
        for row in catalog.unit_rows()
        if row.kind == kind and row.status == "failed"
    ]
    if failures:
        more = f" (and {len(failures) - 1} more failed {kind} units)" if len(failures) > 1 else ""
        raise BalancedBatchesError(f"{failures[0][1]}{more}")


def run_job(catalog: Catalog, plan: Plan, config: ProjectConfig, workdir: Path, job: int) -> str:
    """Runs one unit and records it in the catalog: job numbers count reads, then writes."""
    spec = spec_from_catalog(catalog, plan, config, workdir)
    kind, unit, result = _run_unit(spec, job)
    if isinstance(result, ReadResult):
        path = spec.files[int(plan.read_files[unit])].path
        _record_read(catalog, result, path, output_branches(config))
    else:
        _record_write(catalog, result)
    _raise_failures(catalog, kind)
    return _describe(kind, unit, result)


def run_spec_job(spec: JobSpec, job: int) -> str:
    """Runs one unit from a job specification, as a batch job does, leaving a result record.

    A finished unit is not run again: a rerun of a finished job changes nothing.
    """
    records = records_at(job_records(spec))
    name = f"job-{job}.json"
    earlier = records.get_json(name)
    if earlier is not None and _still_done(earlier, spec, records):
        return f"job {job}: already done"
    kind, unit, result = _run_unit(spec, job)
    record: dict[str, Any] = {"job": job, "kind": kind, "unit": unit}
    if result.error is not None:
        record.update(status="failed", error=result.error)
    elif isinstance(result, ReadResult):
        assert result.layout is not None
        record.update(
            status="done",
            rows=result.rows,
            parts=result.parts,
            layout=layout_to_json(result.layout),
            path=spec.files[int(spec.plan.read_files[unit])].path,
        )
    else:
        record.update(status="done", outputs=result.outputs)
    records.put_json(name, record)
    if result.error is not None:
        raise BalancedBatchesError(result.error)
    return _describe(kind, unit, result)


def job_records(spec: JobSpec) -> str:
    """Where a plan's batch jobs leave their result records."""
    return spec.records or f"{spec.scratch.rstrip('/')}/records"


# left among the records by the write job that deleted the intermediate parts: the read jobs
# did their work (a rerun of one changes nothing), until `export-jobs --only-missing` needs
# parts again and removes it
PARTS_DELETED = "parts-deleted.json"


def _still_done(record: dict[str, Any], spec: JobSpec, records: Scratch) -> bool:
    if record.get("status") != "done":
        return False
    if record["kind"] == "read":
        parts = scratch_at(spec.scratch).complete_parts()[int(record["unit"])]
        return parts == record.get("parts") or records.get_json(PARTS_DELETED) is not None
    return all(size_of(o["path"]) == o["size"] for o in record["outputs"])


def _run_unit(spec: JobSpec, job: int) -> tuple[str, int, ReadResult | WriteResult]:
    jobs = build_jobs(spec)
    n_reads, n_writes = len(jobs.reads), spec.plan.n_write_units
    if 0 <= job < n_reads:
        return "read", job, read_input(jobs.reads[job])
    if not n_reads <= job < n_reads + n_writes:
        raise CatalogError(f"--job {job}: this plan has jobs 0 to {n_reads + n_writes - 1}")
    if jobs.writes is None:
        raise CatalogError(
            f"--job {job} writes outputs: run the read jobs 0 to {n_reads - 1} first"
        )
    for split, output_set in enumerate(planned_outputs(spec)):
        staging = scratch_at(spec.scratch).staging() / output_set.split
        output_directory(output_set.directory, staging).write_json(
            PROVENANCE_JSON, provenance_record(spec, split), sort_keys=False
        )
    result = write_outputs(jobs.writes[job - n_reads])
    if result.error is None:
        published = publish_statistics(spec)
        # on a remote scratch (grid storage, counted against a quota) the last write job to
        # finish (every split's partial statistics are there) deletes the intermediate data;
        # the result records stay for `status`. A local scratch stays for the next plan, so
        # that a lost output costs its write job only.
        done = len(published) == len(spec.plan.split_names)
        if done and is_url(spec.scratch) and not spec.keep_scratch:
            records_at(job_records(spec)).put_json(PARTS_DELETED, {"plan": spec.plan.id})
            scratch_at(spec.scratch).remove_intermediate()
    return "write", job - n_reads, result


def _describe(kind: str, unit: int, result: ReadResult | WriteResult) -> str:
    if isinstance(result, ReadResult):
        return f"read unit {unit}: {result.rows} rows"
    return f"write unit {unit}: {len(result.outputs)} output files"
